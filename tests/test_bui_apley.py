"""Tests of the Bui & Apley texture-SPC baseline (bench.methods.bui_apley)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import BUI_APLEY_TINY, CpuContext, RandomImages
from scipy import stats
from sklearn.metrics import roc_auc_score

from bench.interface import InputSpec
from bench.methods import registry
from bench.methods.bui_apley import (
    BuiApley,
    BuiApleyParams,
    ExpTailECDF,
    anderson_darling,
    anderson_darling_map,
    expand_nb,
    neighbourhood_data,
    neighbourhood_offsets,
    place_on_image,
)
from bench.util.errors import ConfigError, DataError

TINY = BUI_APLEY_TINY


# -- the statistic -----------------------------------------------------------------------------


def test_anderson_darling_by_hand() -> None:
    # CDF values 0.1, 0.5, 0.9 (given unsorted): A^2 = -n - (1/n) sum_i (2i-1)
    # [ln p_(i) + ln(1 - p_(n+1-i))] = -3 - (2 ln .1 + 6 ln .5 + 10 ln .9) / 3.
    by_hand = -3 - (2 * math.log(0.1) + 6 * math.log(0.5) + 10 * math.log(0.9)) / 3
    assert by_hand == pytest.approx(0.272553, abs=1e-6)
    assert anderson_darling(np.array([0.9, 0.1, 0.5])) == pytest.approx(by_hand, rel=1e-12)


def test_anderson_darling_matches_scipy_for_a_known_distribution() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(0.3, 1.2, size=25)  # not standard normal: a clearly non-zero statistic
    expected = stats.goodness_of_fit(
        stats.norm, data, known_params={"loc": 0.0, "scale": 1.0}, n_mc_samples=1, rng=0
    ).statistic
    assert anderson_darling(stats.norm.cdf(data)) == pytest.approx(expected, rel=1e-9)


def test_moving_statistic_is_the_statistic_of_each_window() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, size=(6, 7))
    got = anderson_darling_map(p, 3)
    assert got.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            assert got[i, j] == pytest.approx(anderson_darling(p[i : i + 3, j : j + 3].ravel()))


def test_moving_statistic_peaks_where_the_residuals_change() -> None:
    rng = np.random.default_rng(2)
    residuals = rng.normal(size=(30, 30))
    residuals[10:15, 18:23] *= 4.0  # a local change of spread
    stat = anderson_darling_map(stats.norm.cdf(residuals), 5)
    i, j = np.unravel_index(stat.argmax(), stat.shape)
    assert 6 <= i <= 14 and 14 <= j <= 22  # a window overlapping the changed block
    full = place_on_image(stat, (30, 30), 2, 2)
    assert full.shape == (30, 30) and full[2 + i, 2 + j] == stat.max()
    assert full[0, 0] == stat[0, 0]  # borders replicate the nearest window


def test_exptail_ecdf_is_the_ecdf_inside_and_exponential_outside() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(size=5000)
    cdf = ExpTailECDF(r)
    middle = np.array([-1.0, 0.0, 0.5, 1.5])
    assert cdf(middle) == pytest.approx((r[None] <= middle[:, None]).mean(1))
    far = np.array([r.min() - 1.0, r.max() + 1.0])
    p_far = cdf(far)
    assert 0 < p_far[0] < 1 / len(r) and 1 - 1 / len(r) < p_far[1] < 1
    # The left tail by hand: F(joint) * exp(-lambda (joint - y)), N = 10 tail values, m = 5.
    s = np.sort(r)
    lam = 1 / np.mean(s[9] - s[:10])
    assert cdf.joint_left_ == s[5]
    assert p_far[0] == pytest.approx(6 / 5000 * math.exp(-lam * (s[5] - far[0])))
    grid = np.linspace(-6, 6, 200)
    assert np.all(np.diff(cdf(grid)) >= 0)


# -- the neighbourhood -------------------------------------------------------------------------


@pytest.mark.parametrize("nb", [(1,), (2,), (2, 1, 3)])
def test_neighbourhood_is_causal_and_excludes_the_pixel(nb: tuple[int, ...]) -> None:
    offsets = neighbourhood_offsets(nb)
    h, w1, w2 = (nb * 3)[:3] if len(nb) == 1 else nb
    assert len(offsets) == (w1 + w2 + 1) * h + w1  # spc4sts's count
    assert not np.any((offsets[:, 0] == 0) & (offsets[:, 1] == 0))
    # Raster-scan causal: a row above, or the same row to the left.
    assert np.all((offsets[:, 0] < 0) | (offsets[:, 1] < 0))
    image = np.arange(9 * 11, dtype=np.float64).reshape(9, 11)  # every value unique
    x, y = neighbourhood_data(image, nb)
    assert np.array_equal(y, image[h:, w1 : 11 - w2].ravel())
    assert not np.any(x == y[:, None])  # the response is never among its own features
    rows, cols = np.divmod(y.astype(int), 11)
    assert np.array_equal(x, image[rows[:, None] + offsets[:, 0], cols[:, None] + offsets[:, 1]])


# -- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"w": 4}, "w"),
        ({"w": 1}, "w"),
        ({"w": 101}, "w"),
        ({"image_size": 20, "w": 19}, "w"),  # 20 - nb 2 - 2 leaves a 16 px residual grid
        ({"nb": (1, 2)}, "nb"),
        ({"nb": (0,)}, "nb"),
        ({"nb": (60,)}, "nb"),
        ({"subsample": 0.0}, "subsample"),
        ({"fa_rate": 1.0}, "fa_rate"),
        ({"limit_fraction": 0.0}, "limit_fraction"),
        ({"max_limit_images": 0}, "max_limit_images"),
        ({"min_split": 1}, "min_split"),
        ({"cp": -1.0}, "cp"),
        ({"max_fit_pixels": -1}, "max_fit_pixels"),
    ],
)
def test_out_of_range_parameters_are_config_errors(override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^bui_apley\.{field} must be .*, got "):
        BuiApleyParams(**override)


# The defaults and presets themselves are pinned by their job ids, a preset's values over the
# defaults and an invalid value through the registry by test_method_contract.py.
def test_input_spec_and_command_line_overrides() -> None:
    assert BuiApley(BuiApleyParams()).input_spec == InputSpec((100, 100), grayscale=True)
    got = registry.build_params("bui_apley", "paper", {"nb": "2,1,3", "w": "7"})
    assert got.nb == (2, 1, 3) and got.w == 7


# -- the detector ------------------------------------------------------------------------------


# Output shapes and same seed -> same numbers: test_method_contract.py.


@pytest.fixture(scope="module")
def fitted(random_images: RandomImages, cpu_ctx: CpuContext) -> BuiApley:
    return BuiApley(BuiApleyParams(**TINY)).fit(random_images(6, 24), cpu_ctx(0))


def test_fit_records_its_state(fitted: BuiApley) -> None:
    info = fitted.fit_info_
    assert info["fit_images"] + info["limit_images"] == 6 and info["limit_images"] == 2
    assert info["neighbours"] == 4 and info["fit_pixels"] == 4 * 23 * 22
    assert info["tree_leaves"] >= 1 and info["residual_std"] > 0
    # The limit is the 95 % quantile of the held-out images' scores.
    assert fitted.control_limit_ == np.quantile(fitted.phase_one_scores_, 0.95)
    assert fitted.inference_info["mode"] == "pixel_tree"


def test_decisions_use_the_control_limit_and_scores_are_map_maxima(
    fitted: BuiApley, random_images: RandomImages
) -> None:
    a = fitted.predict(random_images(5, 24, seed=1))
    assert torch.equal(a.decisions, (a.scores > fitted.control_limit_).long())
    # The image score is the largest value of the map.
    assert torch.allclose(a.scores, a.maps.flatten(1).amax(1))
    assert fitted.predict(random_images(2, 36, seed=2)).maps.shape == (2, 36, 36)


def test_another_seed_gives_other_numbers(random_images: RandomImages, cpu_ctx: CpuContext) -> None:
    # The same seed gives the same numbers whatever the global RNGs: test_method_contract.py
    # (with the same subsampling).
    train, test = random_images(6, 24), random_images(3, 24, seed=1)
    params = BuiApleyParams(**{**TINY, "subsample": 0.5})
    a = BuiApley(params).fit(train, cpu_ctx(0)).predict(test)
    c = BuiApley(params).fit(train, cpu_ctx(1)).predict(test)
    assert not torch.equal(a.scores, c.scores)


def test_one_training_image_is_a_data_error(
    random_images: RandomImages, cpu_ctx: CpuContext
) -> None:
    with pytest.raises(DataError, match="bui_apley needs >= 2 training images"):
        BuiApley(BuiApleyParams(**TINY)).fit(random_images(1, 24), cpu_ctx(0))


def test_localises_planted_defects_on_the_synthetic_set(cpu_ctx: CpuContext) -> None:
    from bench.datasets.synthetic import SyntheticDataset

    params = BuiApleyParams(image_size=48, nb=(1,), w=5, xval=3, n_alphas=4, cv_pixels=4000)
    data = SyntheticDataset("brick", n_train=10, n_test_good=4, n_test_anomalous=8, size=48)
    spec = BuiApley(params).input_spec
    train, test = data.load("train", spec, 0), data.load("test", spec, 0)
    pred = BuiApley(params).fit(train, cpu_ctx(0)).predict(test)
    pixel_auroc = roc_auc_score(test.masks.flatten().numpy(), pred.maps.flatten().numpy())
    image_auroc = roc_auc_score(test.labels.numpy(), pred.scores.numpy())
    assert pixel_auroc > 0.8, pixel_auroc
    assert image_auroc > 0.7, image_auroc


def test_gflops_count_the_tree_and_the_windows(fitted: BuiApley) -> None:
    """Per modelled pixel the tree's depth in comparisons; per window a sort and two weighted
    sums of n = w^2 logs; nothing to count before fit."""
    p = fitted.params
    count = fitted.gflops_per_image((p.image_size, p.image_size)) * 1e9
    h, w1, w2 = expand_nb(p.nb)
    rows, cols = p.image_size - h, p.image_size - w1 - w2
    n = p.w * p.w
    windows = (rows - p.w + 1) * (cols - p.w + 1)
    depth = fitted.tree_.get_depth()
    assert count == pytest.approx(rows * cols * depth + windows * (n * np.log2(n) + 4 * n))
    assert BuiApley(p).gflops_per_image((p.image_size, p.image_size)) is None
