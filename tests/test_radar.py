"""RADAR: patches, features, scorer, parameters, determinism, and one end-to-end run."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import RADAR_TINY, CpuContext, RandomImages, TinyUNet
from sklearn.metrics import roc_auc_score

from bench.interface import InputSpec
from bench.methods import registry
from bench.methods.diffusion.ddpm import make_scheduler
from bench.methods.radar.detector import PRESETS, Radar, RadarParams
from bench.methods.radar.features import anomaly_map, image_features
from bench.methods.radar.patches import (
    MAX_AUTO_BATCH,
    auto_batch_rows,
    extract_patches,
    fold_patches,
    map_in_chunks,
    patch_starts,
    predict_noise_map,
    sample_patches,
)
from bench.methods.radar.scoring import IsolationForestScorer, Scorer
from bench.util.errors import ConfigError

TINY = RADAR_TINY
pytestmark = pytest.mark.threads(2)


# -- patches ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "patch", "stride", "expected"),
    [
        (10, 4, 1, list(range(7))),
        (10, 4, 3, [0, 3, 6]),  # the grid ends exactly at size - patch
        (11, 4, 3, [0, 3, 6, 7]),  # it does not: the final position is added
        (100, 28, 6, [*range(0, 73, 6)]),
        (100, 28, 10, [0, 10, 20, 30, 40, 50, 60, 70, 72]),
        (8, 8, 5, [0]),
    ],
)
def test_patch_starts(size: int, patch: int, stride: int, expected: list[int]) -> None:
    assert patch_starts(size, patch, stride).tolist() == expected


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_fold_of_constant_patches_is_the_constant(stride: int) -> None:
    ys, xs = patch_starts(13, 4, stride), patch_starts(11, 4, stride)
    patches = torch.full((2 * len(ys) * len(xs), 1, 4, 4), 0.7)
    out = fold_patches(patches, (13, 11), ys, xs)
    # Every pixel covered (no 0/0) and the overlaps averaged.
    torch.testing.assert_close(out, torch.full((2, 1, 13, 11), 0.7))


def test_a_stride_wider_than_the_patch_is_refused() -> None:
    ys = patch_starts(13, 4, 5)
    with pytest.raises(ValueError, match="uncovered"):
        fold_patches(torch.ones(len(ys) ** 2, 1, 4, 4), (13, 13), ys, ys)
    with pytest.raises(ConfigError, match=r"radar\.infer_stride"):
        RadarParams(patch_size=28, infer_stride=29)


@pytest.mark.parametrize("stride", [2, 5, 6])
def test_stride_covers_the_last_row_and_column(stride: int) -> None:
    ys = patch_starts(20, 6, stride)
    patches = torch.ones(len(ys) ** 2, 1, 6, 6)
    # Summed without averaging: the number of patches over each pixel.
    count = F.fold(
        torch.zeros(1, 36, 15 * 15).index_fill_(2, (ys[:, None] * 15 + ys).flatten(), 1.0),
        (20, 20),
        6,
    )
    assert int(count.min()) >= 1
    assert fold_patches(patches, (20, 20), ys, ys).isfinite().all()


@pytest.mark.parametrize("stride", [1, 3, 4, 5])
def test_unfold_fold_of_the_image_itself_is_the_identity(stride: int) -> None:
    x = torch.rand(3, 2, 17, 14, generator=torch.Generator().manual_seed(stride))
    ys, xs = patch_starts(17, 5, stride), patch_starts(14, 5, stride)
    patches = extract_patches(x, 5, ys, xs)
    assert patches.shape == (3 * len(ys) * len(xs), 2, 5, 5)
    # Patch order: image, then row, then column.
    torch.testing.assert_close(patches[len(xs) + 1], x[0, :, ys[1] : ys[1] + 5, xs[1] : xs[1] + 5])
    torch.testing.assert_close(fold_patches(patches, (17, 14), ys, xs), x)


def test_sample_patches_are_patches_on_the_grid() -> None:
    x = torch.arange(2 * 10 * 10, dtype=torch.float32).reshape(2, 1, 10, 10)
    ys = patch_starts(10, 4, 3)
    got = sample_patches(x, 4, ys, ys, 50, torch.Generator().manual_seed(0))
    assert got.shape == (50, 1, 4, 4)
    for p in got:
        first = int(p[0, 0, 0])  # the top-left value tells the image and position
        i, rest = divmod(first, 100)
        r, c = divmod(rest, 10)
        assert r in ys.tolist() and c in ys.tolist()
        torch.testing.assert_close(p, x[i, :, r : r + 4, c : c + 4])


def test_sample_patches_refuses_indices_off_the_images_device() -> None:
    # On a GPU, CPU index tensors would be copied to the device at every training step (a
    # blocking copy); the training loop moves them once, and a regression fails loudly here.
    x = torch.rand(2, 1, 10, 10)
    ys = patch_starts(10, 4, 3)
    with pytest.raises(ValueError, match="must be on the images' device cpu"):
        sample_patches(x, 4, ys.to("meta"), ys, 5, torch.Generator().manual_seed(0))


class FakeOOM(RuntimeError):
    pass


def test_map_in_chunks_halves_on_out_of_memory(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        if len(batch) > 3:  # simulated: more than 3 rows "do not fit"
            raise FakeOOM("CUDA out of memory")
        return batch * 2

    x = torch.arange(10.0)[:, None]
    with caplog.at_level(logging.WARNING):
        out, chunk = map_in_chunks(fn, x, 16, oom=FakeOOM)
    torch.testing.assert_close(out, x * 2)
    assert chunk == 2
    assert calls[:4] == [10, 8, 4, 2]  # 16 (cut to the 10 rows there are) -> 8 -> 4 -> 2
    assert "retrying with 8" in caplog.text and "retrying with 2" in caplog.text


def test_map_in_chunks_gives_up_at_one_row_and_passes_other_errors() -> None:
    def always(batch: torch.Tensor) -> torch.Tensor:
        raise FakeOOM("CUDA out of memory")

    with pytest.raises(FakeOOM):
        map_in_chunks(always, torch.zeros(4, 1), 4, oom=FakeOOM)

    def broken(batch: torch.Tensor) -> torch.Tensor:
        raise ValueError("not an OOM")

    with pytest.raises(ValueError):
        map_in_chunks(broken, torch.zeros(4, 1), 4, oom=FakeOOM)


def test_map_in_chunks_halves_once_on_a_cuda_launch_configuration_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Simulated: the grid limit of a kernel launch (65,535 blocks) is reached above 4 rows; the
    # error is a plain RuntimeError with CUDA's message, not an out-of-memory error.
    calls: list[int] = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        if len(batch) > 4:
            raise RuntimeError("CUDA error: invalid configuration argument")
        return batch + 1

    x = torch.arange(12.0)[:, None]
    with caplog.at_level(logging.WARNING):
        out, chunk = map_in_chunks(fn, x, 8, oom=FakeOOM)
    torch.testing.assert_close(out, x + 1)
    assert chunk == 4 and calls == [8, 4, 4, 4]
    assert "launch configuration error at 8 patches per pass; retrying with 4" in caplog.text


def test_map_in_chunks_raises_a_second_launch_error_and_other_runtime_errors() -> None:
    def too_big(batch: torch.Tensor) -> torch.Tensor:
        if len(batch) > 2:
            raise RuntimeError("CUDA error: invalid configuration argument")
        return batch

    with pytest.raises(RuntimeError, match="invalid configuration"):  # halved once only: 8 -> 4
        map_in_chunks(too_big, torch.zeros(8, 1), 8, oom=FakeOOM)

    def other(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        map_in_chunks(other, torch.zeros(8, 1), 8, oom=FakeOOM)


def test_automatic_batch_stays_below_the_cuda_grid_limit() -> None:
    assert MAX_AUTO_BATCH == 65_472 and MAX_AUTO_BATCH % 64 == 0 and MAX_AUTO_BATCH < 65_535
    huge = 10**15  # an H200 in bf16: memory for far more rows than one launch may take
    assert auto_batch_rows(huge, 1000) == MAX_AUTO_BATCH
    assert auto_batch_rows(huge, 1000, cap=1 << 16) == 65_536  # the old cap was the defect
    assert auto_batch_rows(100_000 * 1000, 1000) == 49_984  # half of 100,000 rows, 64-aligned
    assert auto_batch_rows(100 * 1000, 1000) == 50  # under 64 rows: as many as fit
    assert auto_batch_rows(10, 1000) == 1


def test_noise_map_does_not_depend_on_chunking(tiny_unet: TinyUNet) -> None:
    unet = tiny_unet(8, (8, 8))
    scheduler = make_scheduler()
    x0 = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def run(chunk: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(5)
        return predict_noise_map(unet, scheduler, x0, 1, 8, 5, chunk, g)[0]

    big, small = run(1000), run(7)
    assert big.shape == x0.shape
    torch.testing.assert_close(big, small, rtol=1e-4, atol=1e-4)


# -- features --------------------------------------------------------------------------------


def test_features_of_a_zero_map_are_zero() -> None:
    processed = anomaly_map(torch.zeros(2, 1, 20, 20), blur_sigma=1.0)
    assert torch.equal(processed, torch.zeros_like(processed))
    assert torch.equal(image_features(processed, 8), torch.zeros(2, 2))


def test_features_of_a_single_bright_pixel_by_hand() -> None:
    m = torch.zeros(1, 1, 16, 16)
    m[0, 0, 8, 8] = 1.0
    processed = anomaly_map(m, blur_sigma=0.0)
    # Normalised Sobel taps are 1/8 and 2/8: the 4 side neighbours see 2/8 in one direction, the
    # 4 corner neighbours 1/8 in both; the centre and everything else see nothing.
    assert float(processed[0, 0, 8, 7]) == pytest.approx(0.25)
    assert float(processed[0, 0, 7, 7]) == pytest.approx(math.sqrt(2) / 8)
    assert float(processed[0, 0, 8, 8]) == 0.0
    assert int((processed > 0).sum()) == 8
    total = math.sqrt(4 * 0.25**2 + 4 * 2 / 64)
    features = image_features(processed, window=3)
    torch.testing.assert_close(features, torch.tensor([[total, total]]))
    # The best 2x2 window holds the centre, two side neighbours and one corner neighbour.
    two = image_features(processed, window=2)[0, 1]
    assert float(two) == pytest.approx(math.sqrt(2 * 0.25**2 + 2 / 64))


def _explicit_features(m: np.ndarray, sigma: float, window: int) -> tuple[float, float]:
    """The same pipeline written out with numpy loops, on a small map."""
    k = 2 * math.ceil(3 * sigma) + 1
    r, (h, w) = k // 2, m.shape
    g = np.exp(-((np.arange(k) - r) ** 2) / (2 * sigma**2))
    g /= g.sum()
    pad = np.pad(m, r, mode="reflect")
    across = np.array([[pad[i, j : j + k] @ g for j in range(w)] for i in range(h + 2 * r)])
    blurred = np.array([[across[i : i + k, j] @ g for j in range(w)] for i in range(h)])
    e = np.pad(blurred, 1, mode="edge")
    sx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8.0
    gx = np.array([[(e[i : i + 3, j : j + 3] * sx).sum() for j in range(w)] for i in range(h)])
    gy = np.array([[(e[i : i + 3, j : j + 3] * sx.T).sum() for j in range(w)] for i in range(h)])
    mag = np.sqrt(gx**2 + gy**2)
    local = max(
        math.sqrt((mag[i : i + window, j : j + window] ** 2).sum())
        for i in range(h - window + 1)
        for j in range(w - window + 1)
    )
    return math.sqrt((mag**2).sum()), local


def test_features_of_a_bright_square_match_an_explicit_computation() -> None:
    m = np.zeros((18, 16))
    m[5:9, 9:13] = 3.0
    m[14, 2] = -1.0
    processed = anomaly_map(torch.tensor(m, dtype=torch.float32)[None, None], blur_sigma=1.0)
    got = image_features(processed, window=5)[0].tolist()
    assert got == pytest.approx(_explicit_features(m, 1.0, 5), rel=1e-5)


# -- scorer ----------------------------------------------------------------------------------


def test_isolation_forest_flags_far_outliers() -> None:
    g = np.random.default_rng(0)
    cloud = g.normal([5.0, -2.0], [1.0, 0.1], size=(300, 2))  # scales differ: StandardScaler
    scorer = IsolationForestScorer(contamination=0.05, seed=0).fit(torch.from_numpy(cloud))
    assert isinstance(scorer, Scorer)
    outliers = np.array([[5.0, -3.0], [12.0, -2.0], [-3.0, 0.0]])
    s_out, s_in = scorer.score(outliers), scorer.score(cloud)
    assert s_out.shape == (3,) and float(s_out.min()) > float(s_in.quantile(0.95))
    assert scorer.decide(outliers).tolist() == [1, 1, 1]
    flagged = float(scorer.decide(cloud).float().mean())
    assert 0.02 <= flagged <= 0.08  # contamination is the share of training images flagged


def test_isolation_forest_is_seeded() -> None:
    x = np.random.default_rng(1).normal(size=(100, 2))
    a = IsolationForestScorer(seed=3).fit(x).score(x)
    b = IsolationForestScorer(seed=3).fit(x).score(x)
    c = IsolationForestScorer(seed=4).fit(x).score(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"patch_size": 101}, "patch_size"),
        ({"patch_size": 1}, "patch_size"),  # too small to reflect-pad up to a multiple of 4
        ({"t": 1000}, "t"),
        ({"t": -1}, "t"),
        ({"contamination": 0.0}, "contamination"),
        ({"contamination": 0.6}, "contamination"),
        ({"train_stride": 0}, "train_stride"),
        ({"infer_stride": 0}, "infer_stride"),
        ({"norm_num_groups": 5}, "block_out_channels"),
        ({"block_out_channels": ()}, "block_out_channels"),
        ({"window": 0}, "window"),
        ({"window": 101}, "window"),
        ({"precision": "fp16"}, "precision"),
        ({"beta_schedule": "cosine"}, "beta_schedule"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"scorer_images": 1}, "scorer_images"),
        ({"blur_sigma": -1.0}, "blur_sigma"),
        ({"train_max_t": 1001}, "train_max_t"),
    ],
)
def test_out_of_range_parameters_are_config_errors(override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^radar\.{field} must be .*, got "):
        RadarParams(**override)


# The defaults and presets themselves are pinned by their job ids, a preset's values over the
# defaults and an invalid value through the registry by test_method_contract.py.
def test_input_spec_and_command_line_overrides() -> None:
    assert Radar(RadarParams()).input_spec == InputSpec((100, 100), grayscale=True)
    got = registry.build_params(
        "radar", "paper", {"block_out_channels": "16,32,32", "norm_num_groups": "8", "t": "5"}
    )
    assert got.block_out_channels == (16, 32, 32) and got.t == 5
    assert registry.build_params("radar", "paper", {"patch_size": "14"}).patch_size == 14


# -- the detector ----------------------------------------------------------------------------


# Output shapes and same seed -> same numbers: test_method_contract.py.


@pytest.fixture(scope="module")
def fitted(random_images: RandomImages, cpu_ctx: CpuContext) -> Radar:
    return Radar(RadarParams(**TINY)).fit(random_images(6, 32), cpu_ctx(0))


def test_fit_records_its_state(fitted: Radar) -> None:
    assert math.isfinite(fitted.train_loss_)
    info = fitted.fit_info_
    assert info["steps"] == 3 and info["patches_seen"] == 24
    assert info["final_loss"] == fitted.train_loss_


def test_maps_follow_the_test_resolution(fitted: Radar, random_images: RandomImages) -> None:
    big = random_images(2, 48, seed=2)
    pred = fitted.predict(big)
    assert pred.maps.shape == (2, 48, 48)


def test_another_seed_gives_other_numbers(
    fitted: Radar, random_images: RandomImages, cpu_ctx: CpuContext
) -> None:
    # The same seed gives the same numbers whatever the global RNG: test_method_contract.py.
    test = random_images(4, 32, seed=1)
    other = Radar(RadarParams(**TINY)).fit(random_images(6, 32), cpu_ctx(1)).predict(test)
    assert not torch.equal(fitted.predict(test).scores, other.scores)


def test_progress_is_reported_in_order(random_images: RandomImages, cpu_ctx: CpuContext) -> None:
    seen: list[tuple[str, float]] = []
    Radar(RadarParams(**{**TINY, "train_steps": 4})).fit(
        random_images(4, 32), cpu_ctx(0, progress=lambda m, f: seen.append((m, f)))
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == 1.0
    assert any("step 4/4" in m for m, _ in seen)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_separates_planted_defects_on_the_synthetic_set(cpu_ctx: CpuContext) -> None:
    from bench.datasets.synthetic import SyntheticDataset

    params = RadarParams(**E2E)
    spec = Radar(params).input_spec
    data = SyntheticDataset("brick", n_train=40, n_test_good=20, n_test_anomalous=20)
    train, test = data.load("train", spec, 0), data.load("test", spec, 0)
    pred = Radar(params).fit(train, cpu_ctx(0)).predict(test)
    image_auroc = roc_auc_score(test.labels.numpy(), pred.scores.numpy())
    pixel_auroc = roc_auc_score(test.masks.flatten().numpy(), pred.maps.flatten().numpy())
    assert image_auroc > 0.75, image_auroc
    assert pixel_auroc > 0.6, pixel_auroc


E2E = dict(PRESETS["quick"])


def test_gflops_per_image_counts_every_patch(
    random_images: RandomImages, cpu_ctx: CpuContext
) -> None:
    params = RadarParams(**TINY)
    fitted = Radar(params).fit(random_images(4, 32), cpu_ctx(0))
    per_patch = (
        fitted.gflops_per_image()
        / len(patch_starts(params.image_size, params.patch_size, params.infer_stride)) ** 2
    )
    assert per_patch > 0
    stride_one = Radar(RadarParams(**{**TINY, "infer_stride": 1}))
    stride_one.fit(random_images(4, 32), cpu_ctx(0))
    n = params.image_size - params.patch_size + 1
    assert stride_one.gflops_per_image() == pytest.approx(per_patch * n * n)


def test_paper_unet_trained_short_is_flagged() -> None:
    assert Radar(RadarParams()).flags == []  # the paper preset's 10,000 x 512 patches
    assert Radar(RadarParams(train_steps=2500, batch_size=2048)).flags == []  # as many patches
    assert Radar(RadarParams(train_steps=800, batch_size=2048)).flags == ["train:cut"]
    # A smaller network is marked by its preset (preset:quick), not by this flag.
    assert Radar(RadarParams(**TINY)).flags == []
