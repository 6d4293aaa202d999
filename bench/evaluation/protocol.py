"""The threshold protocol: one honest rule that turns every method's scores into decisions.

Accuracy, precision, recall and F1 need a threshold. Choosing it on the test set flatters every
method ("the threshold saw the test labels"), and each method's own rule differs (RADAR's
IsolationForest contamination, a classical model's ``predict``), so the suite applies the same
rule to all of them (``--threshold``, stored in every record as ``threshold_rule``):

``calibrated`` (default)
    A seeded hold-out of the *normal training images* (``--calibration-fraction``, default 0.1,
    at least :data:`MIN_CALIBRATION_IMAGES`) is kept out of ``fit`` for every method alike: the
    split depends only on the training image names, the seed and the fraction, never on the
    method. The threshold is the empirical (1 - q) quantile of the method's scores on these
    held-out normals, q = ``--target-fpr`` (default 0.05, the contamination of the RADAR paper);
    an image is anomalous if its score is *above* the threshold. The quantile is numpy's
    ``method="inverted_cdf"`` (Hyndman & Fan's definition 1: the smallest calibration score with
    at least 1 - q of them at or below it), so at most a share q of the held-out normals is
    flagged. No test image, label or score is used.
``own``
    The method's own 0/1 decision, where it makes one (``Prediction.decisions``).
``oracle``
    The F1-maximising threshold on the test set
    (:func:`bench.evaluation.metrics.oracle_threshold`): an
    upper bound, always labelled "oracle", never the default.

Every record stores all three: the chosen rule's ``accuracy``/``precision``/``recall``/``f1``
unprefixed, and each rule's under its prefix (``calibrated_f1``, ``own_f1`` where the method
decides, ``oracle_f1``), so a report can show any rule without rerunning. Beside each image
metric goes a 95% label-stratified bootstrap interval over the test images
(``record["metrics_ci"]``, :mod:`bench.evaluation.stats`), and per defect type
(normals against that type) the recall under each rule and the AUROC (``record["per_defect"]``).

Two named protocols (``--protocol``, stored in every record as ``protocol``):

``suite`` (default)
    The fair comparison of methods: the calibrated rule on a hold-out, as above (or whatever
    ``--threshold`` / ``--calibration-fraction`` say).
``paper``
    What a paper's Acc/Prec/Rec/F1 are held against (RADAR's: its IsolationForest's own decision,
    contamination 0.05, with every normal training image in training): no hold-out
    (``--calibration-fraction 0``) and the ``own`` rule. Methods without a decision of their own
    then have no unprefixed Acc/Prec/Rec/F1 (AUROC, AP, F1-max and the oracle are still there).

A record is ``paper`` whenever its rule is ``own`` without a hold-out, however the flags said
so; the name is derived from the settings and never part of a job's identity.

With very few training images the hold-out shrinks to half the training set (a flag
``calibration:n=<k>`` marks such records); with ``--calibration-fraction 0`` there is no
hold-out, every method fits on all training images and only ``own`` and ``oracle`` exist.

>>> split = calibration_split([f"train/good/{i:03d}.png" for i in range(60)], 0.1, seed=0)
>>> len(split.fit_index), len(split.calibration_index)
(54, 6)
>>> calibrated_threshold([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], target_fpr=0.05)
0.6
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.evaluation.metrics import (
    DECISION_METRICS,
    batched_decision_metrics,
    batched_score_metrics,
    compute_metrics,
    decision_metrics,
    oracle_threshold,
)
from bench.evaluation.stats import SCORE_METRICS, bootstrap_ci
from bench.util.errors import ConfigError, DataError

if TYPE_CHECKING:
    from bench.interface import ImageSet, Prediction

RULES: tuple[str, ...] = ("calibrated", "own", "oracle")
PROTOCOLS: tuple[str, ...] = ("suite", "paper")
DEFAULT_RULE = "calibrated"
DEFAULT_CALIBRATION_FRACTION = 0.1
DEFAULT_TARGET_FPR = 0.05
MIN_CALIBRATION_IMAGES = 5
MAX_CALIBRATION_FRACTION = 0.5
QUANTILE_METHOD = "inverted_cdf"


@dataclass(frozen=True)
class ThresholdProtocol:
    """The ``--threshold``, ``--calibration-fraction`` and ``--target-fpr`` of a run."""

    rule: str = DEFAULT_RULE
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION
    target_fpr: float = DEFAULT_TARGET_FPR

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"--threshold {self.rule!r}: expected one of {', '.join(RULES)}")
        f = self.calibration_fraction
        if not (isinstance(f, int | float) and 0 <= f <= MAX_CALIBRATION_FRACTION):
            raise ConfigError(
                f"--calibration-fraction {f!r}: expected a share of the normal training images "
                f"in [0, {MAX_CALIBRATION_FRACTION}] (0 = no hold-out)"
            )
        q = self.target_fpr
        if not (isinstance(q, int | float) and 0 <= q < 1):
            raise ConfigError(f"--target-fpr {q!r}: expected a false-positive rate in [0, 1)")
        if self.rule == "calibrated" and f == 0:
            raise ConfigError(
                "--threshold calibrated needs normal images held out of training: "
                "--calibration-fraction must be > 0 (or use --threshold own or oracle)"
            )

    @property
    def name(self) -> str:
        """``paper`` (the method's own rule, every normal training image in training) or
        ``suite`` (anything else); see the module docstring."""
        return "paper" if self.rule == "own" and self.calibration_fraction == 0 else "suite"

    def identity(self) -> dict[str, Any]:
        """What a job's identity includes: all three change the numbers of its record."""
        return {
            "rule": self.rule,
            "calibration_fraction": float(self.calibration_fraction),
            "target_fpr": float(self.target_fpr),
        }


@dataclass(frozen=True)
class CalibrationSplit:
    """Positions (into the training set) of the images to fit on and to calibrate on."""

    fit_index: np.ndarray
    calibration_index: np.ndarray
    names_sha256: str | None  # of the sorted calibration image names; None without hold-out
    wanted: int  # the size the fraction and the minimum asked for (may exceed what was held out)

    @property
    def n_calibration(self) -> int:
        return int(self.calibration_index.size)


def resolve_protocol(
    protocol: str, threshold: str | None, calibration_fraction: float | None
) -> tuple[str, float]:
    """``--protocol`` with ``--threshold`` / ``--calibration-fraction`` (None: not given) ->
    the (rule, calibration fraction) of the run; ``paper`` is shorthand for ``own`` and 0, and a
    flag that contradicts it is an error rather than silently dropped."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if protocol == "paper":
        if threshold not in (None, "own") or calibration_fraction not in (None, 0):
            raise ConfigError(
                "--protocol paper means --threshold own --calibration-fraction 0 (every normal "
                "training image in training, the method's own decision); drop the other "
                "--threshold / --calibration-fraction"
            )
        return "own", 0.0
    rule = DEFAULT_RULE if threshold is None else threshold
    if calibration_fraction is None:
        return rule, DEFAULT_CALIBRATION_FRACTION
    return rule, calibration_fraction


def names_digest(names: Sequence[str]) -> str:
    """sha256 of the sorted names, one per line: identifies a set of images in a record."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def calibration_split(names: Sequence[str], fraction: float, seed: int) -> CalibrationSplit:
    """Hold out ``max(5, ceil(fraction * n))`` of the ``n`` normal training images (at most half
    of them), chosen by scikit-learn's ``train_test_split`` with ``random_state=seed`` over the
    *sorted names*, so the split is the same for every method and every loader order."""
    n = len(names)
    if fraction == 0:
        return CalibrationSplit(np.arange(n), np.arange(0), None, 0)
    if len(set(names)) != n:
        raise DataError("the training images must have distinct names for the calibration split")
    wanted = max(MIN_CALIBRATION_IMAGES, math.ceil(round(fraction * n, 9)))
    n_calibration = min(wanted, n // 2)
    if n_calibration < 1:
        raise DataError(
            f"{n} normal training image(s): the calibration hold-out needs at least 2 (one to "
            "fit on, one to calibrate on); add training images, or use --calibration-fraction 0 "
            "with --threshold own or oracle"
        )
    from sklearn.model_selection import train_test_split

    by_name = sorted(range(n), key=lambda i: names[i])
    _, held_out = train_test_split(by_name, test_size=n_calibration, random_state=seed)
    calibration = np.sort(np.asarray(held_out, dtype=np.int64))
    fit = np.setdiff1d(np.arange(n), calibration)
    return CalibrationSplit(
        fit, calibration, names_digest([names[i] for i in calibration.tolist()]), wanted
    )


def calibrated_threshold(calibration_scores: object, target_fpr: float) -> float:
    """The empirical ``1 - target_fpr`` quantile (numpy ``inverted_cdf``) of the scores of the
    held-out normal images: "anomalous if score > threshold" flags at most ``target_fpr`` of
    them."""
    s = np.asarray(calibration_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("no calibration scores")
    if not np.isfinite(s).all():
        raise ValueError(
            f"calibration scores hold {int((~np.isfinite(s)).sum())} non-finite values"
        )
    return float(np.quantile(s, 1.0 - target_fpr, method=QUANTILE_METHOD))


@dataclass
class Evaluation:
    """What :func:`evaluate` adds to a job record."""

    metrics: dict[str, float]
    metrics_ci: dict[str, list[float]]
    per_defect: dict[str, dict[str, float]]
    thresholds: dict[str, float | None]
    calibration: dict[str, Any] = field(default_factory=dict)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
    return np.asarray(x)


def _rule_decisions(
    labels: np.ndarray,
    scores: np.ndarray,
    own: np.ndarray | None,
    calibrated: float | None,
) -> tuple[dict[str, np.ndarray], dict[str, float | None]]:
    oracle = oracle_threshold(labels, scores)
    thresholds: dict[str, float | None] = {"calibrated": calibrated, "own": None, "oracle": oracle}
    decisions: dict[str, np.ndarray] = {}
    if calibrated is not None:
        decisions["calibrated"] = scores > calibrated
    if own is not None:
        decisions["own"] = own.astype(bool)
    if not math.isnan(oracle):
        decisions["oracle"] = scores > oracle
    return decisions, thresholds


def _per_defect(
    labels: np.ndarray,
    scores: np.ndarray,
    defect_types: Sequence[str],
    decisions: dict[str, np.ndarray],
    rule: str,
) -> dict[str, dict[str, float]]:
    """Normals against each defect type: recall under each rule and AUROC."""
    from sklearn.metrics import roc_auc_score

    types = np.asarray(defect_types, dtype=object)
    normal = ~labels
    out: dict[str, dict[str, float]] = {}
    for defect in sorted(set(types[labels].tolist())):
        mine = labels & (types == defect)
        entry: dict[str, float] = {"n": int(mine.sum())}
        if normal.any():
            pick = normal | mine
            entry["auroc"] = float(roc_auc_score(mine[pick], scores[pick]))
        else:
            entry["auroc"] = math.nan
        for name, d in decisions.items():
            entry[f"{name}_recall"] = float(d[mine].mean())
        if rule in decisions:
            entry["recall"] = entry[f"{rule}_recall"]
        out[str(defect)] = entry
    return out


def evaluate(
    test: ImageSet,
    pred: Prediction,
    calibration_scores: object | None,
    protocol: ThresholdProtocol,
    seed: int,
    n_resamples: int = 1000,
) -> Evaluation:
    """All metrics of one job under the threshold protocol, with bootstrap intervals.

    ``calibration_scores`` are the method's scores of the held-out normal training images
    (None without a hold-out). Threshold-free and pixel metrics come from
    :func:`bench.evaluation.metrics.compute_metrics`; intervals are given for every image metric
    (not for pixel metrics, whose bootstrap would recompute millions of pixels per resample)."""
    metrics = compute_metrics(test, replace(pred, decisions=None))  # also checks the shapes
    labels = _as_numpy(test.labels).astype(bool)
    scores = _as_numpy(pred.scores).astype(np.float64)
    own = None if pred.decisions is None else _as_numpy(pred.decisions)
    calibrated = None
    calibration: dict[str, Any] = {}
    if calibration_scores is not None:
        cal = _as_numpy(calibration_scores).astype(np.float64).reshape(-1)
        calibrated = calibrated_threshold(cal, protocol.target_fpr)
        calibration = {
            "fpr_on_calibration": float(np.mean(cal > calibrated)),
            # How well the calibrated rate carries over to unseen normals (reported, never used).
            "fpr_on_test_normals": float(np.mean(scores[~labels] > calibrated))
            if (~labels).any()
            else math.nan,
        }
    decisions, thresholds = _rule_decisions(labels, scores, own, calibrated)
    for rule, d in decisions.items():
        for name, value in decision_metrics(labels, d).items():
            metrics[f"{rule}_{name}"] = value
    if "oracle" not in decisions:
        metrics.update({f"oracle_{m}": math.nan for m in DECISION_METRICS})
    if protocol.rule in decisions or protocol.rule == "oracle":
        metrics.update({m: metrics[f"{protocol.rule}_{m}"] for m in DECISION_METRICS})

    # Intervals: scores and each rule's fixed decisions, resampled together image by image.
    # The oracle's threshold is re-chosen on every resample (it is a property of the test set);
    # the calibrated one is fixed (it never saw the test set).
    fixed = [r for r in ("calibrated", "own") if r in decisions]
    rows = np.stack([scores, *(decisions[r].astype(np.float64) for r in fixed)])
    names = [*SCORE_METRICS, *(f"{r}_{m}" for r in fixed for m in DECISION_METRICS)]

    def all_metrics(lab: np.ndarray, vals: np.ndarray) -> np.ndarray:
        from_scores = batched_score_metrics(lab, vals[0])
        out = [from_scores[m] for m in SCORE_METRICS]
        for i in range(len(fixed)):
            from_decisions = batched_decision_metrics(lab, vals[1 + i])
            out += [from_decisions[m] for m in DECISION_METRICS]
        return np.stack(out)

    ci = bootstrap_ci(labels, rows, all_metrics, n_resamples=n_resamples, seed=seed)
    metrics_ci = {name: [float(lo), float(hi)] for name, (lo, hi) in zip(names, ci, strict=True)}
    if f"{protocol.rule}_f1" in metrics_ci:
        for m in DECISION_METRICS:
            metrics_ci[m] = metrics_ci[f"{protocol.rule}_{m}"]
    per_defect = _per_defect(labels, scores, test.defect_types, decisions, protocol.rule)
    return Evaluation(metrics, metrics_ci, per_defect, thresholds, calibration)
