"""Statistical machine-learning baselines on raw pixels: IsolationForest, OCSVM, LOF and PCA.

The RADAR paper (M. Moradi, M. Grasso, B. M. Colosimo, K. Paynabar, arXiv:2508.04818, 2025)
compares its detector with statistical ML models applied directly to the images. Here each image
is turned into a grayscale pixel vector, downsampled to ``vector_size`` x ``vector_size`` (area
averaging, so that a vector is a low-pass view of the whole image), optionally standardised per
pixel on the training images, and given to a scikit-learn novelty detector fitted on the normal
training images:

``iforest``  :class:`sklearn.ensemble.IsolationForest` (F. T. Liu et al., ICDM 2008)
``ocsvm``    :class:`sklearn.svm.OneClassSVM` (B. Schoelkopf et al., Neural Comp. 2001)
``lof``      :class:`sklearn.neighbors.LocalOutlierFactor` with ``novelty=True``
             (M. M. Breunig et al., SIGMOD 2000)
``pca``      :class:`sklearn.decomposition.PCA`; the score is the squared reconstruction
             error, the pixel map is the absolute reconstruction residual, upsampled to the
             image size (the classical subspace method, e.g. Jolliffe, *PCA*, 2002).

Scores are the negated ``score_samples`` (higher = more anomalous); decisions are the
estimator's own ``predict`` (PCA: above the ``1 - contamination`` quantile of the training
errors).

>>> from pathlib import Path
>>> import torch
>>> from bench.interface import ImageSet, RunContext
>>> train = ImageSet(torch.rand(20, 1, 32, 32), torch.zeros(20, dtype=torch.long), None,
...                  [f"good/{i}.png" for i in range(20)])
>>> ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
>>> pred = PixelDetector("pca", PCAParams(image_size=32, vector_size=16)).fit(train, ctx)
>>> out = pred.predict(train)
>>> out.scores.shape, out.decisions.shape, out.maps.shape
(torch.Size([20]), torch.Size([20]), torch.Size([20, 32, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from torch import Tensor

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext, to_channels
from bench.util.errors import ConfigError
from bench.util.validation import FieldCheck, field_check


@dataclass(frozen=True)
class PixelParams:
    """What every pixel-space baseline shares."""

    image_size: int = 100  # images are loaded at this size (as RADAR's); maps are at this size
    vector_size: int = 32  # the pixel vector is vector_size**2 area-averaged grayscale pixels
    standardize: bool = True  # per-pixel zero mean / unit variance on the training images
    contamination: float = 0.05  # expected outlier share: sets the estimator's own threshold

    def _check_common(self, method: str) -> FieldCheck:
        """Checks the shared fields; returns the checker of ``method`` for the others."""
        check = field_check(method, self)
        check(self.image_size >= 4, "image_size", ">= 4")
        check(
            1 <= self.vector_size <= self.image_size,
            "vector_size",
            f"between 1 and image_size ({self.image_size})",
        )
        check(0 < self.contamination <= 0.5, "contamination", "in (0, 0.5]")
        return check


@dataclass(frozen=True)
class IForestParams(PixelParams):
    n_estimators: int = 100
    max_samples: int = 256  # sub-sample size per tree (capped at the training set size)

    def __post_init__(self) -> None:
        check = self._check_common("iforest")
        check(self.n_estimators >= 1, "n_estimators", ">= 1")
        check(self.max_samples >= 2, "max_samples", ">= 2")


@dataclass(frozen=True)
class OCSVMParams(PixelParams):
    kernel: Literal["rbf", "linear", "poly", "sigmoid"] = "rbf"
    gamma: str = "scale"  # "scale", "auto" or a number

    def __post_init__(self) -> None:
        check = self._check_common("ocsvm")
        if self.gamma not in ("scale", "auto"):
            try:
                ok = float(self.gamma) > 0
            except ValueError:
                ok = False
            check(ok, "gamma", "scale, auto or a positive number")


@dataclass(frozen=True)
class LOFParams(PixelParams):
    n_neighbors: int = 20  # capped at n_train - 1

    def __post_init__(self) -> None:
        check = self._check_common("lof")
        check(self.n_neighbors >= 1, "n_neighbors", ">= 1")


@dataclass(frozen=True)
class PCAParams(PixelParams):
    n_components: float = 0.95  # < 1: share of variance kept; >= 1: number of components

    def __post_init__(self) -> None:
        check = self._check_common("pca")
        ok = 0 < self.n_components < 1 or float(self.n_components).is_integer()
        check(
            ok and self.n_components > 0,
            "n_components",
            "a variance share in (0, 1) or a whole number of components >= 1",
        )


def pixel_vectors(images: Tensor, size: int) -> Tensor:
    """(N, C, H, W) in [0, 1] -> (N, size*size) grayscale, area-averaged pixel vectors."""
    x = to_channels(images.float(), 1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.flatten(1)


class PixelDetector(Method[PixelParams]):
    """A scikit-learn novelty detector on pixel vectors, as a Method."""

    def __init__(self, name: str, params: PixelParams) -> None:
        super().__init__(params)
        self.name = name

    def _estimator(self, n_train: int, seed: int) -> Any:
        p = self.params
        if isinstance(p, IForestParams):
            return IsolationForest(
                n_estimators=p.n_estimators,
                max_samples=min(p.max_samples, n_train),
                contamination=p.contamination,
                random_state=seed,
            )
        if isinstance(p, OCSVMParams):
            gamma: str | float = p.gamma if p.gamma in ("scale", "auto") else float(p.gamma)
            return OneClassSVM(kernel=p.kernel, gamma=gamma, nu=p.contamination)
        if isinstance(p, LOFParams):
            return LocalOutlierFactor(
                n_neighbors=max(1, min(p.n_neighbors, n_train - 1)),
                contamination=p.contamination,
                novelty=True,
            )
        if isinstance(p, PCAParams):
            n = p.n_components if p.n_components < 1 else min(int(p.n_components), n_train)
            return PCA(n_components=n, svd_solver="full", random_state=seed)
        raise TypeError(f"no estimator for {type(p).__name__}")

    def _features(self, images: Tensor) -> np.ndarray:
        x = pixel_vectors(images, self.params.vector_size).double().numpy()
        return self.scaler_.transform(x) if self.scaler_ is not None else x

    def fit(self, train: ImageSet, ctx: RunContext) -> PixelDetector:
        if len(train) < 2:
            raise ConfigError(f"{self.name} needs at least 2 training images, got {len(train)}")
        x = pixel_vectors(train.images, self.params.vector_size).double().numpy()
        self.scaler_ = StandardScaler().fit(x) if self.params.standardize else None
        if self.scaler_ is not None:
            x = self.scaler_.transform(x)
        ctx.progress(f"{self.name}: fitting on {x.shape[1]}-pixel vectors", 0.1)
        self.estimator_ = self._estimator(len(train), ctx.seed).fit(x)
        if isinstance(self.estimator_, PCA):
            errors = self._pca_residual(x).pow(2).mean(1).numpy()
            self.threshold_ = float(np.quantile(errors, 1.0 - self.params.contamination))
        self.fit_info_ = {
            "features": int(x.shape[1]),
            "n_train": len(train),
            **(
                {"components": int(self.estimator_.n_components_)}
                if isinstance(self.estimator_, PCA)
                else {}
            ),
        }
        ctx.progress(f"{self.name}: fitted", 1.0)
        return self

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float | None:
        """GFLOPs of one test vector through the fitted estimator, counted as torch's counter
        counts the neural methods (a multiply-add is 2 FLOPs; elementwise work such as the
        downsampling and standardisation is left out, as it is for them):

        - ``pca``: the projection onto the components and back, ``2 x 2 x D x k``;
        - ``ocsvm``: one kernel dot product per support vector, ``2 x D x n_sv``;
        - ``lof``: the distance to every training vector (brute force, an upper bound of the
          tree searches), ``2 x D x n_train``;
        - ``iforest``: no arithmetic, one comparison per node on the path: at most the sum of
          the trees' depths.

        None before ``fit`` (the counts depend on what the estimator kept)."""
        est = getattr(self, "estimator_", None)
        if est is None:
            return None
        d = int(est.n_features_in_)
        if isinstance(est, PCA):
            flops = 2 * 2 * d * int(est.n_components_)
        elif isinstance(est, OneClassSVM):
            flops = 2 * d * len(est.support_vectors_)
        elif isinstance(est, LocalOutlierFactor):
            flops = 2 * d * int(est.n_samples_fit_)
        else:
            flops = sum(int(tree.get_depth()) for tree in est.estimators_)
        return flops / 1e9

    def _pca_residual(self, x: np.ndarray) -> Tensor:
        pca = self.estimator_
        recon = pca.inverse_transform(pca.transform(x))
        return torch.from_numpy(x - recon)

    def predict(self, test: ImageSet) -> Prediction:
        x = self._features(test.images)
        est = self.estimator_
        if isinstance(est, PCA):
            residual = self._pca_residual(x)
            scores = residual.pow(2).mean(1)
            s = self.params.vector_size
            maps = residual.abs().float().reshape(-1, 1, s, s)
            maps = F.interpolate(maps, size=test.image_size, mode="bilinear", align_corners=False)
            decisions = (scores > self.threshold_).long()
            return Prediction(scores=scores.float(), decisions=decisions, maps=maps[:, 0])
        scores = torch.from_numpy(-est.score_samples(x)).float()
        decisions = torch.from_numpy(est.predict(x) == -1).long()
        return Prediction(scores=scores, decisions=decisions, maps=None)


_METHODS: dict[str, tuple[type[PixelParams], str]] = {
    "iforest": (IForestParams, "IsolationForest on downsampled grayscale pixel vectors"),
    "ocsvm": (OCSVMParams, "one-class SVM on downsampled grayscale pixel vectors"),
    "lof": (LOFParams, "local outlier factor on downsampled grayscale pixel vectors"),
    "pca": (PCAParams, "PCA reconstruction error of pixel vectors (map: residual)"),
}


def _builder(name: str) -> Any:
    def build(params: Any) -> PixelDetector:
        return PixelDetector(name, params)

    return build


def method_entries() -> list[MethodEntry]:
    return [
        # Already CPU-sized: "quick" and "cpu" are the paper setting; scikit-learn: Ray asks
        # for no GPU.
        MethodEntry(
            name=name,
            params_cls=cls,
            build=_builder(name),
            summary=summary,
            presets={"quick": {}, "cpu": {}},
            cpu_only=True,
        )
        for name, (cls, summary) in _METHODS.items()
    ]
