"""RADAR's inference fast paths against the plain path (issue #8), on the CPU.

Each fast path must compute the same map as the plain eager fp32 path, within a tolerance that
says what the path changes: mixed precision rounds (bf16), a memory format or a batch
composition only reorders float sums (1e-5), the whole-image mode computes something else (its
own checks: shape, finite, still separating defects). torch.compile is checked on CUDA only:
compiling the U-Net on this 2-core CPU took over two minutes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import RADAR_TINY, TinyUNet, make_cpu_ctx, make_random_images
from sklearn.metrics import roc_auc_score

from bench.interface import ImageSet, RunContext
from bench.methods.diffusion.ddpm import build_unet, make_scheduler
from bench.methods.radar.detector import CPU_AUTO_PATCHES, Radar, RadarParams
from bench.methods.radar.patches import (
    chunk_for_memory,
    noise_images,
    predict_noise_map,
    unet_forward,
    unet_noise_map,
)
from bench.util.errors import ConfigError

TINY = RadarParams(**RADAR_TINY)
CPU = torch.device("cpu")


# Fixed and small: reproducible sums, and no oversubscription of a shared 2-core machine.
pytestmark = pytest.mark.threads(1)


@pytest.fixture(scope="module")
def unet(tiny_unet: TinyUNet) -> torch.nn.Module:
    return tiny_unet(16, (8, 16))


def x_t(n: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    x0 = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return noise_images(make_scheduler(), x0, 1, torch.Generator().manual_seed(seed + 1))


def noise_map(unet: torch.nn.Module, x: torch.Tensor, chunk: int = 1000, **options) -> torch.Tensor:
    autocast = options.pop("autocast_dtype", None)
    channels_last = options.pop("channels_last", False)
    forward = unet_forward(unet, 1, CPU, autocast, channels_last)
    with torch.inference_mode():
        return unet_noise_map(forward, x, 16, 8, chunk, **options)[0]


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def ctx(tmp: Path, seed: int = 0) -> RunContext:
    return make_cpu_ctx(seed, work_dir=tmp, cache_dir=tmp / "cache")


def images(n: int, size: int = 32, seed: int = 0) -> ImageSet:
    return make_random_images(n, size, seed)


# -- precision, memory format, batching: the same map ---------------------------------------


def test_bf16_autocast_map_is_close_to_fp32(unet: torch.nn.Module) -> None:
    x = x_t()
    fp32 = noise_map(unet, x)
    bf16 = noise_map(unet, x, autocast_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    # bf16 keeps 8 significand bits: every product rounds at ~4e-3 relative, and about twenty
    # conv/norm/attention layers add such errors up (1.3e-2 measured on this net). 5e-2 leaves
    # room for that and still fails on a wrong path (another model, another input: O(1)).
    error = rel_l2(bf16, fp32)
    assert 1e-4 < error < 5e-2, error  # > 1e-4: bf16 really ran (else autocast was ignored)


def test_channels_last_gives_the_same_map(unet: torch.nn.Module, tiny_unet: TinyUNet) -> None:
    x = x_t()
    plain = noise_map(unet, x)
    nhwc = tiny_unet(16, (8, 16))
    nhwc.load_state_dict(unet.state_dict())
    nhwc.to(memory_format=torch.channels_last)
    torch.testing.assert_close(noise_map(nhwc, x, channels_last=True), plain, rtol=0, atol=1e-5)


def test_several_images_per_pass_equal_one_image_at_a_time(unet: torch.nn.Module) -> None:
    # Batching only changes which rows share a pass; GroupNorm and attention act per sample, so
    # the maps agree up to the order of float sums inside the convolutions (~1e-6, not 0).
    x = x_t(n=5)
    alone = torch.cat([noise_map(unet, x[i : i + 1], chunk=9) for i in range(5)])
    for chunk, options in [(45, {}), (20, {"group_chunks": 4}), (20, {"pad": True})]:
        together = noise_map(unet, x, chunk=chunk, **options)
        torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_padded_tails_come_in_powers_of_two(unet: torch.nn.Module) -> None:
    shapes: list[int] = []
    base = unet_forward(unet, 1, CPU)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        shapes.append(batch.shape[0])
        return base(batch)

    with torch.inference_mode():
        unet_noise_map(forward, x_t(n=3), 16, 8, 8, pad=True, group_chunks=4)
    assert shapes == [8, 8, 8, 4]  # 27 patches: passes of 8, 8, 8 and 3 padded to 4


def test_predict_noise_map_defaults_are_the_plain_path(unet: torch.nn.Module) -> None:
    x0 = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    got, chunk = predict_noise_map(
        unet, make_scheduler(), x0, 1, 16, 8, 1000, torch.Generator().manual_seed(4)
    )
    x = noise_images(make_scheduler(), x0, 1, torch.Generator().manual_seed(4))
    assert chunk == 1000
    assert torch.equal(got, noise_map(unet, x))


# -- the detector's parameters ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run cache: every variant below reuses the U-Net trained once for TINY."""
    return tmp_path_factory.mktemp("radar-fastpaths")


