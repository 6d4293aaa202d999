"""ddpm_recon: the reverse sampler, the distance maps, parameters, determinism, end to end."""

from __future__ import annotations

import pytest
import torch
from helpers import DDPM_RECON_TINY, CpuContext, RandomImages
from sklearn.metrics import roc_auc_score

from bench.methods import registry
from bench.methods.ddpm_recon import DDPMRecon, DDPMReconParams, distance_map
from bench.methods.diffusion.ddpm import (
    add_noise,
    eps_toward,
    make_sampler,
    make_scheduler,
    reverse_sample,
    reverse_timesteps,
    x0_from_eps,
)
from bench.util.errors import ConfigError

TINY = DDPM_RECON_TINY
pytestmark = pytest.mark.threads(2)


class OracleUNet:
    """Predicts the noise that leads back to a known clean image (a perfect denoiser)."""

    def __init__(self, x0: torch.Tensor):
        self.x0, self.scheduler, self.calls = x0, make_scheduler(), 0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor):
        self.calls += 1
        eps = eps_toward(self.scheduler, x_t, self.x0, t)
        return type("Out", (), {"sample": eps})()


# -- the shared DDPM maths against diffusers' own steps ----------------------------------------


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
@pytest.mark.parametrize("t", [3, 250, 900])
def test_x0_formula_matches_the_scheduler_step(kind: str, t: int) -> None:
    scheduler = make_scheduler(clip_sample=False)
    default = make_sampler(kind)
    sampler = type(default).from_config(default.config, clip_sample=False)
    if kind == "ddpm":
        sampler.set_timesteps(timesteps=[t])  # DDPM looks t up in its timesteps
    else:
        sampler.set_timesteps(num_inference_steps=50)
    g = torch.Generator().manual_seed(t)
    x_t, eps_hat = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    expected = sampler.step(eps_hat, t, x_t).pred_original_sample
    assert torch.allclose(x0_from_eps(scheduler, x_t, eps_hat, t), expected, atol=1e-5)


def test_reverse_timesteps() -> None:
    assert reverse_timesteps(250, 10) == list(range(250, 0, -25))
    assert reverse_timesteps(250, 3) == [249, 166, 83]  # the stride floors; ends at t = 0
    assert reverse_timesteps(5, 5) == [5, 4, 3, 2, 1]
    with pytest.raises(ValueError):
        reverse_timesteps(5, 6)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_reverse_sampling_with_a_perfect_denoiser_returns_the_clean_image(kind: str) -> None:
    scheduler = make_scheduler()
    x0 = torch.rand(2, 1, 8, 8) * 1.6 - 0.8
    timesteps = reverse_timesteps(250, 10)
    x_t = add_noise(scheduler, x0, torch.randn(2, 1, 8, 8), timesteps[0])
    unet = OracleUNet(x0)
    out = reverse_sample(unet, make_sampler(kind), x_t, timesteps, torch.Generator())
    assert unet.calls == 10
    # DDPM ends at x_{-1} (exact); DDIM at t = 0, which keeps sqrt(1 - abar_0) = 1% noise.
    assert torch.allclose(out, x0, atol=1e-5 if kind == "ddpm" else 0.05)


def test_ddpm_sampling_is_seeded_by_the_generator() -> None:
    x0 = torch.zeros(1, 1, 8, 8)
    x_t = torch.randn(1, 1, 8, 8)
    unet = OracleUNet(x0 + 0.5)  # not the truth: the posterior noise then matters
    runs = [
        reverse_sample(
            unet, make_sampler("ddpm"), x_t, [30, 20, 10], torch.Generator().manual_seed(s)
        )
        for s in (0, 0, 1)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# -- distance maps ---------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["l1", "ssim", "l1_ssim"])
def test_distance_map_is_zero_for_a_perfect_reconstruction(distance: str) -> None:
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    assert distance_map(x, x, distance, ssim_window=7).abs().max() < 1e-4
    changed = x.clone()
    changed[:, :, 8:14, 8:14] = -x[:, :, 8:14, 8:14]
    d = distance_map(x, changed, distance, blur_sigma=0.5, ssim_window=7)[:, 0]
    assert d.shape == (2, 24, 24)
    assert d[:, 9:13, 9:13].mean() > 5 * d[:, :, 18:].mean()


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"noise": "simplex"}, r"ddpm_recon\.noise=simplex is not available"),
        ({"steps": 3}, r"ddpm_recon\.steps .*divides T"),
        ({"steps": 50}, r"ddpm_recon\.steps must be in 1\.\.t_start"),
        ({"ssim_window": 4}, r"ddpm_recon\.ssim_window"),
        ({"image_size": 18, "block_out_channels": (8, 16, 16)}, r"ddpm_recon\.image_size"),
    ],
)
def test_bad_parameters_are_config_errors(override: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DDPMReconParams(**{**TINY, **override})


def test_simplex_from_the_command_line_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="simplex"):
        registry.build_params("ddpm_recon", "quick", {"noise": "simplex"})
    params = registry.build_params("ddpm_recon", "quick", {"sampler": "ddpm", "steps": "25"})
    assert params.sampler == "ddpm" and params.steps == 25 and params.image_size == 64


# -- fit / predict ---------------------------------------------------------------------------


def test_deterministic_under_the_seed_and_records_its_cost(
    random_images: RandomImages, cpu_ctx: CpuContext
) -> None:
    # The tiny settings (ddim) give the same numbers under the same seed, at every predict call:
    # test_method_contract.py; here the ddpm sampler too, whose posterior noise is drawn per step.
    train = random_images(8, 16, name="good/{i}.png")
    for sampler in ("ddim", "ddpm"):
        params = DDPMReconParams(**{**TINY, "sampler": sampler})
        a = DDPMRecon(params).fit(train, cpu_ctx(1))
        pa = a.predict(train)
        if sampler == "ddpm":
            b = DDPMRecon(params).fit(train, cpu_ctx(1))
            assert torch.equal(pa.maps, b.predict(train).maps)
            assert torch.equal(pa.scores, a.predict(train).scores)  # re-seeded at every call
        assert torch.equal(pa.scores, pa.maps.flatten(1).amax(1))  # score = max
        assert a.inference_info["unet_forward_passes"] == 4
    assert a.gflops_per_image() > 0


@pytest.mark.slow
def test_localises_planted_defects_on_the_synthetic_set(cpu_ctx: CpuContext) -> None:
    from bench.datasets.synthetic import SyntheticDataset

    params = DDPMReconParams(
        **{
            **TINY,
            "image_size": 32,
            "block_out_channels": (16, 32),
            "epochs": 15,
            "lr": 1e-3,
            "t_start": 200,
            "steps": 5,
            "map_sigma": 1.0,
        }
    )
    detector = DDPMRecon(params)
    data = SyntheticDataset("brick", n_train=24, n_test_good=8, n_test_anomalous=16, size=64)
    train = data.load("train", detector.input_spec, 0)
    test = data.load("test", detector.input_spec, 0)
    pred = detector.fit(train, cpu_ctx(0)).predict(test)
    pixel_auroc = roc_auc_score(test.masks.flatten().numpy(), pred.maps.flatten().numpy())
    assert pixel_auroc > 0.6, pixel_auroc
