"""Every metric against a case small enough to compute by hand (the arithmetic is in comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from bench.evaluation.metrics import (
    batched_decision_metrics,
    batched_score_metrics,
    compute_metrics,
    decision_metrics,
    image_metrics,
    metric_directions,
    oracle_threshold,
    pixel_aupro,
    pixel_metrics,
)
from bench.interface import ImageSet, Prediction


def test_image_metrics_hand_computed() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    decisions = torch.tensor([0, 1, 1, 1])
    m = image_metrics(labels, scores, decisions)
    # AUROC: (pos, neg) pairs ranked right: 0.35>0.1, 0.8>0.1, 0.8>0.4; wrong: 0.35<0.4 -> 3/4.
    assert m["auroc"] == pytest.approx(0.75)
    # AP: descending 0.8(+) 0.4(-) 0.35(+) 0.1(-); recall steps 0->0.5 at precision 1, 0.5->1
    # at precision 2/3: AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    assert m["ap"] == pytest.approx(5 / 6)
    # F1 by threshold (>= t): 0.8: P1 R.5 -> 2/3; 0.4: P.5 R.5 -> .5; 0.35: P2/3 R1 -> .8;
    # 0.1: P.5 R1 -> 2/3. Max 0.8.
    assert m["f1_max"] == pytest.approx(0.8)
    # Decisions: TP 2 (idx 2, 3), FP 1 (idx 1), TN 1 (idx 0), FN 0.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)


def test_image_metrics_ties_and_numpy_input() -> None:
    # Pairs: 0.5 vs 0.5 tie (1/2), 0.5>0.2, 0.9>0.5, 0.9>0.2 -> 3.5/4.
    m = image_metrics(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9]))
    assert m["auroc"] == pytest.approx(0.875)
    assert "accuracy" not in m and "f1" not in m  # no decisions, no operating-point metrics


def test_image_metrics_one_class_is_nan_not_error() -> None:
    m = image_metrics(torch.zeros(4, dtype=torch.long), torch.rand(4), torch.tensor([0, 1, 0, 0]))
    assert math.isnan(m["auroc"]) and math.isnan(m["ap"]) and math.isnan(m["f1_max"])
    assert m["accuracy"] == pytest.approx(0.75)
    # Nothing to find: precision, recall and F1 are undefined (NaN -> null), not 0 (issue #24).
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and math.isnan(m["f1"])
    batched = batched_decision_metrics(np.zeros(4), np.array([[0, 1, 0, 0], [0, 0, 0, 0]]))
    assert batched["accuracy"].tolist() == [0.75, 1.0]
    assert all(np.isnan(batched[k]).all() for k in ("precision", "recall", "f1"))
    # With anomalies, nothing flagged stays sklearn's zero_division=0 (precision 0, recall 0).
    m = image_metrics(torch.tensor([0, 1, 0, 1]), torch.rand(4), torch.zeros(4, dtype=torch.long))
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_image_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        image_metrics(torch.tensor([0, 1]), torch.tensor([0.1, float("nan")]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        image_metrics(torch.tensor([0, 2]), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="scores must be"):
        image_metrics(torch.tensor([0, 1]), torch.tensor([0.1, 0.2, 0.3]))


def _tiny_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    # Two 2x2 images, 8 pixels: anomalous scores 0.9, 0.6, 0.3; normal 0.1 0.2 0.4 0.5 0.6.
    masks = torch.tensor([[[0, 1], [0, 0]], [[0, 0], [1, 1]]], dtype=torch.bool)
    maps = torch.tensor([[[0.1, 0.9], [0.2, 0.4]], [[0.5, 0.6], [0.6, 0.3]]])
    return masks, maps


def test_pixel_auroc_and_f1_max_hand_computed() -> None:
    masks, maps = _tiny_pixels()
    m = pixel_metrics(masks, maps)
    # AUROC: 0.9 beats all 5 normals (5); 0.6 beats 4, ties 1 (4.5); 0.3 beats 0.1, 0.2 (2).
    # (5 + 4.5 + 2) / (3 * 5) = 11.5 / 15.
    assert m["pixel_auroc"] == pytest.approx(11.5 / 15)
    # F1 = 2TP / (TP + FP + P), P = 3: t=.9: 2/4; t=.6: TP2 FP1 -> 4/6; t=.5: 4/7; t=.4: 4/8;
    # t=.3: TP3 FP3 -> 6/9; t=.2: 6/10; t=.1: 6/11. Max 2/3.
    assert m["pixel_f1_max"] == pytest.approx(2 / 3)
    assert 0.0 <= m["pixel_aupro"] <= 1.0


def test_pixel_metrics_match_sklearn_on_random_maps() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 16, 16, generator=g) < 0.2
    # Rounded scores so that there are many ties between and within classes.
    maps = torch.round((torch.rand(6, 16, 16, generator=g) + 0.4 * masks) * 20) / 20
    m = pixel_metrics(masks, maps)
    y, s = masks.numpy().ravel(), maps.numpy().ravel()
    assert m["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    assert m["pixel_f1_max"] == pytest.approx(f1.max(), abs=1e-12)


def test_aupro_perfect_map_is_one() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    masks[1, 5:7, 2:6] = True
    # Every anomalous pixel above every normal one: PRO reaches 1 at FPR 0 -> area 0.3 / 0.3.
    assert pixel_aupro(masks, masks.float()) == pytest.approx(1.0)


def test_aupro_constant_map_is_low() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    # One threshold only: the curve goes straight from (0, 0) to (1, 1); up to FPR 0.3 it is
    # the diagonal, area 0.3**2 / 2 = 0.045, normalised by 0.3 -> 0.15.
    assert pixel_aupro(masks, torch.full((2, 8, 8), 0.5)) == pytest.approx(0.15)


def test_aupro_averages_over_regions_not_pixels() -> None:
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True  # region A, 4 pixels, image 0
    masks[1, 4, 4] = True  # region B, 1 pixel, image 1
    maps = torch.zeros(2, 6, 6)
    maps[0, 0:2, 0:2] = 1.0  # only A is found; B scores like the background
    # Curve: (0, 0) -> (0, 0.5) when A is fully covered (mean overlap of A=1, B=0), then every
    # remaining pixel ties at 0 -> (1, 1). At FPR 0.3: 0.5 + 0.5 * 0.3 = 0.65.
    # Area from 0 to 0.3 = 0.3 * (0.5 + 0.65) / 2 = 0.1725; / 0.3 = 0.575.
    # (A pixel-level TPR would weigh A 4:1 and say 0.8 at FPR 0 instead.)
    assert pixel_aupro(masks, maps) == pytest.approx(0.575)


def test_pixel_metrics_one_class_is_nan_and_shapes_are_checked() -> None:
    m = pixel_metrics(torch.zeros(2, 4, 4, dtype=torch.bool), torch.rand(2, 4, 4))
    assert all(math.isnan(v) for v in m.values())
    assert set(m) == {"pixel_auroc", "pixel_f1_max", "pixel_aupro"}
    with pytest.raises(ValueError, match="maps must have the shape"):
        pixel_metrics(torch.zeros(2, 4, 4, dtype=torch.bool), torch.rand(2, 4, 5))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pixel_metrics(torch.zeros(2, 1, 4, 4, dtype=torch.bool), torch.rand(2, 1, 4, 4))


def _test_set(with_masks: bool) -> ImageSet:
    masks, _ = _tiny_pixels()
    return ImageSet(
        images=torch.zeros(2, 1, 2, 2),
        labels=torch.tensor([1, 1]) if with_masks else torch.tensor([0, 1]),
        masks=masks if with_masks else None,
        names=["a.png", "b.png"],
    )


def test_compute_metrics_combines_and_skips_pixel_metrics() -> None:
    _, maps = _tiny_pixels()
    test = _test_set(with_masks=True)
    full = compute_metrics(test, Prediction(scores=torch.tensor([0.2, 0.7]), maps=maps))
    assert {"auroc", "ap", "f1_max", "pixel_auroc", "pixel_f1_max", "pixel_aupro"} <= set(full)
    assert full["pixel_auroc"] == pytest.approx(11.5 / 15)

    no_maps = compute_metrics(test, Prediction(scores=torch.tensor([0.2, 0.7])))
    assert not any(k.startswith("pixel_") for k in no_maps)
    no_masks = compute_metrics(
        _test_set(with_masks=False), Prediction(scores=torch.tensor([0.2, 0.7]), maps=maps)
    )
    assert not any(k.startswith("pixel_") for k in no_masks)
    assert no_masks["auroc"] == 1.0

    with pytest.raises(ValueError, match="maps must be"):
        compute_metrics(test, Prediction(scores=torch.tensor([0.2, 0.7]), maps=maps[:, :1]))
    with pytest.raises(ValueError, match="scores must be"):
        compute_metrics(test, Prediction(scores=torch.tensor([0.2])))
    with pytest.raises(ValueError, match="decisions must be"):
        compute_metrics(
            test, Prediction(scores=torch.tensor([0.2, 0.7]), decisions=torch.tensor([1]))
        )


def test_metric_directions_cover_every_metric() -> None:
    _, maps = _tiny_pixels()
    out = compute_metrics(
        _test_set(with_masks=True),
        Prediction(scores=torch.tensor([0.2, 0.7]), decisions=torch.tensor([0, 1]), maps=maps),
    )
    assert set(out) <= set(metric_directions)
    assert set(metric_directions.values()) == {"higher"}
    for rule in ("calibrated", "own", "oracle"):  # every threshold rule's stored variants
        assert {f"{rule}_f1", f"{rule}_accuracy"} <= set(metric_directions)


def test_batched_metrics_match_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels, scores = [], []
    while len(labels) < 15:  # random test sets of 2-40 images, scores rounded to force ties
        n = int(rng.integers(2, 41))
        y = rng.integers(0, 2, n).astype(bool)
        if y.all() or not y.any():
            continue
        labels.append(y)
        scores.append(np.round(rng.normal(size=n) + y, int(rng.integers(0, 3))))
    for y, s in zip(labels, scores, strict=True):
        got = {k: float(v) for k, v in batched_score_metrics(y, s).items()}
        p, r, _ = precision_recall_curve(y, s)
        f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        assert got["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert got["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert got["f1_max"] == pytest.approx(f1.max(), abs=1e-12)
        # The oracle threshold reproduces the best F1 with "anomalous if score > threshold".
        at_oracle = decision_metrics(y, s > oracle_threshold(y, s))
        for name, value in at_oracle.items():
            assert got[f"oracle_{name}"] == pytest.approx(value, abs=1e-12), name
        d = s > np.median(s)
        batched = batched_decision_metrics(y, d)
        for name, value in decision_metrics(y, d).items():
            assert float(batched[name]) == pytest.approx(value, abs=1e-12), name
    # A batch at once: the same numbers, row by row.
    y = np.r_[np.zeros(7, bool), np.ones(5, bool)]
    batch = np.round(rng.normal(size=(9, 12)) + y, 1)
    auroc = batched_score_metrics(y, batch)["auroc"]
    assert auroc.shape == (9,)
    assert auroc == pytest.approx([roc_auc_score(y, row) for row in batch], abs=1e-12)


def test_batched_metrics_are_nan_for_one_class_and_oracle_edge_cases() -> None:
    out = batched_score_metrics(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    assert all(np.isnan(v) for v in out.values())
    assert math.isnan(oracle_threshold(np.ones(3), np.array([0.1, 0.2, 0.3])))
    # Best F1 flags everything (0.2 is anomalous, lowest score): threshold just below 0.2.
    t = oracle_threshold(np.array([1, 0, 1]), np.array([0.2, 0.3, 0.9]))
    assert t < 0.2 and (np.array([0.2, 0.3, 0.9]) > t).all()
    # Adjacent floats: no midpoint between them, the lower one is the threshold.
    hi = 1.0
    lo = float(np.nextafter(hi, 0.0))
    assert oracle_threshold(np.array([1, 0]), np.array([hi, lo])) == lo
