"""Bootstrap uncertainty for image metrics: intervals over test images, paired comparisons.

Both functions resample the *test images* with :func:`scipy.stats.bootstrap` (percentile
intervals, seeded), so an interval says how much a number would move on another test set of
the same size from the same source; the model and any threshold stay fixed.

Stratified by label (the default): scipy's bootstrap does not stratify, so the normal and the
anomalous images are passed as two *independent samples*, which scipy resamples separately, each
at its own size. Every resample then has the test set's class counts, so AUROC and AP are always
defined and precision is not inflated by resamples that happen to hold few normals (the usual
stratified bootstrap, e.g. Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, 6.4).
``stratified=False`` resamples images regardless of label (``paired=True`` over labels and
values), where a resample with one class gives NaN.

Percentile intervals rather than scipy's default BCa: the decision metrics are discrete and
often degenerate (a precision of 1.0 in every resample), where BCa's jackknife acceleration is
undefined (NaN); percentile intervals are always defined and need no extra statistic calls.

Paired comparison (:func:`paired_bootstrap`): the two methods' values of the *same* images are
stacked and resampled together, so the interval and the p-value are for the metric difference
on a common test set; over several seeds (each with its own test set) the statistic is the mean
difference over seeds and every seed's test set is resampled independently (pooled over seeds).

Metrics are passed as vectorised callables ``metric(labels, values) -> array``: ``values`` is
(..., n) and the result (...), every leading axis a batch of resamples (see
:func:`named_metric` for the suite's image metrics, which compute 1000 resamples of 500 images
in about 0.1 s).

>>> import numpy as np
>>> labels = np.r_[np.zeros(50), np.ones(50)]
>>> scores = labels + np.random.default_rng(0).normal(size=100)
>>> low, high = bootstrap_ci(labels, scores, named_metric("auroc"), n_resamples=200, seed=0)
>>> bool(low < 0.76 < high)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.evaluation.metrics import (
    DECISION_METRICS,
    RULE_PREFIXES,
    batched_decision_metrics,
    batched_score_metrics,
)

MetricFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

DEFAULT_RESAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
# Elements (resamples x images x value rows) per vectorised call: bounds memory on large sets.
_BATCH_ELEMENTS = 4_000_000

SCORE_METRICS: tuple[str, ...] = (
    "auroc",
    "ap",
    "f1_max",
    *(f"oracle_{m}" for m in DECISION_METRICS),
)


def named_metric(name: str) -> MetricFn:
    """The vectorised metric ``name``: ``auroc``, ``ap``, ``f1_max`` and ``oracle_*`` take
    scores; ``accuracy``, ``precision``, ``recall``, ``f1`` (also with a ``calibrated_`` or
    ``own_`` prefix) take 0/1 decisions."""
    if name in SCORE_METRICS:
        return lambda labels, scores: batched_score_metrics(labels, scores)[name]
    base = name
    for prefix in RULE_PREFIXES:
        if prefix != "oracle_" and name.startswith(prefix):
            base = name[len(prefix) :]
    if base in DECISION_METRICS:
        return lambda labels, decisions: batched_decision_metrics(labels, decisions)[base]
    known = [*SCORE_METRICS, *DECISION_METRICS]
    raise ValueError(f"unknown image metric {name!r}; expected one of {', '.join(known)}")


def _labels(labels: object) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must hold only 0 and 1")
    return y.astype(bool)


def _batch(n_resamples: int, n_values: int) -> int:
    return max(1, min(n_resamples, _BATCH_ELEMENTS // max(n_values, 1)))


def bootstrap_ci(
    labels: object,
    values: object,
    metric_fn: MetricFn,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    stratified: bool = True,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> np.ndarray:
    """Percentile bootstrap interval ``[low, high]`` of ``metric_fn`` over the test images.

    ``values`` is (n,) (scores or decisions) or (k, n): k per-image rows resampled together
    (e.g. scores and two kinds of decisions), in which case ``metric_fn`` receives (k, ..., n)
    and may return several metrics at once, (m, ...), giving an (m, 2) array. Intervals are NaN
    where they are undefined (a class with fewer than two images when stratified)."""
    from scipy.stats import bootstrap

    y = _labels(labels)
    v = np.asarray(values, dtype=np.float64)
    if v.shape[-1] != y.size or v.ndim not in (1, 2):
        raise ValueError(f"values must be (n,) or (k, n) with n = {y.size}, got {v.shape}")
    rows = v[None] if v.ndim == 1 else v

    def call(lab: np.ndarray, vals: np.ndarray) -> np.ndarray:
        return np.asarray(metric_fn(lab, vals[0] if v.ndim == 1 else vals), dtype=np.float64)

    n_out = call(y, rows).shape  # the point estimate's shape: () or (m,)
    rng = np.random.default_rng(seed)
    batch = _batch(n_resamples, rows.size)
    if stratified:
        neg, pos = rows[:, ~y], rows[:, y]
        if neg.shape[-1] < 2 or pos.shape[-1] < 2:
            return np.full((*n_out, 2), math.nan)
        lab = np.r_[np.zeros(neg.shape[-1], bool), np.ones(pos.shape[-1], bool)]

        def statistic(neg: np.ndarray, pos: np.ndarray, axis: int = -1) -> np.ndarray:
            return call(lab, np.concatenate([neg, pos], axis=-1))

        data: tuple[np.ndarray, ...] = (neg, pos)
        paired = False
    else:

        def statistic(lab: np.ndarray, vals: np.ndarray, axis: int = -1) -> np.ndarray:
            # scipy broadcasts paired samples to one shape: the labels come as (..., B, n).
            return call(lab[(0,) * (lab.ndim - 2)].astype(bool), vals)

        data, paired = (y.astype(np.float64), rows), True
    with np.errstate(invalid="ignore", divide="ignore"):
        res = bootstrap(
            data,
            statistic,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            paired=paired,
            axis=-1,
            confidence_level=confidence_level,
            method="percentile",
            rng=rng,
        )
    ci = res.confidence_interval
    return np.stack([np.asarray(ci.low), np.asarray(ci.high)], axis=-1)


@dataclass(frozen=True)
class PairedBootstrap:
    """Metric difference a - b (mean over seeds), its percentile interval and a p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    n_resamples: int


