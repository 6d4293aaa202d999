"""RADAR's swappable scorers: hand-checked Gaussian and OSD-IRF densities, the IRF formula,
the U-Net cache, and the parameters that choose a scorer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_cpu_ctx, make_random_images
from scipy.stats import multivariate_normal, norm
from sklearn.covariance import LedoitWolf

from bench.interface import ImageSet, RunContext
from bench.methods import registry
from bench.methods.diffusion.ddpm import alpha_bar
from bench.methods.radar.detector import Radar, RadarParams
from bench.methods.radar.scoring import (
    GaussianDensity,
    GaussianScorer,
    IrfScorer,
    RawScorer,
    Scorer,
    neighbourhood_features,
)
from bench.util.errors import ConfigError

LOG_2PI = math.log(2 * math.pi)

TINY = dict(
    image_size=16,
    patch_size=8,
    block_out_channels=(8, 8),
    norm_num_groups=8,
    train_steps=2,
    batch_size=4,
    infer_stride=4,
    infer_batch=64,
    n_estimators=10,
)


# One thread: tiny networks gain nothing from more, and lose a lot on a loaded machine.
pytestmark = pytest.mark.threads(1)


# -- Gaussian on image features ----------------------------------------------------------------


def test_gaussian_density_by_hand() -> None:
    # The corners of a square: mean (1, 1), ML covariance the identity (variances 1, no
    # correlation), so -log N((3, 1)) = 1/2 (|(2, 0)|^2 + 2 log 2 pi + log 1) = 2 + log 2 pi.
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    density = GaussianDensity("full").fit(x)
    np.testing.assert_allclose(density.mean_, [1.0, 1.0])
    got = density.nll(np.array([[3.0, 1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(got, [2.0 + LOG_2PI, LOG_2PI])
    assert GaussianDensity("diagonal").fit(x).nll(np.array([[3.0, 1.0]]))[0] == pytest.approx(
        2.0 + LOG_2PI
    )


@pytest.mark.parametrize("covariance", ["full", "ledoitwolf", "diagonal"])
def test_gaussian_density_matches_scipy(covariance: str) -> None:
    g = np.random.default_rng(0)
    x = g.multivariate_normal(
        [1.0, -2.0, 0.5], [[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0, 0.3, 0.5]], 40
    )
    test = g.normal(size=(7, 3)) * 3
    cov = {
        "full": np.cov(x, rowvar=False, bias=True),
        "ledoitwolf": LedoitWolf().fit(x).covariance_,
        "diagonal": np.diag(x.var(0)),
    }[covariance]
    expected = -multivariate_normal(x.mean(0), cov).logpdf(test)
    np.testing.assert_allclose(GaussianDensity(covariance).fit(x).nll(test), expected, rtol=1e-10)


def test_gaussian_density_refuses_collinear_features() -> None:
    x = np.stack([np.arange(10.0), 2 * np.arange(10.0)], 1)
    with pytest.raises(ValueError, match="ledoitwolf"):
        GaussianDensity("full").fit(x)
    assert np.isfinite(GaussianDensity("ledoitwolf").fit(x).nll(x)).all()


def test_gaussian_scorer_scores_and_thresholds_at_the_quantile() -> None:
    g = np.random.default_rng(1)
    train = g.normal([3.0, 1.0], [1.0, 0.1], size=(400, 2))
    scorer = GaussianScorer(quantile=0.9).fit(train)
    assert isinstance(scorer, Scorer)
    test = np.array([[3.0, 1.0], [3.0, 1.5], [6.0, 1.0]])
    expected = -multivariate_normal(train.mean(0), np.cov(train.T, bias=True)).logpdf(test)
    np.testing.assert_allclose(scorer.score(test).numpy(), expected)
    # (3, 1.5) is 5 sigma off in the narrow direction: farther than (6, 1), 3 sigma in the wide.
    assert scorer.decide(test).tolist() == [0, 1, 1]
    assert scorer.score(test)[1] > scorer.score(test)[2]
    flagged = float(scorer.decide(train).float().mean())
    assert flagged == pytest.approx(0.1, abs=0.005)


def test_raw_scorer_is_the_first_feature() -> None:
    train = torch.tensor([[float(i), 100.0 - i] for i in range(1, 11)])
    scorer = RawScorer(quantile=0.5).fit(train)
    assert scorer.threshold_ == pytest.approx(5.5)
    assert scorer.score(torch.tensor([[7.0, 0.0], [2.0, 9.0]])).tolist() == [7.0, 2.0]
    assert scorer.decide(torch.tensor([[7.0, 0.0], [2.0, 9.0]])).tolist() == [1, 0]


# -- OSD-IRF scorer ----------------------------------------------------------------------------


def test_irf_pixel_density_by_hand() -> None:
    # Pixel (0, 0) sees 1, 3, 1, 3 in training: mean 2, variance 1. A test value of 4 there has
    # -log N(4; 2, 1) = 1/2 (2^2 + log 2 pi); pixel (1, 1) sees 0, 0, 0, 4: mean 1, variance 3.
    train = torch.zeros(4, 1, 2, 2)
    train[:, 0, 0, 0] = torch.tensor([1.0, 3.0, 1.0, 3.0])
    train[:, 0, 0, 1] = torch.tensor([-1.0, 1.0, -1.0, 1.0])
    train[:, 0, 1, 0] = torch.tensor([5.0, 7.0, 5.0, 7.0])
    train[:, 0, 1, 1] = torch.tensor([0.0, 0.0, 0.0, 4.0])
    scorer = IrfScorer(features="pixel", quantile=0.5).fit(train)
    test = torch.tensor([[[[4.0, 0.0], [6.0, 1.0]]]])
    got = scorer.pixel_map(test)
    assert got.shape == (1, 1, 2, 2)
    assert float(got[0, 0, 0, 0]) == pytest.approx(0.5 * (4.0 + LOG_2PI))
    expected = -norm.logpdf([[4.0, 0.0], [6.0, 1.0]], [[2.0, 0.0], [6.0, 1.0]],
                            np.sqrt([[1.0, 1.0], [1.0, 3.0]]))  # fmt: skip
    np.testing.assert_allclose(got[0, 0].numpy(), expected)
    assert float(scorer.score(test)[0]) == pytest.approx(expected.max())
    top2 = IrfScorer(features="pixel", reduce="topk", topk=2).fit(train).score(test)
    assert float(top2[0]) == pytest.approx(np.sort(expected.ravel())[-2:].mean())


def test_irf_channels_add_their_log_densities() -> None:
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(30, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    got = IrfScorer("pixel").fit(train).pixel_map(test)
    mu, sd = train.double().mean(0), train.double().std(0, unbiased=False)
    expected = -norm.logpdf(test.double(), mu, sd).sum(1, keepdims=True)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_neighbourhood_features_by_hand() -> None:
    field = torch.arange(16.0).reshape(1, 1, 4, 4)
    rows = neighbourhood_features(field, 3)
    assert rows.shape == (1, 4, 4, 9)
    assert rows[0, 1, 1].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    # Reflect padding at the corner: row -1 is row 1, column -1 is column 1.
    assert rows[0, 0, 0].tolist() == [5, 4, 5, 1, 0, 1, 5, 4, 5]
    assert torch.equal(neighbourhood_features(field, 1)[..., 0], field[:, 0])


def test_irf_patch_density_matches_scipy() -> None:
    g = torch.Generator().manual_seed(2)
    train, test = torch.randn(6, 1, 8, 8, generator=g), torch.randn(1, 1, 8, 8, generator=g)
    scorer = IrfScorer("patch", patch=2, covariance="ledoitwolf").fit(train)
    rows = neighbourhood_features(train.double(), 2).reshape(-1, 4).numpy()
    dist = multivariate_normal(rows.mean(0), LedoitWolf().fit(rows).covariance_)
    expected = -dist.logpdf(neighbourhood_features(test.double(), 2).reshape(-1, 4).numpy())
    np.testing.assert_allclose(scorer.pixel_map(test).flatten().numpy(), expected, rtol=1e-10)


def test_irf_flags_a_planted_outlier_and_thresholds_on_training_scores() -> None:
    g = torch.Generator().manual_seed(3)
    train = torch.randn(40, 1, 8, 8, generator=g) * 0.1
    scorer = IrfScorer("pixel", quantile=0.9).fit(train)
    test = torch.randn(2, 1, 8, 8, generator=g) * 0.1
    test[1, 0, 3, 5] = 2.0  # 20 sigma
    pixel = scorer.pixel_map(test)
    assert tuple(divmod(int(pixel[1].flatten().argmax()), 8)) == (3, 5)
    assert scorer.decide(test).tolist() == [0, 1]
    # The threshold is the quantile of leave-one-out training scores: image 0 against the
    # per-pixel Gaussians of images 1..39, computed here directly.
    loo = IrfScorer("pixel", quantile=0.9).fit(train[1:]).score(train[:1])
    assert float(scorer.train_scores_[0]) == pytest.approx(float(loo[0]), rel=1e-9)
    assert scorer.threshold_ == pytest.approx(float(scorer.train_scores_.quantile(0.9)))
    assert bool((scorer.train_scores_ > scorer.score(train)).all())  # in-sample is optimistic
    with pytest.raises(ValueError, match="diagonal"):
        IrfScorer("pixel", covariance="ledoitwolf")


# -- RADAR with each scorer --------------------------------------------------------------------


def _set(n: int, seed: int) -> ImageSet:
    return make_random_images(n, 16, seed, name="good/{i}.png")


def _ctx(cache: Path | None = None, seed: int = 0) -> RunContext:
    return make_cpu_ctx(seed, cache_dir=cache)


def test_inverse_residual_field_is_the_scaled_noise_error() -> None:
    # One patch per image (patch = image, stride = patch): the replayed noise must be the noise
    # predict_noise_map injected, so that the U-Net on x_t gives back exactly its noise map.
    params = RadarParams(
        **{**TINY, "patch_size": 16, "infer_stride": 16, "t": 7, "irf_blur_sigma": 0}
    )
    radar = Radar(params).fit(_set(4, 0), _ctx())
    x = radar._prepare(_set(3, 1).images)
    noise_map, eps = radar._single_step(x, [f"good/{i}.png" for i in range(3)])
    abar = alpha_bar(radar.scheduler_, 7, x)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * eps
    with torch.inference_mode():
        again = radar.unet_(x_t, torch.full((3,), 7)).sample
    torch.testing.assert_close(again, noise_map, rtol=1e-4, atol=1e-5)
    irf = radar.inverse_residual_field(x, noise_map, eps)
    torch.testing.assert_close(irf, ((1 - abar) / abar).sqrt() * (noise_map - eps))


@pytest.mark.parametrize("scorer", ["iforest", "gaussian", "irf", "raw"])
def test_every_scorer_runs_in_radar_and_shares_one_trained_unet(
    scorer: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.getbasetemp() / "shared-unet-cache"
    train, test = _set(6, 0), _set(4, 1)
    radar = Radar(RadarParams(**TINY, scorer=scorer)).fit(train, _ctx(cache))
    pred = radar.predict(test)
    assert pred.scores.shape == (4,) and pred.maps.shape == (4, 16, 16)
    assert set(pred.decisions.tolist()) <= {0, 1} and pred.scores.isfinite().all()
    assert radar.fit_info_["scorer"] == scorer
    files = list(cache.glob("radar-unet-*.pt"))
    assert len(files) == 1  # the same training config: every scorer reuses the first U-Net
    assert radar.fit_info_["unet_key"] in files[0].name
    if scorer == "raw":  # no learned scorer: the score is the global L2 norm of the Sobel map
        again = Radar(RadarParams(**TINY)).fit(train, _ctx(cache))
        processed = again._scorer_inputs(again._prepare(test.images), test.names)[0]
        torch.testing.assert_close(pred.scores, processed[:, 0].double())


def test_cached_unet_gives_the_same_predictions_and_keeps_the_training_record(
    tmp_path: Path,
) -> None:
    train, test = _set(6, 0), _set(4, 1)
    first = Radar(RadarParams(**TINY)).fit(train, _ctx(tmp_path))
    second = Radar(RadarParams(**{**TINY, "t": 3})).fit(train, _ctx(tmp_path))
    third = Radar(RadarParams(**TINY)).fit(train, _ctx(tmp_path))
    assert not first.fit_info_["unet_from_cache"]
    assert second.fit_info_["unet_from_cache"] and third.fit_info_["unet_from_cache"]
    for key in ("train_seconds", "final_loss", "train_peak_mem_mb", "unet_key"):
        assert third.fit_info_[key] == first.fit_info_[key]
    a, b = first.predict(test), third.predict(test)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.maps, b.maps)
    # Another seed, another patch size or other training data: another U-Net.
    Radar(RadarParams(**TINY)).fit(train, _ctx(tmp_path, seed=1))
    Radar(RadarParams(**TINY)).fit(_set(6, 5), _ctx(tmp_path))
    assert len(list(tmp_path.glob("radar-unet-*.pt"))) == 3
    # A damaged cache file is ignored (retrained), not a crash.
    for path in tmp_path.glob("radar-unet-*.pt"):
        path.write_bytes(b"not a checkpoint")
    assert not Radar(RadarParams(**TINY)).fit(train, _ctx(tmp_path)).fit_info_["unet_from_cache"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"scorer": "svm"}, "scorer"),
        ({"quantile": 1.0}, "quantile"),
        ({"quantile": 0.0}, "quantile"),
        ({"irf_features": "image"}, "irf_features"),
        ({"irf_covariance": "ledoitwolf"}, "irf_covariance"),  # needs irf_features=patch
        ({"irf_reduce": "mean"}, "irf_reduce"),
        ({"irf_topk": 0}, "irf_topk"),
        ({"irf_patch": 0}, "irf_patch"),
        ({"gaussian_covariance": "shrunk"}, "gaussian_covariance"),
    ],
)
def test_scorer_parameters_are_validated(override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^radar\.{field} must be .*, got "):
        RadarParams(**override)


def test_scorer_parameters_from_the_command_line() -> None:
    p = registry.build_params(
        "radar", "paper", {"scorer": "irf", "irf_features": "patch", "irf_covariance": "ledoitwolf"}
    )
    assert (p.scorer, p.irf_features, p.irf_covariance) == ("irf", "patch", "ledoitwolf")
    assert RadarParams().scorer == "iforest"  # the paper's scorer stays the default
    with pytest.raises(ConfigError, match=r"radar\.scorer='svm': expected one of iforest"):
        registry.build_params("radar", "paper", {"scorer": "svm"})
