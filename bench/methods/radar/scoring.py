"""One-class scorers: fitted on normal images only, they score and flag new ones.

RADAR's last stage is swappable (``radar.scorer``); every scorer has the same three calls
(:class:`Scorer`): ``fit(x) -> self`` on normal images only, ``score(x)`` (higher = more
anomalous) and ``decide(x)`` (1 = anomalous, 0 = normal) with the scorer's own threshold.

* :class:`IsolationForestScorer` (RADAR's paper default) and :class:`GaussianScorer` take the
  (N, D) image features of :mod:`bench.methods.radar.features`; :class:`RawScorer` takes them
  too and returns one column as it is (the ablation floor: no learned scorer).
* :class:`IrfScorer` takes (N, C, H, W) inverse residual fields and also gives a pixel map
  (:meth:`IrfScorer.pixel_map`); it follows OSD-IRF, B. Zhang, W. Li, G. Yu, X. Liu, W. Chen and
  L. Tian, "One-Step Diffusion with Inverse Residual Fields for Unsupervised Industrial Anomaly
  Detection" (arXiv:2604.18393, 2026).

The Gaussian scorers threshold at a ``quantile`` of the training images' own scores: with
``quantile = 1 - contamination`` that is the IsolationForest's rule (a share ``contamination`` of
the normal training images is flagged). The training scores are in-sample, so the threshold is
somewhat optimistic when the training set is small.

>>> import torch
>>> normal = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
>>> scorer = IsolationForestScorer(contamination=0.05, seed=0).fit(normal)
>>> scorer.decide(torch.tensor([[0.0, 0.0], [8.0, -8.0]])).tolist()
[0, 1]
>>> GaussianScorer(quantile=0.95).fit(normal).decide(torch.tensor([[0.0, 0.0], [8.0, -8.0]]))
tensor([0, 1])
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import EmpiricalCovariance, LedoitWolf
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler
from torch import Tensor

Features = Tensor | np.ndarray
Covariance = Literal["full", "diagonal", "ledoitwolf"]
COVARIANCES: tuple[str, ...] = ("full", "diagonal", "ledoitwolf")
_LOG_2PI = math.log(2.0 * math.pi)


@runtime_checkable
class Scorer(Protocol):
    """Fits on (N, D) features of normal images; scores and flags (M, D) features."""

    def fit(self, features: Features) -> Scorer: ...

    def score(self, features: Features) -> Tensor: ...

    def decide(self, features: Features) -> Tensor: ...

    def decide_scores(self, scores: Tensor) -> Tensor:
        """``decide`` from the scores ``score`` already gave (no second pass over the features)."""
        ...


def _as_numpy(features: Features) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().cpu().double().numpy()
    return np.asarray(features, dtype=np.float64)


class IsolationForestScorer:
    """StandardScaler, then scikit-learn's IsolationForest (RADAR's image-level classifier).

    ``contamination`` is the share of the training images the forest's threshold treats as
    outliers, i.e. the expected false-positive rate on normal images; it sets ``decide`` and
    leaves ``score`` unchanged.
    """

    def __init__(self, contamination: float = 0.05, n_estimators: int = 100, seed: int = 0):
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.seed = seed

    def fit(self, features: Features) -> IsolationForestScorer:
        x = _as_numpy(features)
        self.scaler_ = StandardScaler().fit(x)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            contamination=self.contamination,
            random_state=self.seed,
        ).fit(self.scaler_.transform(x))
        return self

    def score(self, features: Features) -> Tensor:
        """Minus the forest's ``score_samples``: a short average isolation path scores high."""
        z = self.scaler_.transform(_as_numpy(features))
        return torch.from_numpy(-self.forest_.score_samples(z))

    def decide(self, features: Features) -> Tensor:
        z = self.scaler_.transform(_as_numpy(features))
        return torch.from_numpy((self.forest_.predict(z) == -1).astype(np.int64))

    def decide_scores(self, scores: Tensor) -> Tensor:
        """The forest's ``predict`` flags ``score_samples < offset_``, i.e. our score (minus
        ``score_samples``) ``> -offset_``: the same 0/1 as ``decide`` without a second traversal
        of the trees (a large share of a small batch's latency)."""
        return (scores > -self.forest_.offset_).long()


def _quantile_threshold(train_scores: Tensor, quantile: float) -> float:
    return float(torch.quantile(train_scores.double(), quantile))


def _variance_floor(var: np.ndarray | Tensor, rel: float):
    """Keep constant dimensions (a black border, a saturated pixel) from giving 1/0."""
    floor = rel * float(var.mean()) + 1e-12
    return var.clip(min=floor) if isinstance(var, np.ndarray) else var.clamp_min(floor)


