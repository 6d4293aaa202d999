"""The threshold protocol: the calibration hold-out, the three rules, and that no calibrated
threshold (nor any method's own decision) ever depends on the test labels."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import bench_output as bench
from helpers import use_dataset

from bench.datasets.synthetic import SyntheticDataset
from bench.evaluation.metrics import DECISION_METRICS, metric_directions
from bench.evaluation.protocol import (
    ThresholdProtocol,
    calibrated_threshold,
    calibration_split,
    evaluate,
    resolve_protocol,
)
from bench.execution import runner
from bench.execution.config import RunConfig
from bench.interface import ImageSet, Prediction
from bench.util.errors import ConfigError, DataError

NAMES = [f"train/good/{i:03d}.png" for i in range(60)]


# -- the split ---------------------------------------------------------------------------------


def test_split_is_disjoint_complete_and_seeded() -> None:
    split = calibration_split(NAMES, 0.1, seed=3)
    fit, cal = set(split.fit_index.tolist()), set(split.calibration_index.tolist())
    assert len(cal) == 6 and not fit & cal and fit | cal == set(range(60))
    again = calibration_split(NAMES, 0.1, seed=3)
    assert np.array_equal(again.calibration_index, split.calibration_index)
    assert again.names_sha256 == split.names_sha256
    other = calibration_split(NAMES, 0.1, seed=4)
    assert not np.array_equal(other.calibration_index, split.calibration_index)


def test_split_follows_names_not_loader_order() -> None:
    shuffled = NAMES.copy()
    random.Random(0).shuffle(shuffled)
    a = calibration_split(NAMES, 0.2, seed=1)
    b = calibration_split(shuffled, 0.2, seed=1)
    held_a = sorted(NAMES[i] for i in a.calibration_index)
    held_b = sorted(shuffled[i] for i in b.calibration_index)
    assert held_a == held_b and a.names_sha256 == b.names_sha256


def test_split_sizes_minimum_cap_and_errors() -> None:
    assert calibration_split(NAMES, 0.25, seed=0).n_calibration == 15  # ceil(0.25 * 60)
    assert calibration_split(NAMES[:30], 0.1, seed=0).n_calibration == 5  # the minimum
    small = calibration_split(NAMES[:6], 0.1, seed=0)  # at most half: 3 of 6, flagged by runner
    assert small.n_calibration == 3 and small.wanted == 5
    none = calibration_split(NAMES, 0.0, seed=0)
    assert none.n_calibration == 0 and len(none.fit_index) == 60 and none.names_sha256 is None
    with pytest.raises(DataError, match="--calibration-fraction 0"):
        calibration_split(NAMES[:1], 0.1, seed=0)


def test_protocol_flags_are_validated() -> None:
    assert ThresholdProtocol() == ThresholdProtocol("calibrated", 0.1, 0.05)
    with pytest.raises(ConfigError, match="--threshold 'best'"):
        ThresholdProtocol("best")
    with pytest.raises(ConfigError, match=r"--calibration-fraction 0\.9"):
        ThresholdProtocol(calibration_fraction=0.9)
    with pytest.raises(ConfigError, match="--target-fpr 1"):
        ThresholdProtocol(target_fpr=1)
    with pytest.raises(ConfigError, match="--calibration-fraction must be > 0"):
        ThresholdProtocol("calibrated", 0.0)
    ThresholdProtocol("own", 0.0)  # no hold-out is fine where nothing is calibrated


# -- the threshold -----------------------------------------------------------------------------


def test_calibrated_threshold_flags_at_most_target_fpr_of_held_out_normals() -> None:
    # 6 scores, q = 0.05: the 0.95 quantile (inverted cdf) is the largest -> nothing flagged.
    assert calibrated_threshold([3, 1, 2, 6, 5, 4], 0.05) == 6
    # 100 scores 0..99, q = 0.05: smallest value with >= 95% at or below -> 94; 95..99 flagged.
    scores = np.arange(100.0)
    t = calibrated_threshold(scores, 0.05)
    assert t == 94 and np.mean(scores > t) == pytest.approx(0.05)
    rng = np.random.default_rng(0)
    for q in (0.0, 0.01, 0.1, 0.3):
        s = rng.normal(size=37)
        assert np.mean(s > calibrated_threshold(s, q)) <= q


# -- the metrics of each rule ------------------------------------------------------------------


def _test_set() -> ImageSet:
    # 4 normals, then two "crack" and two "hole" anomalies.
    return ImageSet(
        images=torch.zeros(8, 1, 2, 2),
        labels=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
        masks=None,
        names=[f"{i}.png" for i in range(8)],
        defect_types=["good"] * 4 + ["crack", "crack", "hole", "hole"],
    )


SCORES = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.5, 0.9, 0.7, 0.8])


def test_evaluate_hand_computed_rules() -> None:
    own = torch.tensor([0, 0, 0, 1, 0, 1, 1, 1])
    pred = Prediction(scores=SCORES, decisions=own)
    # Calibration scores 0.1..0.55: threshold 0.55 (their max for q = 0.05).
    cal = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.55])
    ev = evaluate(_test_set(), pred, cal, ThresholdProtocol(), seed=0, n_resamples=200)
    m = ev.metrics
    assert ev.thresholds["calibrated"] == pytest.approx(0.55)
    # Calibrated (> 0.55): flags 0.6 (normal), 0.9, 0.7, 0.8 -> TP 3, FP 1, FN 1 (0.5).
    assert m["calibrated_precision"] == pytest.approx(0.75)
    assert m["calibrated_recall"] == pytest.approx(0.75)
    assert m["calibrated_accuracy"] == pytest.approx(6 / 8)
    assert m["f1"] == m["calibrated_f1"] == pytest.approx(0.75)  # the default rule, unprefixed
    # Own: identical calls to calibrated here except it misses nothing more -> same counts.
    assert m["own_recall"] == pytest.approx(0.75) and m["own_precision"] == pytest.approx(0.75)
    # Oracle: best F1 flags every score >= 0.5: TP 4, FP 1 -> F1 8/9 = f1_max.
    assert m["oracle_f1"] == pytest.approx(8 / 9) == m["f1_max"]
    assert 0.3 < ev.thresholds["oracle"] < 0.5
    assert ev.calibration["fpr_on_calibration"] == 0.0
    assert ev.calibration["fpr_on_test_normals"] == pytest.approx(0.25)
    # Per defect type: crack = {0.5, 0.9}, hole = {0.7, 0.8} against the 4 normals.
    crack, hole = ev.per_defect["crack"], ev.per_defect["hole"]
    assert crack["n"] == 2 and crack["recall"] == pytest.approx(0.5)
    assert crack["oracle_recall"] == 1.0 and hole["recall"] == 1.0
    # AUROC crack: 0.5 beats 3 of 4 normals, 0.9 beats 4 -> 7/8; hole beats all -> 1.
    assert crack["auroc"] == pytest.approx(7 / 8) and hole["auroc"] == 1.0
    assert set(m) <= set(metric_directions)
    for name in ("auroc", "f1", "own_f1", "oracle_f1", "calibrated_recall"):
        low, high = ev.metrics_ci[name]
        assert low <= m[name] <= high, name


def test_rule_choice_sets_the_unprefixed_metrics() -> None:
    pred = Prediction(scores=SCORES, decisions=torch.tensor([1, 1, 1, 1, 1, 1, 1, 1]))
    cal = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.55])
    own = evaluate(_test_set(), pred, cal, ThresholdProtocol("own"), seed=0, n_resamples=50)
    assert own.metrics["precision"] == 0.5 and own.metrics["recall"] == 1.0
    assert own.metrics_ci["f1"] == own.metrics_ci["own_f1"]
    oracle = evaluate(_test_set(), pred, cal, ThresholdProtocol("oracle"), seed=0, n_resamples=50)
    assert oracle.metrics["f1"] == pytest.approx(8 / 9)
    # A method without decisions and no hold-out: no "own" values, nothing unprefixed under own.
    bare = evaluate(
        _test_set(), Prediction(scores=SCORES), None, ThresholdProtocol("own", 0.0), 0, 50
    )
    assert not any(k.startswith(("own_", "calibrated_")) for k in bare.metrics)
    assert not set(DECISION_METRICS) & set(bare.metrics)
    assert "oracle_f1" in bare.metrics and bare.thresholds["calibrated"] is None


# -- end to end through the runner ---------------------------------------------------------------


class _Data:
    """A small synthetic set whose test labels can be turned upside down."""

    def __init__(self, flip: bool) -> None:
        self.inner = SyntheticDataset("brick", n_train=20, n_test_good=6, n_test_anomalous=6)
        self.family, self.category, self.flip = "synthetic", "brick", flip

    def load(self, split, spec, seed):
        data = self.inner.load(split, spec, seed)
        if split != "test" or not self.flip:
            return data
        labels = 1 - data.labels
        kinds = ["good" if y == 0 else "flipped" for y in labels.tolist()]
        return ImageSet(data.images, labels, None, data.names, kinds)


def _run(tmp_path: Path, monkeypatch, methods: list[str], sets: dict, flip: bool) -> list[dict]:
    use_dataset(monkeypatch, lambda spec, root=None: _Data(flip))
    cfg = RunConfig(methods=methods, sets=sets, device="cpu", threads=1, timing_repeats=1)
    out = runner.run(cfg, results_dir=tmp_path / ("flipped" if flip else "plain"))
    assert all(r["status"] == "ok" for r in out.records), [r.get("error") for r in out.records]
    return out.records


def test_test_labels_change_no_calibrated_threshold_or_own_decision(
    tmp_path, monkeypatch, meandiff
):
    from bench.methods import registry

    methods = [meandiff]
    sets: dict[str, dict[str, str]] = {"meandiff": {"image_size": "16"}}
    if "iforest" in registry.methods():
        methods.append("iforest")
        sets["iforest"] = {"image_size": "16", "vector_size": "8", "n_estimators": "20"}
    if "radar" in registry.methods():  # the smallest RADAR that trains a U-Net at all
        methods.append("radar")
        sets["radar"] = {
            "image_size": "32",
            "patch_size": "16",
            "block_out_channels": "(8, 8)",
            "norm_num_groups": "4",
            "train_steps": "2",
            "batch_size": "8",
            "infer_stride": "16",
            "scorer_images": "8",
            "n_estimators": "10",
        }
    plain = _run(tmp_path, monkeypatch, methods, sets, flip=False)
    flipped = _run(tmp_path, monkeypatch, methods, sets, flip=True)
    by_method = {r["method"]: r for r in flipped}
    calibration_sets = set()
    for a in plain:
        b = by_method[a["method"]]
        assert a["threshold_rule"] == "calibrated" and a["n_calibration"] == 5
        assert a["n_fit"] == 15 and a["n_train"] == 20
        assert a["thresholds"]["calibrated"] == b["thresholds"]["calibrated"], a["method"]
        assert a["thresholds"]["oracle"] != b["thresholds"]["oracle"]  # the flip did matter
        pair = (("plain", a), ("flipped", b))
        jobs = [tmp_path / d / r["run_id"] / "jobs" / r["job_id"] for d, r in pair]
        sa, sb = (pd.read_csv(f"{j}.scores.csv") for j in jobs)
        assert np.array_equal(sa["score"], sb["score"])
        assert (sa["label"] != sb["label"]).all()
        if "decision" in sa:  # the method's own decision never sees a test label either
            assert np.array_equal(sa["decision"], sb["decision"]), a["method"]
        cal = pd.read_csv(f"{jobs[0]}.calibration.csv")
        assert len(cal) == 5 and (cal["label"] == 0).all()
        assert np.mean(cal["score"] > a["threshold"]) <= 0.05
        calibration_sets.add((a["calibration"]["names_sha256"], tuple(cal["name"])))
        for name in ("auroc", "f1", "accuracy"):
            low, high = a["metrics_ci"][name]
            assert low <= a["metrics"][name] <= high
    # Every method held out the very same images (and was fit on the same rest).
    assert len(calibration_sets) == 1


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--threshold", "best"], "--threshold 'best': expected one of calibrated, own, oracle"),
        (["--calibration-fraction", "0.8"], "--calibration-fraction 0.8"),
        (["--calibration-fraction", "0"], "--calibration-fraction must be > 0"),
        (["--target-fpr", "1.5"], "--target-fpr 1.5"),
    ],
)
def test_bad_protocol_flags_are_one_line_errors(flags, expected, tmp_path, capsys, meandiff):
    argv = ["run", "--methods", meandiff, *flags, "--results-dir", str(tmp_path)]
    code, _, err = bench(argv, capsys)
    assert code == 2 and err.strip().startswith("error: ") and expected in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_oracle_rule_is_labelled_in_the_table_and_flags(tmp_path, capsys, meandiff, monkeypatch):
    use_dataset(monkeypatch, lambda spec, root=None: _Data(False))
    argv = ["run", "--methods", meandiff, "--threshold", "oracle", "--timing-repeats", "1"]
    argv += ["--results-dir", str(tmp_path)]
    code, out, err = bench(argv, capsys)
    assert code == 0, err
    assert "ORACLE threshold" in out
    (path,) = tmp_path.glob("*/jobs/*.json")
    rec = json.loads(path.read_text())
    assert rec["threshold_rule"] == "oracle" and "threshold:oracle" in rec["flags"]
    assert rec["metrics"]["f1"] == rec["metrics"]["oracle_f1"]
    assert rec["metrics"]["f1"] == pytest.approx(rec["metrics"]["f1_max"])
    assert not math.isnan(rec["metrics"]["calibrated_f1"])  # still stored beside it


def test_protocol_paper_is_own_rule_without_hold_out() -> None:
    assert resolve_protocol("paper", None, None) == ("own", 0.0)
    assert resolve_protocol("paper", "own", 0) == ("own", 0.0)
    assert resolve_protocol("suite", None, None) == ("calibrated", 0.1)
    assert resolve_protocol("suite", "oracle", 0.2) == ("oracle", 0.2)
    for threshold, fraction in (("calibrated", None), (None, 0.1), ("oracle", 0)):
        with pytest.raises(ConfigError, match="--protocol paper means --threshold own"):
            resolve_protocol("paper", threshold, fraction)
    with pytest.raises(ConfigError, match="--protocol 'papers'"):
        resolve_protocol("papers", None, None)
    assert ThresholdProtocol("own", 0.0).name == "paper"
    assert ThresholdProtocol().name == ThresholdProtocol("own", 0.1).name == "suite"


def test_protocol_paper_trains_on_every_normal_and_says_so(tmp_path, capsys, monkeypatch):
    use_dataset(monkeypatch, lambda spec, root=None: _Data(False))
    base = ["run", "--methods", "iforest", "--timing-repeats", "1", "--device", "cpu"]
    records = {}
    for protocol in ("suite", "paper"):
        argv = [*base, "--protocol", protocol, "--results-dir", str(tmp_path / protocol)]
        code, _, err = bench(argv, capsys)
        assert code == 0, err
        (path,) = (tmp_path / protocol).glob("*/jobs/*.json")
        records[protocol] = json.loads(path.read_text())
    paper, suite = records["paper"], records["suite"]
    assert paper["protocol"] == "paper" and suite["protocol"] == "suite"
    assert paper["threshold_rule"] == "own" and "protocol:paper" in paper["flags"]
    assert paper["n_fit"] == 20 and paper["n_calibration"] == 0  # every normal in training
    assert suite["n_fit"] == 20 - suite["n_calibration"] and suite["n_calibration"] >= 5
    assert paper["metrics"]["f1"] == paper["metrics"]["own_f1"]
    assert math.isnan(paper["metrics"].get("calibrated_f1", math.nan))

    argv = [*base, "--protocol", "paper", "--threshold", "calibrated"]
    code, _, err = bench([*argv, "--results-dir", str(tmp_path / "bad")], capsys)
    assert code == 2 and "--protocol paper means --threshold own" in err
