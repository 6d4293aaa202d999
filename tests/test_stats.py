"""Bootstrap intervals and the paired comparison: coverage of the point estimate, shrinking with
more test images, seeding, stratification, and p-values that separate real from no difference."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from bench.evaluation.stats import (
    bootstrap_ci,
    named_metric,
    paired_bootstrap,
    paired_bootstrap_pvalue,
)


def _scores(n_normal: int, n_anomalous: int, shift: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_normal), np.ones(n_anomalous)]
    return labels, labels * shift + rng.normal(size=labels.size)


def test_interval_contains_the_point_estimate_and_shrinks_with_more_images() -> None:
    widths = []
    for n in (20, 200, 2000):
        labels, scores = _scores(n, n, seed=n)
        low, high = bootstrap_ci(labels, scores, named_metric("auroc"), n_resamples=500, seed=0)
        assert low <= roc_auc_score(labels, scores) <= high
        decisions = scores > 0.5
        f1_low, f1_high = bootstrap_ci(labels, decisions, named_metric("f1"), 500, seed=0)
        assert f1_low <= f1_score(labels, decisions) <= f1_high
        widths.append(high - low)
    # Width ~ 1/sqrt(n): 10x the images, about a third of the width.
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0


def test_seeded_and_stratified() -> None:
    labels, scores = _scores(30, 10)
    auroc = named_metric("auroc")
    a = bootstrap_ci(labels, scores, auroc, n_resamples=300, seed=1)
    assert np.array_equal(a, bootstrap_ci(labels, scores, auroc, n_resamples=300, seed=1))
    assert not np.array_equal(a, bootstrap_ci(labels, scores, auroc, n_resamples=300, seed=2))

    def share_anomalous(lab, values):  # the resampled labels' class balance
        return np.broadcast_to(lab, values.shape).mean(axis=-1)

    assert bootstrap_ci(labels, scores, share_anomalous, 300, seed=0).tolist() == [0.25, 0.25]
    low, high = bootstrap_ci(labels, scores, share_anomalous, 300, seed=0, stratified=False)
    assert low < 0.25 < high  # plain resampling moves the class balance


def test_several_rows_give_several_intervals_and_degenerate_cases() -> None:
    labels, scores = _scores(40, 40)
    rows = np.stack([scores, scores > 0.5])

    def two(lab, vals):
        return np.stack([named_metric("auroc")(lab, vals[0]), named_metric("recall")(lab, vals[1])])

    ci = bootstrap_ci(labels, rows, two, n_resamples=200, seed=0)
    assert ci.shape == (2, 2) and (ci[:, 0] <= ci[:, 1]).all()
    perfect = bootstrap_ci(labels, labels, named_metric("auroc"), n_resamples=100)
    assert perfect.tolist() == [1.0, 1.0]  # every resample is perfect: a point interval
    one_anomaly = bootstrap_ci(np.r_[0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], named_metric("auroc"))
    assert np.isnan(one_anomaly).all()  # undefined, not a made-up interval
    with pytest.raises(ValueError, match="unknown image metric"):
        named_metric("f2")


def test_paired_bootstrap_tells_real_from_no_difference() -> None:
    labels, good = _scores(100, 100, shift=1.5, seed=0)
    rng = np.random.default_rng(9)
    worse = labels * 0.5 + rng.normal(size=labels.size)
    auroc = named_metric("auroc")
    res = paired_bootstrap(labels, good, worse, auroc, n_resamples=1000, seed=0)
    assert res.difference == pytest.approx(
        roc_auc_score(labels, good) - roc_auc_score(labels, worse)
    )
    assert res.low <= res.difference <= res.high and res.low > 0
    assert res.p_value < 0.01
    same = paired_bootstrap(labels, good, good, auroc, n_resamples=200, seed=0)
    assert same.difference == 0 and same.p_value == 1.0
    near = good + 1e-3 * rng.normal(size=labels.size)
    assert paired_bootstrap_pvalue(labels, good, near, auroc, n_resamples=500) > 0.2


def test_paired_bootstrap_pools_seeds() -> None:
    auroc = named_metric("auroc")
    sets = [_scores(40, 40, shift=1.0, seed=s) for s in range(3)]
    labels = [y for y, _ in sets]
    a = [s for _, s in sets]
    b = [s + np.random.default_rng(i).normal(size=s.size) for i, s in enumerate(a)]
    one = paired_bootstrap(labels[0], a[0], b[0], auroc, n_resamples=500, seed=0)
    pooled = paired_bootstrap(labels, a, b, auroc, n_resamples=500, seed=0)
    expected = np.mean(
        [roc_auc_score(y, x) - roc_auc_score(y, z) for y, x, z in zip(labels, a, b, strict=True)]
    )
    assert pooled.difference == pytest.approx(expected)
    assert pooled.high - pooled.low < one.high - one.low  # three test sets say more than one
    with pytest.raises(ValueError, match="same seeds"):
        paired_bootstrap(labels, a, b[:2], auroc)
    with pytest.raises(ValueError, match="align image by image"):
        paired_bootstrap(labels[0], a[0], b[0][:-1], auroc)


@pytest.mark.benchmark
def test_bootstrap_is_cheap() -> None:
    labels, scores = _scores(300, 200)
    bootstrap_ci(labels, scores, named_metric("auroc"), n_resamples=10)  # imports, warm-up
    start = time.perf_counter()
    bootstrap_ci(labels, scores, named_metric("auroc"), n_resamples=1000, seed=0)
    assert time.perf_counter() - start < 5.0  # ~0.2 s on an idle 2-core machine
