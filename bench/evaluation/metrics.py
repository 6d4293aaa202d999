"""Image- and pixel-level quality metrics, computed the same way for every method.

Image level (one score per test image):

* ``auroc``, ``ap`` (average precision) and ``f1_max`` (best F1 over all thresholds of the
  precision-recall curve) come from the scores and exist for every method. They are NaN when the
  test set holds only one class, because they are undefined there, not zero.
* ``accuracy``, ``precision``, ``recall`` and ``f1`` need 0/1 decisions: from the method's own
  decision here (:func:`image_metrics`); the benchmark's threshold rules (a threshold calibrated
  on held-out normal images, the method's own decision, the test-set oracle) are applied in
  :mod:`bench.evaluation.protocol`, which stores each rule's values under a prefix
  (``calibrated_f1``, ``own_f1``, ``oracle_f1``) and the chosen rule's without one (``f1``). On a
  test set without anomalous images, precision, recall and F1 are NaN (undefined: there is nothing
  to find),
  never 0; accuracy stays defined.

For the bootstrap intervals of :mod:`bench.evaluation.stats`, :func:`batched_score_metrics` and
:func:`batched_decision_metrics` compute the same image metrics for a whole batch of resampled
test sets at once (one sort for all of them). They are cross-checked against scikit-learn in
the tests; scikit-learn has no batched form, and calling it per resample is ~1000x slower.

Pixel level (only when the test set has masks and the method returns maps):

* ``pixel_auroc`` and ``pixel_f1_max``: every pixel of every test image is one sample. Both are
  exact (no threshold binning): the scores of the anomalous and of the normal pixels are sorted
  once each and everything else is ``searchsorted``: about 1 s for both on the 5.4 M pixels
  of a 544 x 100 x 100 test set on two CPU cores, where torchmetrics' or scikit-learn's
  ``argsort`` of all pixels takes 2-4 s per metric, and a binned curve would be approximate.
* ``pixel_aupro``: anomalib's ``_AUPRO`` (the MVTec AD definition) with integration limit
  FPR 0.3. It returns the area under the PRO curve (global pixel FPR on x; on y, the overlap
  with each connected ground-truth region averaged over all regions of all images) from FPR 0 to
  0.3, divided by 0.3, so it lies in [0, 1]: 1.0 for a perfect map; 0.15 for a constant map (the
  curve is the diagonal PRO = FPR, area 0.3**2 / 2, / 0.3) and about the same for a random one.
  Its connected-component step is swapped for an equivalent vectorised one (anomalib's is
  quadratic in the number of regions); the rest is anomalib's and costs 3-5 s on the set above.
  NaN, like the others, when there is no anomalous pixel (anomalib itself would say 0).

Importing this module stays cheap: anomalib (about 10 s to import) is imported only inside
:func:`pixel_aupro`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from bench.interface import ImageSet, Prediction

ArrayLike = Tensor | np.ndarray

AUPRO_FPR_LIMIT = 0.3

#: The metrics that need a 0/1 decision, i.e. a threshold (see :mod:`bench.evaluation.protocol`).
DECISION_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1")
#: Decision metrics about the anomalous class: undefined (NaN, stored as null) on a test set
#: without anomalous images.
ANOMALY_METRICS: tuple[str, ...] = ("precision", "recall", "f1")
#: Prefixes of the decision metrics of each threshold rule (``calibrated_f1``, ``oracle_f1``).
RULE_PREFIXES: tuple[str, ...] = ("calibrated_", "own_", "oracle_")

#: Which way is better, for regression gating: every quality metric here is "higher".
metric_directions: dict[str, str] = {
    name: "higher"
    for name in (
        *DECISION_METRICS,
        *(prefix + m for prefix in RULE_PREFIXES for m in DECISION_METRICS),
        "auroc",
        "ap",
        "f1_max",
        "pixel_auroc",
        "pixel_f1_max",
        "pixel_aupro",
    )
}


def _numpy(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected a tensor or array, got {type(x).__name__}") from err


def _binary(x: np.ndarray, name: str) -> np.ndarray:
    """0/1 (or bool) values as a bool array; anything else is a caller's bug worth naming."""
    if x.dtype == np.bool_:
        return x
    bad = ~np.isin(x, (0, 1))
    if bad.any():
        raise ValueError(f"{name} must hold only 0 and 1, found {np.unique(x[bad])[:5].tolist()}")
    return x.astype(bool)


