"""The CI regression gate on the committed CPU smoke reference (results/reference/cpu-smoke/):
tolerant of the float noise between CPU types, strict about changes of behaviour, and a
separate bit-for-bit check of same-machine determinism."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.compare.gate import compare_records, rerun_differences
from bench.compare.settings import load_settings

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "cpu-smoke"
SMOKE_SETTINGS = load_settings(REFERENCE / "smoke.toml")

# Measured (results/reference/cpu-smoke/README.md): the same smoke definition on other
# instruction sets of one machine (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA /
# MKL_ENABLE_INSTRUCTIONS) moved quality metrics by at most 4.0e-05, and an Intel Xeon run by
# 3.98e-05; a one-line change of RADAR's features or of the threshold rule moved them by 1e-2
# and more.
CROSS_CPU_NOISE = 1e-5
BEHAVIOUR_CHANGE = 1e-2


def reference_records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(REFERENCE.glob("jobs/*.json"))]


def shifted(records: list[dict], delta: float, only: str | None = None) -> list[dict]:
    """A copy of ``records`` with every quality metric (or only ``only``) moved by ``delta``,
    clipped to [0, 1] the way a real metric is."""
    out = copy.deepcopy(records)
    for record in out:
        for name, value in record["metrics"].items():
            if value is not None and (only is None or name == only):
                moved = value + delta
                record["metrics"][name] = moved if 0.0 <= moved <= 1.0 else value - delta
    return out


def test_the_smoke_gate_covers_every_quality_metric_pixel_metrics_included():
    names = {name for r in reference_records() for name in r["metrics"]}
    assert {"auroc", "f1", "pixel_auroc", "pixel_aupro", "pixel_f1_max"} <= names
    for name in names:
        rule = SMOKE_SETTINGS.rule(name)
        assert rule.gate and rule.two_sided, name
        assert 10 * CROSS_CPU_NOISE <= rule.tolerance <= BEHAVIOUR_CHANGE / 2, name


@pytest.mark.parametrize("sign", [1, -1])
def test_float_noise_of_another_cpu_type_passes(sign):
    base = reference_records()
    verdict = compare_records(base, shifted(base, sign * CROSS_CPU_NOISE), SMOKE_SETTINGS)
    assert verdict.verdict == "pass", verdict.reasons()
    assert len(verdict.jobs) == len(base) == 6


@pytest.mark.parametrize("metric", ["auroc", "f1", "pixel_auroc", "pixel_aupro", "pixel_f1_max"])
@pytest.mark.parametrize("sign", [1, -1])
def test_a_change_of_behaviour_fails_in_either_direction(metric, sign):
    base = reference_records()
    verdict = compare_records(base, shifted(base, sign * BEHAVIOUR_CHANGE, metric), SMOKE_SETTINGS)
    assert verdict.verdict == "regression"
    bad = {m.metric for j in verdict.jobs for m in j.regressions}
    assert bad == {metric}
    outcomes = {m.outcome for j in verdict.jobs for m in j.regressions}
    assert outcomes <= {"regression", "changed"}


def test_an_improvement_passes_a_one_sided_gate_but_not_the_smoke_gate():
    base = reference_records()
    better = shifted(base, BEHAVIOUR_CHANGE, "pixel_auroc")
    one_sided = load_settings(REFERENCE / "smoke.toml")
    one_sided = type(one_sided)(quality_abs=one_sided.quality_abs)
    assert compare_records(base, better, one_sided).verdict == "pass"
    verdict = compare_records(base, better, SMOKE_SETTINGS)
    assert verdict.verdict == "regression"
    assert any("either way" in reason for reason in verdict.reasons())


# -- same-machine determinism --------------------------------------------------------------


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    for run in (first, second):
        shutil.copytree(REFERENCE / "jobs", run / "jobs")
    return first, second


def _edit_record(run: Path, method: str, edit) -> None:
    for path in sorted(run.glob("jobs/*.json")):
        record = json.loads(path.read_text())
        if record["method"] == method:
            edit(record)
            path.write_text(json.dumps(record))
            return
    raise AssertionError(f"no {method} record in {run}")


def test_identical_reruns_have_no_differences_whatever_their_timing(two_runs):
    first, second = two_runs

    def rerun_at_another_time(record: dict) -> None:
        record["timing"] = {k: 2 * v for k, v in record["timing"].items() if v is not None}
        record["started_at"], record["run_id"] = "2030-01-01T00:00:00", "another"
        record["fit_info"]["train_seconds"] *= 3
        record["fit_info"]["loss_curve"][0][2] += 1.0  # the wall-clock column

    _edit_record(second, "radar", rerun_at_another_time)
    assert rerun_differences(first, second) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["metrics"].__setitem__("pixel_aupro", r["metrics"]["pixel_aupro"] + 1e-12),
        lambda r: r["fit_info"].__setitem__("final_loss", r["fit_info"]["final_loss"] * (1 + 1e-9)),
        lambda r: r["fit_info"]["loss_curve"][3].__setitem__(1, 0.0),
        lambda r: r.__setitem__("threshold", None),
        lambda r: r["params"].pop("t"),
    ],
    ids=["metric by 1e-12", "final loss", "loss curve", "threshold", "a parameter"],
)
def test_any_computed_difference_breaks_determinism(two_runs, change):
    first, second = two_runs
    _edit_record(second, "radar", change)
    (line,) = rerun_differences(first, second)
    assert "radar" in line


def test_side_files_are_compared_exactly(two_runs):
    first, second = two_runs
    scores = sorted(second.glob("jobs/*.scores.csv"))[0]
    frame = pd.read_csv(scores)
    frame.loc[0, "score"] = np.nextafter(frame.loc[0, "score"], np.inf)
    frame.to_csv(scores, index=False)
    (line,) = rerun_differences(first, second)
    assert scores.name in line
    scores.unlink()
    assert any(scores.name in x for x in rerun_differences(first, second))


def test_maps_are_compared_by_their_arrays_not_their_zip_bytes(two_runs):
    first, second = two_runs
    job = sorted(first.glob("jobs/*.json"))[0].stem
    maps = {"maps": np.arange(12, dtype=np.float32).reshape(3, 4)}
    # The same arrays in other zip bytes (a zip entry also holds its write time).
    np.savez_compressed(first / "jobs" / f"{job}.maps.npz", **maps)
    np.savez(second / "jobs" / f"{job}.maps.npz", **maps)
    a, b = (run / "jobs" / f"{job}.maps.npz" for run in (first, second))
    assert a.read_bytes() != b.read_bytes()
    assert rerun_differences(first, second) == []
    maps["maps"][1, 2] += 1e-6
    np.savez_compressed(second / "jobs" / f"{job}.maps.npz", **maps)
    (line,) = rerun_differences(first, second)
    assert "maps.npz" in line


def test_a_job_missing_from_one_run_is_a_difference(two_runs):
    first, second = two_runs
    victim = sorted(second.glob("jobs/*.json"))[0]
    victim.unlink()
    assert rerun_differences(first, second) == [f"{victim.stem}: only in {first}"]