def fitted(cache: Path, **changes: object) -> Radar:
    return Radar(dataclasses.replace(TINY, **changes)).fit(images(8), ctx(cache))


def test_detector_bf16_scores_follow_fp32(cache: Path) -> None:
    test = images(6, seed=5)
    plain, bf16 = fitted(cache), fitted(cache, infer_precision="bf16")
    assert bf16.fit_info_["unet_from_cache"] and bf16.inference_info["precision"] == "bf16"
    a, b = plain.predict(test), bf16.predict(test)
    assert rel_l2(b.maps, a.maps) < 0.1  # the Sobel map of the noise map: same rounding story
    assert torch.isfinite(b.scores).all()


def test_automatic_batch_is_a_fixed_size_on_cpu(cache: Path) -> None:
    auto = fitted(cache, infer_batch=0)
    assert auto.infer_batch_ == CPU_AUTO_PATCHES
    # Full mode: as many whole 32 px images as hold the pixels of 256 patches of 16 px.
    assert fitted(cache, infer_batch=0, inference="full").infer_batch_ == CPU_AUTO_PATCHES // 4
    test = images(4, seed=6)
    torch.testing.assert_close(auto.predict(test).maps, fitted(cache).predict(test).maps)


def test_chunk_for_memory_is_cuda_only(unet: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        chunk_for_memory(unet_forward(unet, 1, CPU), torch.zeros(1, 1, 16, 16), CPU)


@pytest.mark.parametrize("precision", ["fp16", "tf32"])
def test_cuda_only_precisions_are_config_errors_on_cpu(cache: Path, precision: str) -> None:
    with pytest.raises(ConfigError, match=rf"^radar\.infer_precision={precision} needs a CUDA"):
        fitted(cache, infer_precision=precision)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"infer_batch": -1}, "infer_batch"),
        ({"infer_precision": "fp8"}, "infer_precision"),
        ({"compile": "fast"}, "compile"),
        ({"inference": "image"}, "inference"),
        ({"full_tile": 12}, "full_tile"),  # smaller than the training patch
        ({"full_tile": 101}, "full_tile"),  # larger than the image
    ],
)
def test_fast_path_parameters_are_validated(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^radar\.{field} must be .*, got "):
        RadarParams(**changes)


def test_tiles_of_the_patch_size_are_patch_mode_at_half_stride(cache: Path) -> None:
    test = images(3, seed=7)
    tiled = fitted(cache, inference="full", full_tile=16, infer_stride=16)
    patches = fitted(cache)  # infer_stride 8 = 16 // 2
    assert tiled.inference_info["patches_per_image"] == 9
    assert torch.equal(tiled.predict(test).maps, patches.predict(test).maps)


def test_inference_info_and_flops_follow_the_mode(cache: Path) -> None:
    whole = fitted(cache, inference="full")
    info = whole.inference_info
    assert info["mode"] == "full" and info["patches_per_image"] == 1
    assert info["unet_forward_passes"] == 1 and info["precision"] == "fp32"
    assert info["patch_size"] == 32 and info["compile"] == "none"
    patches = fitted(cache).inference_info
    assert patches["mode"] == "patches" and patches["patches_per_image"] == 9
    assert patches["unet_calls_per_image"] == pytest.approx(9 / 16)
    # The paper's U-Net (issue #8): 2935 GFLOP per 100 px image in patch mode, 7.0 whole.
    paper = RadarParams()
    assert Radar(paper).gflops_per_image() == pytest.approx(2935, rel=0.01)
    full = Radar(dataclasses.replace(paper, inference="full")).gflops_per_image()
    assert full == pytest.approx(7.0, rel=0.02)


def test_fit_info_reports_training_throughput_and_the_loss_curve(tmp_path: Path) -> None:
    params = dataclasses.replace(TINY, train_steps=6)
    info = Radar(params).fit(images(6), ctx(tmp_path)).fit_info_
    curve = info["loss_curve"]
    assert [c[0] for c in curve] == [1, 2, 3, 4, 5, 6]
    assert curve[-1][1] == info["final_loss"]
    assert all(b[2] >= a[2] >= 0 for a, b in itertools.pairwise(curve))
    assert info["train_steps_per_s"] > 0
    assert info["train_patches_per_s"] == pytest.approx(info["train_steps_per_s"] * 8, rel=0.01)
    assert info["converged_step"] in [c[0] for c in curve]
    assert info["converged_seconds"] <= curve[-1][2]
    assert info["infer_precision"] == "fp32"
    # What the cache keeps comes back with a reused U-Net.
    again = Radar(params).fit(images(6), ctx(tmp_path)).fit_info_
    assert again["unet_from_cache"] and again["loss_curve"] == curve


def test_decisions_from_scores_equal_the_scorers_own(cache: Path) -> None:
    test = images(8, seed=8)
    test.images[:4] = test.images[:4] ** 4  # darker: far from the training images
    for scorer in ("iforest", "gaussian", "raw"):
        radar = fitted(cache, scorer=scorer)
        x = radar._prepare(test.images)
        features, _ = radar._scorer_inputs(x, test.names)
        pred = radar.predict(test)
        assert torch.equal(pred.decisions, radar.scorer_.decide(features))


# -- the whole image in one pass -------------------------------------------------------------


def test_whole_image_mode_still_separates_planted_defects(tmp_path: Path) -> None:
    from bench.datasets.synthetic import SyntheticDataset

    # The RADAR of the CPU smoke run (results/reference/cpu-smoke/smoke.toml), fewer images.
    params = dataclasses.replace(
        TINY, image_size=48, train_steps=60, batch_size=32, infer_batch=1024, scorer_images=30
    )
    data = SyntheticDataset("brick", n_train=24, n_test_good=12, n_test_anomalous=12)
    spec = Radar(params).input_spec
    train, test = data.load("train", spec, 0), data.load("test", spec, 0)
    for mode in ("patches", "full"):  # one training: the second fit reuses the cached U-Net
        radar = Radar(dataclasses.replace(params, inference=mode)).fit(train, ctx(tmp_path))
        pred = radar.predict(test)
        assert pred.maps.shape == (24, 48, 48) and pred.scores.shape == (24,)
        assert torch.isfinite(pred.maps).all() and torch.isfinite(pred.scores).all()
    # Chance is 0.5 for both (measured here: 0.69 image, 0.77 pixel level).
    assert roc_auc_score(test.labels.numpy(), pred.scores.numpy()) > 0.6
    assert roc_auc_score(test.masks.flatten().numpy(), pred.maps.flatten().numpy()) > 0.7


# -- CUDA only (pytest -m cuda; results/gpu/next.sh runs them first on a GPU) ---------------
# torch.compile of the U-Net takes minutes on this 2-core CPU, and CUDA graphs, the automatic
# batch and a real out-of-memory exist only on a GPU.


@pytest.fixture
def exact_fp32() -> Iterator[None]:
    """Plain fp32 for a comparison: no TensorFloat-32 in cuBLAS or cuDNN (cuDNN convolutions use
    it by default on Ampere and later), so that two paths differ only in the order of float sums
    (inductor fuses and reorders reductions: ~1e-6 on maps of order 1, under atol 1e-4), not by
    TF32's 10-bit rounding (~1e-3), which would make any tolerance a guess."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def cuda_ctx(tmp: Path) -> RunContext:
    return RunContext(seed=0, device=torch.device("cuda"), work_dir=tmp, cache_dir=tmp / "cache")


@pytest.mark.cuda
def test_compiled_unet_gives_the_same_map(
    tmp_path: Path, exact_fp32: None
) -> None:  # pragma: no cover
    c = cuda_ctx(tmp_path)
    train, test = images(8), images(4, seed=9)
    plain = Radar(TINY).fit(train, c).predict(test)
    for mode in ("default", "reduce-overhead"):  # reduce-overhead replays CUDA graphs
        compiled = Radar(dataclasses.replace(TINY, compile=mode)).fit(train, c)
        torch.testing.assert_close(compiled.predict(test).maps, plain.maps, rtol=0, atol=1e-4)


@pytest.mark.cuda
def test_bf16_inference_map_is_close_to_fp32_on_cuda(
    tmp_path: Path, exact_fp32: None
) -> None:  # pragma: no cover
    c = cuda_ctx(tmp_path)
    train, test = images(8), images(4, seed=9)
    fp32 = Radar(TINY).fit(train, c).predict(test).maps
    bf16 = Radar(dataclasses.replace(TINY, infer_precision="bf16")).fit(train, c)
    error = rel_l2(bf16.predict(test).maps, fp32)
    assert 1e-4 < error < 5e-2, error  # the bound of the CPU test above, and why


@pytest.mark.cuda
def test_automatic_batch_on_cuda_gives_the_same_map(
    tmp_path: Path, exact_fp32: None
) -> None:  # pragma: no cover
    from bench.methods.radar.patches import MAX_AUTO_BATCH

    c = cuda_ctx(tmp_path)
    train, test = images(8), images(4, seed=9)
    fixed = Radar(TINY).fit(train, c).predict(test).maps
    auto = Radar(dataclasses.replace(TINY, infer_batch=0)).fit(train, c)
    assert 64 <= auto.infer_batch_ <= MAX_AUTO_BATCH and auto.infer_batch_ % 64 == 0
    # Other pass sizes may pick other cuDNN algorithms: float sums reordered, as compiled.
    torch.testing.assert_close(auto.predict(test).maps, fixed, rtol=0, atol=1e-4)


@pytest.mark.cuda
def test_out_of_memory_fallback_on_a_deliberately_too_large_batch() -> None:  # pragma: no cover
    from bench.methods.radar.patches import map_in_chunks

    cuda = torch.device("cuda")
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(cuda)
    widen = 4096  # a pass holds 4096 float copies of each row: 12.5 MiB per 28 x 28 row

    def hungry(batch: torch.Tensor) -> torch.Tensor:
        return batch.expand(-1, widen, -1, -1).contiguous().mean(1, keepdim=True)

    rows = 4 * free // (widen * 28 * 28 * 4)  # four times what fits at once
    x = torch.rand(rows, 1, 28, 28, device=cuda)
    out, chunk = map_in_chunks(hungry, x, rows)
    assert chunk <= rows // 4  # halved at least twice, on real CUDA out-of-memory errors
    torch.testing.assert_close(out, x)


@pytest.mark.cuda
def test_paper_unet_at_the_automatic_batch_cap_runs_in_bf16() -> None:  # pragma: no cover
    # The cap exists for this pass: the paper U-Net's lowest-resolution attention at 65,536 rows
    # launched one block over CUDA's grid limit ("invalid configuration argument").
    from bench.methods.radar.patches import MAX_AUTO_BATCH, map_in_chunks

    cuda = torch.device("cuda")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        paper = build_unet(28, 1, (32, 64, 64)).to(cuda).eval()
    forward = unet_forward(paper, 1, cuda, torch.bfloat16)
    x = torch.randn(MAX_AUTO_BATCH, 1, 28, 28, device=cuda)
    with torch.inference_mode():
        out, chunk = map_in_chunks(forward, x, MAX_AUTO_BATCH)
        assert chunk == MAX_AUTO_BATCH and torch.isfinite(out).all()
        # And one over the limit: the launch error (if this attention kernel has the limit) is
        # halved once instead of ending the job.
        over = torch.randn(65_536, 1, 28, 28, device=cuda)
        out, chunk = map_in_chunks(forward, over, 65_536)
    assert out.shape == over.shape and chunk in (65_536, 32_768)