def _finite_scores(x: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)  # integer or bool scores: exact in float64
    elif x.dtype == np.float16:
        x = x.astype(np.float32)
    n_bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if n_bad:
        raise ValueError(f"{name} holds {n_bad} non-finite values (NaN or inf)")
    return x


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, n_pos: int) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P); 0 where that is 0/0."""
    denom = tp + fp + n_pos
    return np.divide(2.0 * tp, denom, out=np.zeros(tp.shape, np.float64), where=denom > 0)


def decision_metrics(labels: ArrayLike, decisions: ArrayLike) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of 0/1 ``decisions`` (scikit-learn; 0 where a ratio
    is 0/0, e.g. precision when nothing is flagged). Without an anomalous image, precision,
    recall and F1 measure nothing (there is nothing to find): NaN, stored as null, not 0."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    y = _binary(_numpy(labels, "labels").reshape(-1), "labels")
    d = _numpy(decisions, "decisions")
    if d.shape != y.shape:
        raise ValueError(f"decisions must be {y.shape} like labels, got {d.shape}")
    d = _binary(d, "decisions")
    if not y.any():
        return {"accuracy": float(accuracy_score(y, d)), **dict.fromkeys(ANOMALY_METRICS, math.nan)}
    return {
        "accuracy": float(accuracy_score(y, d)),
        "precision": float(precision_score(y, d, zero_division=0)),
        "recall": float(recall_score(y, d, zero_division=0)),
        "f1": float(f1_score(y, d, zero_division=0)),
    }


def image_metrics(
    labels: ArrayLike, scores: ArrayLike, decisions: ArrayLike | None = None
) -> dict[str, float]:
    """Image-level metrics: threshold-free ones from ``scores``, and the method's own operating
    point from ``decisions`` where it has one (see the module docstring for the list)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    y = _binary(_numpy(labels, "labels").reshape(-1), "labels")
    s = _numpy(scores, "scores")
    if s.shape != y.shape:
        raise ValueError(f"scores must be {y.shape} like labels, got {s.shape}")
    s = _finite_scores(s, "scores").astype(np.float64)

    out: dict[str, float] = {}
    if decisions is not None:
        out.update(decision_metrics(y, decisions))

    if y.size == 0 or y.all() or not y.any():
        out.update(auroc=math.nan, ap=math.nan, f1_max=math.nan)
        return out
    out["auroc"] = float(roc_auc_score(y, s))
    out["ap"] = float(average_precision_score(y, s))
    precision, recall, _ = precision_recall_curve(y, s)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    out["f1_max"] = float(f1.max())
    return out


# -- batched image metrics (bootstrap resamples) ---------------------------------------------