class GaussianDensity:
    """A multivariate Gaussian fitted on (N, D) rows; :meth:`nll` is the negative log-density

        -log N(x; mu, S) = 1/2 [ (x - mu)^T S^-1 (x - mu) + D log(2 pi) + log det S ].

    ``covariance``: ``full`` = the maximum-likelihood estimate (scikit-learn
    ``EmpiricalCovariance``), ``ledoitwolf`` = that estimate shrunk towards a scaled identity
    (scikit-learn ``LedoitWolf``: well-conditioned even with few rows per dimension), ``diagonal``
    = the per-dimension ML variances only. Variances below ``var_floor`` times their mean are
    raised to it (diagonal only).
    """

    def __init__(self, covariance: Covariance = "full", var_floor: float = 1e-6):
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        self.covariance = covariance
        self.var_floor = var_floor

    def fit(self, x: Features) -> GaussianDensity:
        x = _as_numpy(x)
        self.mean_ = x.mean(0)
        if self.covariance == "diagonal":
            self.var_ = _variance_floor(x.var(0), self.var_floor)
            self.logdet_ = float(np.log(self.var_).sum())
            return self
        est = (LedoitWolf() if self.covariance == "ledoitwolf" else EmpiricalCovariance()).fit(x)
        self.estimator_ = est
        sign, logdet = np.linalg.slogdet(est.covariance_)
        if sign <= 0:
            raise ValueError(
                "singular covariance: the features are collinear (use covariance='ledoitwolf')"
            )
        self.logdet_ = float(logdet)
        return self

    def mahalanobis_sq(self, x: Features) -> np.ndarray:
        """Squared Mahalanobis distance of each row to the mean."""
        x = _as_numpy(x)
        if self.covariance == "diagonal":
            return ((x - self.mean_) ** 2 / self.var_).sum(1)
        return self.estimator_.mahalanobis(x)

    def nll(self, x: Features) -> np.ndarray:
        d = len(self.mean_)
        return 0.5 * (self.mahalanobis_sq(x) + d * _LOG_2PI + self.logdet_)


class GaussianScorer:
    """A Gaussian on the image features of the normal images; score = negative log-density.

    The negative log-density ranks exactly as the Mahalanobis distance (they differ by a constant
    and a monotone map); ``decide`` flags scores above the ``quantile`` of the training scores.
    """

    def __init__(self, quantile: float = 0.95, covariance: Covariance = "full"):
        self.quantile = quantile
        self.covariance = covariance

    def fit(self, features: Features) -> GaussianScorer:
        self.density_ = GaussianDensity(self.covariance).fit(features)
        self.threshold_ = _quantile_threshold(self.score(features), self.quantile)
        return self

    def score(self, features: Features) -> Tensor:
        return torch.from_numpy(self.density_.nll(features))

    def decide(self, features: Features) -> Tensor:
        return self.decide_scores(self.score(features))

    def decide_scores(self, scores: Tensor) -> Tensor:
        return (scores > self.threshold_).long()


class RawScorer:
    """No learned scorer: column ``column`` of the features is the score (the ablation floor).

    For RADAR's features column 0 is the global L2 norm of the processed map. Only the decision
    threshold is fitted: the ``quantile`` of the training images' values.
    """

    def __init__(self, quantile: float = 0.95, column: int = 0):
        self.quantile = quantile
        self.column = column

    def fit(self, features: Features) -> RawScorer:
        self.threshold_ = _quantile_threshold(self.score(features), self.quantile)
        return self

    def score(self, features: Features) -> Tensor:
        return torch.from_numpy(_as_numpy(features)[:, self.column].copy())

    def decide(self, features: Features) -> Tensor:
        return self.decide_scores(self.score(features))

    def decide_scores(self, scores: Tensor) -> Tensor:
        return (scores > self.threshold_).long()


def neighbourhood_features(field: Tensor, size: int) -> Tensor:
    """(N, C, H, W) -> (N, H, W, C * size * size): every pixel's ``size x size`` neighbourhood.

    The border is reflect-padded so that every pixel has a full neighbourhood; an even ``size``
    reaches one pixel further up/left than down/right.
    """
    n, c, h, w = field.shape
    lo, hi = (size - 1) // 2, size // 2
    padded = F.pad(field, (lo, hi, lo, hi), mode="reflect") if size > 1 else field
    cols = F.unfold(padded, size)  # (N, C * size * size, H * W)
    return cols.transpose(1, 2).reshape(n, h, w, c * size * size)


