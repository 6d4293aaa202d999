"""Bui & Apley's statistical process control for stochastic textured surfaces ("B&A").

Implements the local-defect monitoring of A. T. Bui and D. W. Apley, "A Monitoring and
Diagnostic Approach for Stochastic Textured Surfaces", Technometrics 60(1), 1-13, 2018
(doi:10.1080/00401706.2017.1302362), following the choices of its reference implementation, the
R package spc4sts (A. T. Bui and D. W. Apley, "spc4sts: Statistical Process Control for
Stochastic Textured Surfaces in R", Journal of Quality Technology 53, 219-242, 2021): the
functions ``dataPrep``, ``surfacemodel``, ``exptailecdf``, ``ad``, ``sms``, ``monitoringStat``
and ``climit``. The RADAR paper's "B&A" baseline is this method.

1. Model (``surfacemodel``): every pixel of a standardised normal image is predicted from its
   causal half-plane neighbourhood in raster-scan order (:func:`neighbourhood_offsets`: the
   ``h`` rows above within columns ``-w1..+w2`` and the ``w1`` pixels to its left; never the
   pixel itself) by a regression tree (rpart settings: ``minsplit=10``, ``minbucket=3``,
   ``cp=1e-5``), pruned to the complexity with the lowest ``xval``-fold cross-validated error.
   The residuals' empirical CDF with exponential tails (:class:`ExpTailECDF`) is the in-control
   residual distribution.
2. Monitoring (``sms`` + ``monitoringStat``): a test image's residual map is turned into CDF
   values and a one-sample Anderson-Darling statistic is computed in every ``w x w`` moving
   window (:func:`anderson_darling_map`): large where the local residuals stop looking like
   the in-control ones. That map is the pixel anomaly map; its maximum is the image score.
3. Control limit (``climit``): the ``1 - fa_rate`` quantile of the scores of Phase-I normal
   images. Here those are training images held out from the tree fit (``limit_fraction``, at
   most ``max_limit_images``), so that the limit sees out-of-sample residuals as the test
   images do.

Where we differ from spc4sts, and why:

- The tree is scikit-learn's CART (``DecisionTreeRegressor``), not rpart. rpart's ``cp`` is
  ``min_impurity_decrease = cp * var(y)``; rpart's pruning over its cp table is
  ``ccp_alpha`` chosen by ``GridSearchCV`` over at most ``n_alphas`` values of the
  cost-complexity pruning path, on at most ``cv_pixels`` rows (then refitted on all fit rows),
  to keep the fit well under a minute. ``trim.vars`` (a second fit on the variables the first
  tree used) is left out: a tree ignores unused variables anyway.
- spc4sts models one training image; we stack the neighbourhood data of several (each
  standardised on its own, as spc4sts does), randomly subsampled (``subsample``, then at most
  ``max_fit_pixels`` rows in all), instead of spc4sts's regular grid.
- ``pexptailecdf`` in spc4sts applies ``max``/``min`` (not ``pmax``/``pmin``) to the tails, which
  gives every tail value one and the same probability; we apply the exponential tail to each
  value, as the paper's tail approximation intends.
- spc4sts pads the statistic map with zeros to the image size; we replicate its edge values so
  that pixels near the border are not all declared normal by construction.
- Only the Anderson-Darling statistic (spc4sts's default ``stat = "ad"``) is implemented, not
  the Box-Pierce-type one (``"bp"``).

The defaults of :class:`BuiApleyParams` are spc4sts's where it has one (``cp``, ``xval``,
``minsplit``, ``standardize``, ``fa.rate = .05``); spc4sts has no default ``nb`` or ``w``
(its examples use ``nb = 1`` and ``w = 5``): ours are ``nb = 2`` and ``w = 5``, see the field
comments.

>>> from pathlib import Path
>>> import torch
>>> from bench.interface import ImageSet, RunContext
>>> params = BuiApleyParams(image_size=24, nb=(1,), w=5, xval=2, n_alphas=3)
>>> train = ImageSet(torch.rand(4, 1, 24, 24), torch.zeros(4, dtype=torch.long), None,
...                  [f"good/{i}.png" for i in range(4)])
>>> ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
>>> prediction = BuiApley(params).fit(train, ctx).predict(train)
>>> prediction.scores.shape, prediction.decisions.shape, prediction.maps.shape
(torch.Size([4]), torch.Size([4]), torch.Size([4, 24, 24]))
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.tree import DecisionTreeRegressor
from torch import Tensor

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext
from bench.util.errors import DataError
from bench.util.validation import field_check

# Offsets of RunContext.generator: one independent stream per purpose.
_SEED_SPLIT, _SEED_PIXELS, _SEED_TREE = 31, 32, 33

# Probabilities are kept inside (0, 1) so that the Anderson-Darling logs stay finite
# (the clip spc4sts's pexptailecdf applies).
_P_EPS = 1e-15


# ---------------------------------------------------------------------------------------------
# Neighbourhood data (spc4sts dataPrep)


def expand_nb(nb: tuple[int, ...]) -> tuple[int, int, int]:
    """``(n,)`` -> ``(n, n, n)``; ``(h, w1, w2)`` as is (rows above, columns left, right)."""
    if len(nb) == 1:
        return (nb[0], nb[0], nb[0])
    h, w1, w2 = nb
    return (h, w1, w2)


def neighbourhood_offsets(nb: tuple[int, ...]) -> np.ndarray:
    """``(K, 2)`` (row, column) offsets of the causal neighbourhood of a pixel.

    Raster-scan order (left to right, top to bottom): the ``h`` rows above the pixel within
    columns ``-w1..+w2``, and the ``w1`` pixels to its left in its own row. The pixel itself
    is not a neighbour. ``K = (w1 + w2 + 1) * h + w1``, as in spc4sts.

    >>> neighbourhood_offsets((1,)).tolist()
    [[-1, -1], [-1, 0], [-1, 1], [0, -1]]
    """
    h, w1, w2 = expand_nb(nb)
    above = [(dy, dx) for dy in range(-h, 0) for dx in range(-w1, w2 + 1)]
    left = [(0, dx) for dx in range(-w1, 0)]
    return np.array(above + left, dtype=np.int64).reshape(-1, 2)


def neighbourhood_data(image: np.ndarray, nb: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(P, K)`` and responses ``(P,)`` of every pixel with a full neighbourhood.

    Rows are the pixels ``(h + i, w1 + j)`` in raster order, ``i < S0 - h`` and
    ``j < S1 - w1 - w2``, so ``y.reshape(S0 - h, S1 - w1 - w2)`` is the residual grid.
    """
    h, w1, w2 = expand_nb(nb)
    windows = sliding_window_view(image, (h + 1, w1 + w2 + 1))  # (R, C, h+1, w1+w2+1)
    rows, cols = windows.shape[:2]
    flat = windows.reshape(rows * cols, -1)
    offsets = neighbourhood_offsets(nb)
    # Window coordinates: the response sits at (h, w1).
    index = (offsets[:, 0] + h) * (w1 + w2 + 1) + (offsets[:, 1] + w1)
    return flat[:, index], flat[:, h * (w1 + w2 + 1) + w1].copy()