def batched_decision_metrics(labels: np.ndarray, decisions: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`decision_metrics` of many test sets at once: ``labels`` and ``decisions`` are
    (..., n) 0/1 arrays (labels broadcast), each result is (...)."""
    d = np.asarray(decisions).astype(bool)
    y = np.broadcast_to(np.asarray(labels).astype(bool), d.shape)
    tp = np.count_nonzero(d & y, axis=-1).astype(np.float64)
    fp = np.count_nonzero(d & ~y, axis=-1).astype(np.float64)
    n_pos = np.count_nonzero(y, axis=-1).astype(np.float64)
    n = d.shape[-1]
    flagged = tp + fp
    out = {
        "accuracy": (n - fp - (n_pos - tp)) / n,
        "precision": np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0),
        "recall": np.divide(tp, n_pos, out=np.zeros_like(tp), where=n_pos > 0),
        "f1": _f1_from_counts(tp, fp, n_pos),
    }
    for name in ANOMALY_METRICS:  # as decision_metrics: undefined without an anomalous image
        out[name] = np.where(n_pos > 0, out[name], np.nan)
    return out


def _descending_curve(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Scores sorted high to low with the cumulative TP/FP counts of "anomalous if score >= the
    score here"; ``end`` marks the last position of each run of tied scores, the only places a
    threshold can fall (a threshold cannot split tied images)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.broadcast_to(np.asarray(labels).astype(bool), s.shape)
    order = np.argsort(-s, axis=-1)  # the order within a run of ties never matters here
    s_sorted = np.take_along_axis(s, order, axis=-1)
    y_sorted = np.take_along_axis(y, order, axis=-1)
    end = np.ones(s.shape, dtype=bool)
    end[..., :-1] = s_sorted[..., :-1] != s_sorted[..., 1:]
    return {
        "scores": s_sorted,
        "labels": y_sorted,
        "tp": np.cumsum(y_sorted, axis=-1, dtype=np.float64),
        "fp": np.cumsum(~y_sorted, axis=-1, dtype=np.float64),
        "end": end,
    }


def _oracle_position(curve: dict[str, np.ndarray]) -> np.ndarray:
    """Index (in descending order) of the F1-maximising threshold; among equal F1 the highest
    threshold (the fewest images flagged)."""
    n_pos = curve["tp"][..., -1:]
    f1 = _f1_from_counts(curve["tp"], curve["fp"], n_pos)
    return np.argmax(np.where(curve["end"], f1, -1.0), axis=-1)


def batched_score_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """``auroc``, ``ap``, ``f1_max`` and the oracle operating point (``oracle_accuracy``,
    ``oracle_precision``, ``oracle_recall``, ``oracle_f1``) of many test sets at once.

    ``labels`` (..., n) 0/1 (broadcast) and ``scores`` (..., n); each result is (...), NaN where
    a test set holds one class only. The definitions are scikit-learn's (AP as the step sum of
    ``average_precision_score``, F1 over the thresholds of ``precision_recall_curve``, AUROC as
    the Mann-Whitney U with ties counted half), checked against it in the tests."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.broadcast_to(np.asarray(labels).astype(bool), s.shape)
    n = s.shape[-1]
    n_pos = np.count_nonzero(y, axis=-1).astype(np.float64)
    n_neg = n - n_pos
    one_class = (n_pos == 0) | (n_neg == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = _descending_curve(y, s)
        tp, fp, end, y_sorted = curve["tp"], curve["fp"], curve["end"], curve["labels"]
        # First and last position of the run of tied scores each image belongs to.
        positions = np.arange(n)
        start = np.ones(s.shape, dtype=bool)
        start[..., 1:] = end[..., :-1]
        group_start = np.maximum.accumulate(np.where(start, positions, 0), axis=-1)
        group_end = np.minimum.accumulate(np.where(end, positions, n)[..., ::-1], axis=-1)[
            ..., ::-1
        ]
        tp_at_end = np.take_along_axis(tp, group_end, axis=-1)
        tp_before = np.take_along_axis(tp - y_sorted, group_start, axis=-1)
        # Mann-Whitney U: each normal image counts the anomalous ones above it, ties half.
        u = np.where(y_sorted, 0.0, (tp_before + tp_at_end) / 2).sum(axis=-1)
        auroc = u / (n_pos * n_neg)
        # Each anomalous image adds 1/n_pos of recall at the end of its run of tied scores, at
        # that end's precision: AP = sum over anomalous images of that precision / n_pos.
        precision_at_end = np.take_along_axis(tp / (tp + fp), group_end, axis=-1)
        ap = np.where(y_sorted, precision_at_end, 0.0).sum(axis=-1) / n_pos

        k = _oracle_position(curve)[..., None]
        tp_k = np.take_along_axis(tp, k, axis=-1)[..., 0]
        fp_k = np.take_along_axis(fp, k, axis=-1)[..., 0]
        out = {
            "auroc": auroc,
            "ap": ap,
            "f1_max": _f1_from_counts(tp_k, fp_k, n_pos),
            "oracle_accuracy": (n - fp_k - (n_pos - tp_k)) / n,
            "oracle_precision": tp_k / (tp_k + fp_k),
            "oracle_recall": tp_k / n_pos,
        }
    out["oracle_f1"] = out["f1_max"]
    return {name: np.where(one_class, np.nan, value) for name, value in out.items()}


def oracle_threshold(labels: ArrayLike, scores: ArrayLike) -> float:
    """The F1-maximising threshold on ``scores`` given ``labels`` (the test-set oracle), placed
    midway between the lowest flagged score and the next lower one, so that "anomalous if
    score > threshold" reproduces the best F1. NaN when the labels hold one class only."""
    y = _binary(_numpy(labels, "labels").reshape(-1), "labels")
    s = _finite_scores(_numpy(scores, "scores"), "scores").astype(np.float64)
    if s.shape != y.shape:
        raise ValueError(f"scores must be {y.shape} like labels, got {s.shape}")
    if y.size == 0 or y.all() or not y.any():
        return math.nan
    curve = _descending_curve(y, s)
    k = int(_oracle_position(curve))
    lowest_flagged = float(curve["scores"][k])
    if k + 1 == s.size:
        return float(np.nextafter(lowest_flagged, -np.inf))
    next_lower = float(curve["scores"][k + 1])
    middle = (lowest_flagged + next_lower) / 2
    return middle if next_lower < middle < lowest_flagged else next_lower  # adjacent floats


def _sorted_by_class(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat_y = masks.reshape(-1)
    flat_s = maps.reshape(-1)
    # np.sort (SIMD) is ~15x faster than argsort on millions of floats.
    return np.sort(flat_s[flat_y]), np.sort(flat_s[~flat_y])


def _auroc_sorted(pos: np.ndarray, neg: np.ndarray) -> float:
    """Exact AUROC = P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney U), ties handled."""
    below = np.searchsorted(neg, pos, side="left").astype(np.float64)
    below_or_tied = np.searchsorted(neg, pos, side="right").astype(np.float64)
    u = below.sum() + 0.5 * (below_or_tied - below).sum()
    return float(u / (float(pos.size) * float(neg.size)))


def _f1_max_sorted(pos: np.ndarray, neg: np.ndarray) -> float:
    """Exact max F1 over every distinct score used as threshold (predict anomalous if >= t)."""
    thresholds = np.unique(np.concatenate([pos, neg]))
    tp = (pos.size - np.searchsorted(pos, thresholds, side="left")).astype(np.float64)
    fp = (neg.size - np.searchsorted(neg, thresholds, side="left")).astype(np.float64)
    return float(_f1_from_counts(tp, fp, pos.size).max())


def _region_labels(masks: np.ndarray) -> np.ndarray:
    """Connected ground-truth regions (8-connectivity within an image), numbered 1..R across
    the whole batch, 0 for normal pixels: what anomalib's ``connected_components_cpu`` gives,
    in one vectorised call. (Its per-label loop is quadratic: 25 s on 544 noisy 100 x 100
    masks, against 0.05 s here.)"""
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # neighbours within the same image only
    labels, _ = ndimage.label(masks, structure=structure)
    return labels


def pixel_aupro(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, divided by ``fpr_limit``
    (anomalib ``_AUPRO``, in [0, 1]). NaN when there is no anomalous or no normal pixel.

    anomalib computes the curve and the area; only its connected-component step is replaced by
    an equivalent faster one (:func:`_region_labels`)."""
    m = _binary(_numpy(masks, "masks"), "masks")
    s = _finite_scores(_numpy(maps, "maps"), "maps")
    if m.ndim != 3 or s.shape != m.shape:
        raise ValueError(f"masks and maps must both be (N, H, W), got {m.shape} and {s.shape}")
    if not m.any() or m.all():
        return math.nan
    from anomalib.metrics.aupro import _AUPRO  # heavy import, only when needed

    regions = torch.from_numpy(_region_labels(m))

    class _AUPROFastCCA(_AUPRO):
        def perform_cca(self) -> Tensor:
            return regions

    metric = _AUPROFastCCA(fpr_limit=fpr_limit)
    metric.update(
        torch.from_numpy(np.ascontiguousarray(s)).float(), torch.from_numpy(np.ascontiguousarray(m))
    )
    return float(metric.compute())


def pixel_metrics(
    masks: ArrayLike, maps: ArrayLike, fpr_limit: float = AUPRO_FPR_LIMIT
) -> dict[str, float]:
    """Pixel-level metrics over all pixels of all test images: ``pixel_auroc``,
    ``pixel_f1_max`` (both exact, see the module docstring) and ``pixel_aupro``. All NaN when
    the masks hold only one class (e.g. a test subset of normal images only)."""
    m = _numpy(masks, "masks")
    s = _numpy(maps, "maps")
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    if s.shape != m.shape:
        raise ValueError(f"maps must have the shape of masks {m.shape}, got {s.shape}")
    m = _binary(m, "masks")
    s = _finite_scores(s, "maps")
    if not m.any() or m.all():
        return {"pixel_auroc": math.nan, "pixel_f1_max": math.nan, "pixel_aupro": math.nan}
    pos, neg = _sorted_by_class(m, s)
    return {
        "pixel_auroc": _auroc_sorted(pos, neg),
        "pixel_f1_max": _f1_max_sorted(pos, neg),
        "pixel_aupro": pixel_aupro(m, s, fpr_limit),
    }


def compute_metrics(test: ImageSet, pred: Prediction) -> dict[str, float]:
    """All metrics of one job. Pixel metrics are left out (not NaN-filled) unless the test set
    has masks and the method returned maps, so that tables show "not applicable" honestly."""
    n = len(test)
    if tuple(pred.scores.shape) != (n,):
        raise ValueError(f"prediction scores must be ({n},), got {tuple(pred.scores.shape)}")
    if pred.decisions is not None and tuple(pred.decisions.shape) != (n,):
        raise ValueError(f"prediction decisions must be ({n},), got {tuple(pred.decisions.shape)}")
    if pred.maps is not None and tuple(pred.maps.shape) != (n, *test.image_size):
        raise ValueError(
            f"prediction maps must be {(n, *test.image_size)} (the test images' N, H, W), "
            f"got {tuple(pred.maps.shape)}"
        )
    out = image_metrics(test.labels, pred.scores, pred.decisions)
    if test.masks is not None and pred.maps is not None:
        out.update(pixel_metrics(test.masks, pred.maps))
    return out
