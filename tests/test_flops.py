import pytest
import torch
from helpers import RADAR_TINY, CpuContext, RandomImages

from bench.methods.ddpm_recon import DDPMRecon, DDPMReconParams
from bench.methods.diffusion.ddpm import build_unet, unet_train_gflops
from bench.methods.diffusionad.detector import DiffusionAD, DiffusionADParams
from bench.methods.radar.detector import Radar, RadarParams
from bench.methods.radar.patches import patch_starts
from bench.util.flops import count_gflops, count_train_gflops


def test_paper_unet_costs_match_the_published_numbers():
    # Brief: 0.55 GFLOP per 28x28 patch, 5329 patches = 2,935 GFLOP per 100x100 image in patch
    # mode, and 7.0 GFLOP for one whole-image pass.
    per_patch = count_gflops(build_unet(28, 1), torch.zeros(1, 1, 28, 28), torch.tensor([1]))
    n = len(patch_starts(100, 28, 1)) ** 2
    assert n == 5329
    assert per_patch * n == pytest.approx(2935, rel=0.01)
    whole = count_gflops(build_unet(100, 1), torch.zeros(1, 1, 100, 100), torch.tensor([1]))
    assert whole == pytest.approx(7.0, rel=0.02)


def test_linear_layer_is_two_flops_per_multiply_add():
    assert count_gflops(torch.nn.Linear(1000, 1000, bias=False), torch.zeros(1, 1000)) == (
        pytest.approx(2e-3)
    )


# -- training compute ------------------------------------------------------------------------


def test_a_training_step_costs_about_three_forward_passes_and_changes_nothing():
    unet = build_unet(16, 1, (8, 16), norm_num_groups=8)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    rng = torch.get_rng_state()
    forward = count_gflops(unet, torch.zeros(1, 1, 16, 16), torch.tensor([1]))
    train = unet_train_gflops(unet, 1, 16)
    # Backward = grads of activations + grads of weights, each about one forward.
    assert 2.5 * forward < train < 4 * forward
    assert unet_train_gflops(unet, 1, 16, passes=2) == pytest.approx(2 * train)
    assert all(p.grad is None for p in unet.parameters())
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_count_train_gflops_of_a_linear_layer():
    # Forward 2*4*10*10; backward: the weight gradient only (the input needs none): as much.
    lin = torch.nn.Linear(10, 10, bias=False)
    assert count_train_gflops(
        lambda m: m(torch.zeros(4, 10, device="meta")).sum(), lin
    ) == pytest.approx(1.6e-6)


def test_radar_records_its_training_compute(random_images: RandomImages, cpu_ctx: CpuContext):
    radar = Radar(RadarParams(**RADAR_TINY)).fit(random_images(6, 32), cpu_ctx())
    info, p = radar.fit_info_, radar.params
    assert info["train_gflops_per_sample"] == pytest.approx(
        unet_train_gflops(radar.unet_, 1, radar.unet_input_size(p.patch_size)), rel=1e-4
    )
    assert info["train_gflops"] == pytest.approx(
        info["train_gflops_per_sample"] * p.train_steps * p.batch_size, rel=1e-4
    )


def test_reconstruction_baselines_record_their_training_compute(
    random_images: RandomImages, cpu_ctx: CpuContext
):
    tiny = dict(image_size=16, grayscale=True, block_out_channels=(8, 16), norm_num_groups=8)
    recon = DDPMRecon(DDPMReconParams(**tiny, epochs=2, batch_size=4, steps=2, t_start=20))
    info = recon.fit(random_images(6, 16), cpu_ctx()).fit_info_
    per_image = unet_train_gflops(recon.unet_, 1, 16)
    assert info["train_gflops"] == pytest.approx(per_image * 2 * 6, rel=1e-4)

    params = DiffusionADParams(
        **{**tiny, "image_size": 32},
        seg_base_width=4, epochs=3, seg_warmup_epochs=1, batch_size=4, top_k=5,
    )  # fmt: skip
    dad = DiffusionAD(params)
    info = dad.fit(random_images(6, 32), cpu_ctx()).fit_info_
    unet, seg = dad.train_gflops_per_image()
    assert unet == pytest.approx(2 * unet_train_gflops(dad.unet_, 1, 32), rel=1e-4) and seg > 0
    # 3 epochs of the U-Net's two passes, 2 of them (after the warm-up) with the seg net.
    assert info["train_gflops"] == pytest.approx(6 * (3 * unet + 2 * seg), rel=1e-4)