def standardise(image: np.ndarray) -> np.ndarray:
    """spc4sts ``standardize``: zero mean, unit (sample) standard deviation per image."""
    std = float(image.std(ddof=1)) if image.size > 1 else 0.0
    return (image - image.mean()) / (std if std > 0 else 1.0)


# ---------------------------------------------------------------------------------------------
# Residual distribution (spc4sts exptailecdf / pexptailecdf)


class ExpTailECDF:
    """Empirical CDF of in-control residuals, with exponential tails beyond the ``m``-th values.

    The tails are fitted to the ``N = max(2, 0.002 n)`` most extreme residuals on each side and
    joined at the ``(m+1)``-th smallest / largest residual, ``m = min(N, 5)``, as spc4sts's
    ``exptailecdf``; values beyond the joins get exponentially small tail probabilities
    instead of the empirical 0 or 1, so that the Anderson-Darling logs stay finite.
    """

    def __init__(self, residuals: np.ndarray) -> None:
        x = np.sort(np.asarray(residuals, dtype=np.float64).ravel())
        n = x.size
        if n < 12:
            raise ValueError(f"ExpTailECDF needs at least 12 residuals, got {n}")
        tail = int(max(2, 0.002 * n))
        m = min(tail, 5)
        self.sorted_ = x
        left, right = x[:tail], x[n - tail :]
        # Rate of an exponential fitted to the tail's distances from its innermost value.
        self.lambda_left_ = 1.0 / max(float(np.mean(left.max() - left)), 1e-12)
        self.lambda_right_ = 1.0 / max(float(np.mean(right - right.min())), 1e-12)
        self.joint_left_ = float(x[m])
        self.joint_right_ = float(x[n - m])
        self.p_left_, self.p_right_ = self._ecdf(np.array([self.joint_left_, self.joint_right_]))

    def _ecdf(self, y: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.sorted_, y, side="right") / self.sorted_.size

    def __call__(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        p = self._ecdf(y)
        left = y <= self.joint_left_
        right = y >= self.joint_right_
        p[left] = self.p_left_ * np.exp(-self.lambda_left_ * (self.joint_left_ - y[left]))
        p[right] = self.p_right_ + (1.0 - self.p_right_) * (
            1.0 - np.exp(-self.lambda_right_ * (y[right] - self.joint_right_))
        )
        return np.clip(p, _P_EPS, 1.0 - _P_EPS)


# ---------------------------------------------------------------------------------------------
# The spatial moving statistic (spc4sts ad + sms)


def anderson_darling(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """One-sample Anderson-Darling statistic of samples whose CDF values under H0 are ``p``.

    ``A^2 = -n - (1/n) sum_j [(2j-1) ln p_(j) + (2n+1-2j) ln(1 - p_(j))]`` over the sorted
    ``p_(1) <= ... <= p_(n)`` along ``axis`` (spc4sts ``ad``; the second sum is the usual
    ``sum_i (2i-1) ln(1 - p_(n+1-i))`` re-indexed).
    """
    p = np.sort(np.clip(p, _P_EPS, 1.0 - _P_EPS), axis=axis)
    p = np.moveaxis(p, axis, -1)
    n = p.shape[-1]
    j = np.arange(1, n + 1, dtype=np.float64)
    total = (2 * j - 1) * np.log(p) + (2 * n + 1 - 2 * j) * np.log1p(-p)
    return -n - total.sum(-1) / n


def anderson_darling_map(p: np.ndarray, w: int) -> np.ndarray:
    """The statistic of every ``w x w`` window of a CDF-value map: ``(H - w + 1, W - w + 1)``."""
    windows = sliding_window_view(p, (w, w))
    return anderson_darling(windows.reshape(*windows.shape[:2], w * w))


def place_on_image(stat: np.ndarray, shape: tuple[int, int], top: int, left: int) -> np.ndarray:
    """Put ``stat`` at ``(top, left)`` of an image of ``shape``, filling the border by edge
    replication (spc4sts pads zeros, which would make border defects undetectable)."""
    bottom = shape[0] - top - stat.shape[0]
    right = shape[1] - left - stat.shape[1]
    return np.pad(stat, ((top, bottom), (left, right)), mode="edge")


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class BuiApleyParams:
    """B&A's parameters: spc4sts's defaults where it has one (see the module docstring)."""

    image_size: int = 100  # grayscale image_size x image_size, as RADAR's inputs
    standardize: bool = True  # spc4sts: each image to zero mean, unit standard deviation
    # Neighbourhood half-size: (n,) for (n, n, n) or (h, w1, w2) = rows above, columns to the
    # left, columns to the right. Our choice (spc4sts has no default; its examples use 1):
    # 12 neighbours. On synthetic:brick nb = 1, 2, 3 gave image AUROC 0.96-0.975; 3 took
    # about 2.5x as long to fit as 2.
    nb: tuple[int, ...] = (2,)
    # Side of the moving window of the Anderson-Darling statistic, odd >= 3. spc4sts has no
    # default; 5 is the value of its examples, and beat 9 and 15 on magnetic tiles.
    w: int = 5
    # tree (rpart.control of surfacemodel): minsplit, cp, xval
    min_split: int = 10
    cp: float = 1e-5
    xval: int = 5  # cross-validation folds of the pruning; <= 1: no pruning beyond cp
    n_alphas: int = 10  # pruning-path values of ccp_alpha tried by the cross-validation
    cv_pixels: int = 15_000  # rows the cross-validation runs on (a random subset)
    # fit data
    subsample: float = 1.0  # share of each fit image's pixels (spc4sts subsample)
    max_fit_pixels: int = 100_000  # then at most this many rows, an even share per image; 0 = all
    # control limit (climit)
    limit_fraction: float = 0.3  # share of the training images held out as Phase-I images,
    max_limit_images: int = 100  # ... at most this many (spc4sts advises 100 or more)
    fa_rate: float = 0.05  # target false-alarm rate of the control limit (spc4sts fa.rate)

    def __post_init__(self) -> None:
        # The registry passes lists for tuple fields given as Python values.
        object.__setattr__(self, "nb", tuple(self.nb))
        s = self.image_size
        check = field_check("bui_apley", self)
        check(s >= 8, "image_size", ">= 8")
        check(
            len(self.nb) in (1, 3) and all(isinstance(v, int) and v >= 1 for v in self.nb),
            "nb",
            "1 or 3 positive integers, e.g. 2 or 2,2,2",
        )
        h, w1, w2 = expand_nb(self.nb)
        grid = min(s - h, s - w1 - w2)  # side of the residual grid
        check(grid >= 3, "nb", f"small enough to leave a residual grid of >= 3 px at {s} px")
        check(
            self.w >= 3 and self.w % 2 == 1 and self.w <= grid,
            "w",
            f"an odd number between 3 and {grid} (image_size minus the neighbourhood)",
        )
        check(self.min_split >= 2, "min_split", ">= 2")
        check(self.cp >= 0, "cp", ">= 0")
        check(self.xval >= 0, "xval", ">= 0 (<= 1 turns the cross-validated pruning off)")
        check(self.n_alphas >= 1, "n_alphas", ">= 1")
        check(self.cv_pixels >= 100, "cv_pixels", ">= 100")
        check(0 < self.subsample <= 1, "subsample", "in (0, 1]")
        check(self.max_fit_pixels >= 0, "max_fit_pixels", ">= 0 (0 = no cap)")
        check(0 < self.limit_fraction < 1, "limit_fraction", "in (0, 1)")
        check(self.max_limit_images >= 1, "max_limit_images", ">= 1")
        check(0 < self.fa_rate < 1, "fa_rate", "in (0, 1)")


# The defaults fit in about 30-40 s on a busy 2-core CPU (far less when idle), so "cpu" is the
# paper setting; "quick" halves the rows and the pruning grid.
PRESETS: dict[str, dict[str, object]] = {
    "quick": {"max_fit_pixels": 50_000, "cv_pixels": 8_000, "n_alphas": 6},
    "cpu": {},
}


# ---------------------------------------------------------------------------------------------
# The detector


class BuiApley(Method[BuiApleyParams]):
    """B&A as a :class:`~bench.interface.Method`: ``fit`` on normal images, ``predict``.

    Fitted state: ``tree_`` (the pruned regression tree), ``residual_cdf_``
    (:class:`ExpTailECDF`), ``control_limit_`` and ``fit_info_`` (a dict for the result record).
    """

    name = "bui_apley"
    params_cls = BuiApleyParams

    @property
    def inference_info(self) -> dict[str, object]:
        return {"mode": "pixel_tree", "statistic": "anderson_darling", "w": self.params.w}

    def _prepare(self, images: Tensor) -> np.ndarray:
        """[0, 1] images of any size and colour -> ``(N, S, S)`` float64, standardised."""
        out = self.prepare(images)[:, 0].double().cpu().numpy()
        if self.params.standardize:
            out = np.stack([standardise(im) for im in out]) if len(out) else out
        return out

    # -- fit -----------------------------------------------------------------------------------

    def _fit_rows(
        self, images: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        # An even share of the cap per image: balanced, and the full stack of (hundreds of)
        # images never sits in memory at once.
        quota = -(-p.max_fit_pixels // len(images)) if p.max_fit_pixels else None
        xs, ys = [], []
        for image in images:
            x, y = neighbourhood_data(image, p.nb)
            if p.subsample < 1:
                keep = rng.random(len(y)) < p.subsample
                x, y = x[keep], y[keep]
            if quota is not None and len(y) > quota:
                pick = np.sort(rng.choice(len(y), quota, replace=False))
                x, y = x[pick], y[pick]
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        if p.max_fit_pixels and len(y) > p.max_fit_pixels:
            pick = np.sort(rng.choice(len(y), p.max_fit_pixels, replace=False))
            x, y = x[pick], y[pick]
        return x, y

    def _tree(self, seed: int, min_impurity_decrease: float, alpha: float = 0.0):
        # rpart's minsplit, minbucket = round(minsplit / 3) and cp (scaled to an impurity).
        return DecisionTreeRegressor(
            min_samples_split=self.params.min_split,
            min_samples_leaf=max(1, round(self.params.min_split / 3)),
            min_impurity_decrease=min_impurity_decrease,
            ccp_alpha=alpha,
            random_state=seed,
        )

    def _choose_alpha(
        self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, seed: int, mid: float
    ) -> tuple[float, float]:
        """ccp_alpha with the lowest cross-validated error, and that error as an R^2."""
        p = self.params
        if len(y) > p.cv_pixels:
            pick = np.sort(rng.choice(len(y), p.cv_pixels, replace=False))
            x, y = x[pick], y[pick]
        path = self._tree(seed, mid).cost_complexity_pruning_path(x, y)
        alphas = np.unique(path.ccp_alphas[:-1])  # the last one prunes to the root
        alphas = alphas[alphas > 0]
        if len(alphas) > p.n_alphas - 1:
            # Log-spaced over the path, like rpart's geometric cp table.
            pick = np.unique(np.geomspace(1, len(alphas), p.n_alphas - 1).round().astype(int))
            alphas = alphas[pick - 1]
        grid = np.concatenate([[0.0], alphas])
        search = GridSearchCV(
            self._tree(seed, mid),
            {"ccp_alpha": grid.tolist()},
            cv=KFold(p.xval, shuffle=True, random_state=seed),
            scoring="r2",
            refit=False,
        )
        search.fit(x, y)
        best = int(np.argmax(search.cv_results_["mean_test_score"]))
        return float(grid[best]), float(search.cv_results_["mean_test_score"][best])

    def fit(self, train: ImageSet, ctx: RunContext) -> BuiApley:
        p = self.params
        n = len(train)
        if n < 2:
            raise DataError(
                f"bui_apley needs >= 2 training images (to fit the tree and to set the "
                f"control limit on held-out ones), got {n}"
            )
        start = time.perf_counter()
        images = self._prepare(train.images)
        seed = int(ctx.generator(_SEED_TREE).initial_seed() % 2**31)
        order = np.random.default_rng(ctx.generator(_SEED_SPLIT).initial_seed()).permutation(n)
        n_limit = min(n - 1, p.max_limit_images, max(1, round(p.limit_fraction * n)))
        limit_idx, fit_idx = np.sort(order[:n_limit]), np.sort(order[n_limit:])
        rng = np.random.default_rng(ctx.generator(_SEED_PIXELS).initial_seed())

        ctx.progress("bui_apley: neighbourhood data", 0.0)
        x, y = self._fit_rows(images[fit_idx], rng)
        # rpart's cp: a split must lower the total squared error by cp times the root's.
        mid = p.cp * float(np.var(y))
        r2_cv = None
        alpha = 0.0
        cv_start = time.perf_counter()
        if p.xval > 1:
            ctx.progress("bui_apley: cross-validated pruning", 0.1)
            alpha, r2_cv = self._choose_alpha(x, y, rng, seed, mid)
        cv_s = time.perf_counter() - cv_start
        ctx.progress("bui_apley: fitting the tree", 0.6)
        self.tree_ = self._tree(seed, mid, alpha).fit(x, y)
        residuals = y - self.tree_.predict(x)
        self.residual_cdf_ = ExpTailECDF(residuals)
        fit_s = time.perf_counter() - start

        ctx.progress("bui_apley: control limit", 0.8)
        phase_one = self._statistic_maps(images[limit_idx])[0]
        self.phase_one_scores_ = phase_one
        self.control_limit_ = float(np.quantile(phase_one, 1 - p.fa_rate))
        ctx.progress("bui_apley: fitted", 1.0)
        self.fit_info_ = {
            "fit_images": len(fit_idx),
            "limit_images": len(limit_idx),
            "fit_pixels": len(y),
            "neighbours": len(neighbourhood_offsets(p.nb)),
            "ccp_alpha": alpha,
            "r2_cv": r2_cv,
            "tree_depth": int(self.tree_.get_depth()),
            "tree_leaves": int(self.tree_.get_n_leaves()),
            "residual_std": float(residuals.std()),
            "control_limit": self.control_limit_,
            "cv_seconds": round(cv_s, 3),
            "model_seconds": round(fit_s, 3),  # data, pruning CV, final tree, residual CDF
            "limit_seconds": round(time.perf_counter() - start - fit_s, 3),
        }
        return self

    # -- predict -------------------------------------------------------------------------------

    def _statistic_maps(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised images ``(N, S, S)`` -> image scores ``(N,)`` and maps ``(N, S, S)``."""
        p = self.params
        h, w1, w2 = expand_nb(p.nb)
        s = p.image_size
        grid_shape = (s - h, s - w1 - w2)
        scores = np.empty(len(images))
        maps = np.empty((len(images), s, s))
        for i, image in enumerate(images):
            x, y = neighbourhood_data(image, p.nb)
            residuals = (y - self.tree_.predict(x)).reshape(grid_shape)
            stat = anderson_darling_map(self.residual_cdf_(residuals), p.w)
            scores[i] = stat.max()  # spc4sts monitoringStat: localStat = max(sms)
            # A window's value belongs to its centre pixel: residual grid offset + half window.
            maps[i] = place_on_image(stat, (s, s), h + p.w // 2, w1 + p.w // 2)
        return scores, maps

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float | None:
        """Operations of one test image, counted as for the other non-neural baselines (see
        :meth:`bench.methods.classical.PixelDetector.gflops_per_image`): per modelled pixel one
        comparison per tree level (at most the tree's depth); per ``w x w`` window the sort
        (``n log2 n`` comparisons, ``n = w^2``) and the statistic's two weighted sums of logs
        (``2 x 2 x n``). None before ``fit``."""
        tree = getattr(self, "tree_", None)
        if tree is None:
            return None
        p = self.params
        h, w1, w2 = expand_nb(p.nb)
        rows, cols = p.image_size - h, p.image_size - w1 - w2
        windows = (rows - p.w + 1) * (cols - p.w + 1)
        n = p.w * p.w
        ops = rows * cols * int(tree.get_depth()) + windows * (n * math.log2(n) + 4 * n)
        return ops / 1e9

    def predict(self, test: ImageSet) -> Prediction:
        if not hasattr(self, "tree_"):
            raise RuntimeError("BuiApley.predict called before fit")
        scores, maps = self._statistic_maps(self._prepare(test.images))
        out_maps = torch.from_numpy(maps).float()[:, None]
        if tuple(out_maps.shape[-2:]) != test.image_size:
            out_maps = F.interpolate(
                out_maps, size=test.image_size, mode="bilinear", align_corners=False
            )
        scores_t = torch.from_numpy(scores).float()
        return Prediction(
            scores=scores_t,
            decisions=(scores_t > self.control_limit_).long(),
            maps=out_maps[:, 0],
        )


def method_entries() -> list[MethodEntry]:
    return [
        MethodEntry(
            name="bui_apley",
            params_cls=BuiApleyParams,
            build=BuiApley,
            summary="B&A (Bui & Apley 2018): regression tree on causal pixel neighbourhoods, "
            "Anderson-Darling moving statistic of residuals, Phase-I control limit",
            presets=PRESETS,
        )
    ]