class IrfScorer:
    """OSD-IRF-style scoring (arXiv:2604.18393), our reading: a Gaussian on the inverse residual
    fields of normals.

    The summary of OSD-IRF we work from gives no formula: reading the IRF as ``x0 - x0_hat`` of
    one diffusion step, the per-pixel Gaussian on it, and the blur of the field (RADAR's
    ``irf_blur_sigma``, applied by the method before this scorer) are ours.

    The inverse residual field (IRF) of an image ``x0`` is computed by the method from a single
    diffusion step at ``t`` (:func:`bench.methods.diffusion.ddpm.x0_from_eps`):

        x_t    = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
        x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
        IRF    = x0 - x0_hat = sqrt((1 - abar_t) / abar_t) (eps_hat - eps),

    i.e. the noise-prediction error scaled to image units. This scorer fits, on the IRFs of
    normal training images, either

    * ``features="pixel"``: one Gaussian per pixel position (mean ``mu_p`` and variance
      ``s2_p`` over the training images, per channel, channels independent); pixel map
      ``m_p = sum_c 1/2 [ (r_cp - mu_cp)^2 / s2_cp + log(2 pi s2_cp) ]``; or
    * ``features="patch"``: one Gaussian (``covariance`` ``diagonal`` or ``ledoitwolf``) on the
      ``patch x patch`` neighbourhood vectors of the IRF, pooled over all positions and images;
      pixel map = the negative log-density of each pixel's neighbourhood vector.

    Both maps are referenced to normal statistics (a pixel is anomalous when its IRF is unlikely
    under the normal model, whatever its sign). The image score is the map's maximum
    (``reduce="max"``) or the mean of its ``topk`` largest pixels (``reduce="topk"``);
    ``decide`` flags scores above the ``quantile`` of the training images' scores, which for
    ``pixel`` are leave-one-out scores (each image against the Gaussians of the others).
    """

    def __init__(
        self,
        features: Literal["pixel", "patch"] = "pixel",
        patch: int = 3,
        covariance: Covariance = "diagonal",
        reduce: Literal["max", "topk"] = "max",
        topk: int = 10,
        quantile: float = 0.95,
        var_floor: float = 1e-6,
    ):
        if features == "pixel" and covariance != "diagonal":
            raise ValueError("per-pixel IRF Gaussians are diagonal; use features='patch'")
        self.features = features
        self.patch = patch
        self.covariance = covariance
        self.reduce = reduce
        self.topk = topk
        self.quantile = quantile
        self.var_floor = var_floor

    def fit(self, fields: Tensor) -> IrfScorer:
        """``fields``: (N, C, H, W) IRFs of normal images."""
        x = fields.double().cpu()
        if self.features == "pixel":
            if x.shape[0] < 3:
                raise ValueError(f"per-pixel IRF Gaussians need >= 3 images, got {x.shape[0]}")
            self.mean_ = x.mean(0)
            self.var_ = _variance_floor(x.var(0, unbiased=False), self.var_floor)
            train_scores = self.reduce_map(self._leave_one_out_maps(x))
        else:
            rows = neighbourhood_features(x, self.patch).reshape(-1, x.shape[1] * self.patch**2)
            self.density_ = GaussianDensity(self.covariance, self.var_floor).fit(rows)
            # Pooled over every position of every image: the in-sample bias is negligible.
            train_scores = self.score(fields)
        self.train_scores_ = train_scores
        self.threshold_ = _quantile_threshold(train_scores, self.quantile)
        return self

    def _leave_one_out_maps(self, x: Tensor) -> Tensor:
        """Each training image's map under the per-pixel Gaussians fitted on the others.

        In-sample maps of a per-pixel fit on a few dozen images are far too small (every pixel's
        own value pulled the mean and variance towards it), so a threshold on them would flag
        nearly every test image. The leave-one-out moments follow from the sums in closed form.
        """
        n = x.shape[0]
        s1, s2 = x.sum(0), x.square().sum(0)
        mean = (s1 - x) / (n - 1)
        var = _variance_floor((s2 - x.square()) / (n - 1) - mean.square(), self.var_floor)
        var = var.clamp_min(float(self.var_.min()))
        nll = 0.5 * ((x - mean).square() / var + torch.log(2 * math.pi * var))
        return nll.sum(1, keepdim=True)

    def pixel_map(self, fields: Tensor) -> Tensor:
        """(N, C, H, W) IRFs -> (N, 1, H, W) per-pixel negative log-density (float64)."""
        x = fields.double().cpu()
        if self.features == "pixel":
            nll = 0.5 * ((x - self.mean_) ** 2 / self.var_ + torch.log(2 * math.pi * self.var_))
            return nll.sum(1, keepdim=True)
        n, _, h, w = x.shape
        rows = neighbourhood_features(x, self.patch).reshape(n * h * w, -1)
        return torch.from_numpy(self.density_.nll(rows)).reshape(n, 1, h, w)

    def reduce_map(self, maps: Tensor) -> Tensor:
        """(N, 1, H, W) -> (N,): the maximum, or the mean of the ``topk`` largest pixels."""
        flat = maps.flatten(1)
        if self.reduce == "max":
            return flat.amax(1)
        return flat.topk(min(self.topk, flat.shape[1]), dim=1).values.mean(1)

    def score(self, fields: Tensor) -> Tensor:
        return self.reduce_map(self.pixel_map(fields))

    def decide(self, fields: Tensor) -> Tensor:
        return self.decide_scores(self.score(fields))

    def decide_scores(self, scores: Tensor) -> Tensor:
        return (scores > self.threshold_).long()