def _per_seed(x: object) -> list[np.ndarray]:
    if isinstance(x, np.ndarray) and x.ndim == 1:
        return [x]
    if isinstance(x, Sequence) and x and not np.isscalar(x[0]):
        return [np.asarray(item).reshape(-1) for item in x]
    return [np.asarray(x).reshape(-1)]


def paired_bootstrap(
    labels: object,
    values_a: object,
    values_b: object,
    metric_fn: MetricFn,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> PairedBootstrap:
    """Paired, label-stratified bootstrap of ``metric(a) - metric(b)`` on the same test images.

    ``labels``, ``values_a`` and ``values_b`` are arrays (one test set) or lists of arrays, one
    per seed, aligned image by image (same images in the same order for a and b). The statistic
    is the mean over seeds of the per-seed difference; every seed's normals and anomalies are
    resampled independently, a and b with the same indices.

    The p-value is two-sided, from the bootstrap distribution of the difference: twice the
    share of resamples on the far side of zero (with the usual +1 correction, capped at 1), i.e.
    the smallest level at which the percentile interval excludes zero. NaN where undefined."""
    from scipy.stats import bootstrap

    ys = [_labels(y) for y in _per_seed(labels)]
    a_list = [np.asarray(a, dtype=np.float64) for a in _per_seed(values_a)]
    b_list = [np.asarray(b, dtype=np.float64) for b in _per_seed(values_b)]
    if not len(ys) == len(a_list) == len(b_list):
        raise ValueError(
            f"labels, values_a and values_b must cover the same seeds, got "
            f"{len(ys)}, {len(a_list)} and {len(b_list)} test sets"
        )
    samples: list[np.ndarray] = []
    class_labels: list[np.ndarray] = []
    observed = []
    for y, a, b in zip(ys, a_list, b_list, strict=True):
        if not y.shape == a.shape == b.shape:
            raise ValueError(
                f"labels, values_a and values_b must align image by image, got shapes "
                f"{y.shape}, {a.shape} and {b.shape}"
            )
        ab = np.stack([a, b])  # (2, n): a and b of one image stay together when resampled
        neg, pos = ab[:, ~y], ab[:, y]
        if neg.shape[-1] < 2 or pos.shape[-1] < 2:
            return PairedBootstrap(math.nan, math.nan, math.nan, math.nan, n_resamples)
        samples += [neg, pos]
        lab = np.r_[np.zeros(neg.shape[-1], bool), np.ones(pos.shape[-1], bool)]
        class_labels.append(lab)
        m = np.asarray(metric_fn(lab, np.concatenate([neg, pos], axis=-1)))
        observed.append(float(m[0] - m[1]))

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        diffs = []
        for i, lab in enumerate(class_labels):
            vals = np.concatenate([resampled[2 * i], resampled[2 * i + 1]], axis=-1)
            m = np.asarray(metric_fn(lab, vals))  # (2, batch)
            diffs.append(m[0] - m[1])
        return np.mean(diffs, axis=0)

    with np.errstate(invalid="ignore", divide="ignore"):
        res = bootstrap(
            tuple(samples),
            statistic,
            n_resamples=n_resamples,
            batch=_batch(n_resamples, sum(s.size for s in samples)),
            vectorized=True,
            paired=False,
            axis=-1,
            confidence_level=confidence_level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        p_value = math.nan
    else:
        tail = min(np.count_nonzero(dist <= 0), np.count_nonzero(dist >= 0))
        p_value = min(1.0, 2 * (tail + 1) / (dist.size + 1))
    return PairedBootstrap(
        difference=float(np.mean(observed)),
        low=float(res.confidence_interval.low),
        high=float(res.confidence_interval.high),
        p_value=float(p_value),
        n_resamples=n_resamples,
    )


def paired_bootstrap_pvalue(
    labels: object,
    values_a: object,
    values_b: object,
    metric_fn: MetricFn,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> float:
    """Just the two-sided p-value of :func:`paired_bootstrap`."""
    return paired_bootstrap(labels, values_a, values_b, metric_fn, n_resamples, seed).p_value
