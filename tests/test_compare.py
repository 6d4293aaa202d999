"""``bench compare``: the regression gate on real runs of the test-only ``meandiff`` detector
(a few seconds, no network trained) and on hand-edited records for the corner cases."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from helpers import bench_exit_code as bench

from bench.compare.gate import (
    EXIT_PASS,
    EXIT_REGRESSION,
    compare_paths,
    compare_records,
    to_json,
    to_markdown,
)
from bench.compare.settings import CompareSettings, load_settings
from bench.methods.registry import get_method, register_method
from bench.util.errors import ConfigError


def run_meandiff(results: Path, run_id: str, *extra: str) -> Path:
    code = bench(
        [
            "run", "--methods", "meandiff", "--datasets", "synthetic", "--seeds", "0,1",
            "--device", "cpu", "--threads", "1", "--timing-repeats", "1",
            "--results-dir", str(results), "--run-id", run_id, *extra,
        ]
    )  # fmt: skip
    assert code == 0
    return results / run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A baseline, an unchanged rerun, a degraded method (same parameters, worse code path)
    and a run with a changed parameter, all of meandiff on synthetic, seeds 0 and 1."""
    from helpers import MeanDiff, register_meandiff

    register_meandiff()
    results = tmp_path_factory.mktemp("results")
    out = {
        "baseline": run_meandiff(results, "baseline"),
        "rerun": run_meandiff(results, "rerun"),
        "changed_params": run_meandiff(results, "changed", "--set", "meandiff.reduce=mean"),
    }
    # The degraded method: a bad parameter value (scale 0: flat maps, constant scores) injected
    # below the registry, so the record's parameters and hash are those of the baseline, as
    # after a code change that breaks a method.
    entry = get_method("meandiff")
    register_method(
        dataclasses.replace(entry, build=lambda p: MeanDiff(dataclasses.replace(p, scale=0.0)))
    )
    try:
        out["degraded"] = run_meandiff(results, "degraded")
    finally:
        register_meandiff()
    return out


def records(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.glob("jobs/*.json"))]


# -- the done-when of the issue ------------------------------------------------------------------


def test_unchanged_rerun_passes_with_identical_quality(runs, tmp_path, capsys):
    md, js = tmp_path / "verdict.md", tmp_path / "verdict.json"
    code = bench(
        ["compare", str(runs["baseline"]), str(runs["rerun"]), "--markdown", str(md),
         "--json", str(js)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == EXIT_PASS
    assert "PASS" in out
    verdict = json.loads(js.read_text())
    assert verdict["verdict"] == "pass" and verdict["exit_code"] == 0
    assert verdict["counts"]["jobs_compared"] == 2
    assert verdict["counts"]["missing_jobs"] == verdict["counts"]["extra_jobs"] == 0
    quality = [m for j in verdict["jobs"] for m in j["metrics"] if m["family"] == "quality"]
    assert {m["metric"] for m in quality} >= {"auroc", "pixel_auroc", "f1"}
    # On the CPU a rerun is bit-identical: every quality delta is exactly zero.
    assert all(m["change"] == 0.0 for m in quality)
    assert md.read_text().startswith("## ✅ bench compare: PASS")


def test_degraded_method_is_caught(runs, tmp_path, capsys):
    js = tmp_path / "verdict.json"
    code = bench(["compare", str(runs["baseline"]), str(runs["degraded"]), "--json", str(js)])
    captured = capsys.readouterr()
    assert code == EXIT_REGRESSION
    assert "REGRESSION" in captured.out and "regression:" in captured.err
    verdict = json.loads(js.read_text())
    assert verdict["verdict"] == "regression" and verdict["counts"]["jobs_regressed"] == 2
    for job in verdict["jobs"]:
        by_name = {m["metric"]: m for m in job["metrics"]}
        auroc = by_name["auroc"]
        assert auroc["outcome"] == "regression" and auroc["gated"]
        assert auroc["candidate"] == pytest.approx(0.5)  # constant scores
        assert auroc["change"] < -0.02
        assert by_name["pixel_auroc"]["outcome"] == "regression"
    assert any("auroc" in r for r in verdict["reasons"])
    md = to_markdown(compare_paths(runs["baseline"], runs["degraded"]))
    assert "REGRESSION" in md and "| auroc |" not in md.split("### Changes")[0]


def test_changed_parameters_are_reported_as_missing_and_extra(runs, capsys):
    cmp = compare_paths(runs["baseline"], runs["changed_params"])
    assert len(cmp.missing) == 2 and len(cmp.extra) == 2 and not cmp.jobs
    assert all("reduce: 'max' -> 'mean'" in u.note for u in cmp.missing)
    assert cmp.exit_code == EXIT_REGRESSION
    assert bench(["compare", str(runs["baseline"]), str(runs["changed_params"])]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "extra" in out


def test_missing_and_extra_jobs_are_reported(runs):
    base = records(runs["baseline"])
    only_seed0 = [r for r in base if r["seed"] == 0]
    cmp = compare_records(base, only_seed0)
    assert [u.job.seed for u in cmp.missing] == [1] and not cmp.extra
    assert cmp.verdict == "regression"  # by default a missing job fails the gate
    assert "1 baseline job(s) missing" in " ".join(cmp.reasons())
    warn = compare_records(base, only_seed0, CompareSettings(missing_jobs="warn"))
    assert warn.verdict == "pass" and len(warn.missing) == 1
    assert "Missing from the candidate" in to_markdown(warn)
    extra = compare_records(only_seed0, base)
    assert extra.verdict == "pass" and [u.job.seed for u in extra.extra] == [1]
    assert to_json(extra)["extra"][0]["seed"] == 1


def test_failed_candidate_job_is_a_regression(runs):
    base = records(runs["baseline"])
    cand = copy.deepcopy(base)
    cand[0].update(status="failed", error="RuntimeError: boom", metrics=None)
    cmp = compare_records(base, cand)
    assert cmp.exit_code == EXIT_REGRESSION and len(cmp.failed_jobs) == 1
    assert "boom" in cmp.reasons()[0]
    fixed = compare_records(cand, base)
    assert fixed.verdict == "pass"
    assert [j.outcome for j in fixed.jobs].count("improvement") == 1


# -- timing ----------------------------------------------------------------------------------


def _slower(recs: list[dict], factor: float, device: str | None = None) -> list[dict]:
    out = copy.deepcopy(recs)
    for r in out:
        r["timing"]["fit_s"] = 10.0 * factor
        r["timing"]["ms_per_image"] = 20.0 * factor
        if device is not None:
            r["device_name"] = device
    return out


def test_timing_gated_only_on_the_same_device(runs):
    base = _slower(records(runs["baseline"]), 1.0)
    same = compare_records(base, _slower(base, 3.0))
    assert same.verdict == "regression"
    fit = next(m for m in same.jobs[0].metrics if m.metric == "fit_s")
    assert fit.gated and fit.outcome == "regression" and fit.change == pytest.approx(3.0)
    faster = compare_records(base, _slower(base, 0.5))
    assert faster.verdict == "pass"
    assert next(m for m in faster.jobs[0].metrics if m.metric == "fit_s").outcome == "improvement"
    # Another device: the 3x is reported (outcome, factor) but never gated.
    other = compare_records(base, _slower(base, 3.0, device="NVIDIA H100 80GB HBM3"))
    assert other.verdict == "pass"
    fit = next(m for m in other.jobs[0].metrics if m.metric == "fit_s")
    assert not fit.gated and fit.outcome == "regression" and "different devices" in fit.note
    assert other.counts()["not_gated_changes"] >= 2
    # The timing gate switched off: same device, still not gated.
    off = compare_records(base, _slower(base, 3.0), CompareSettings(gate_timing=False))
    assert off.verdict == "pass"


def test_tiny_time_changes_are_noise_not_regressions(runs):
    base = records(runs["baseline"])
    cand = copy.deepcopy(base)
    for b, c in zip(base, cand, strict=True):
        b["timing"]["fit_s"], c["timing"]["fit_s"] = 0.01, 0.05  # 5x, but 40 ms
    fit = next(m for m in compare_records(base, cand).jobs[0].metrics if m.metric == "fit_s")
    assert fit.outcome == "pass" and fit.change == pytest.approx(5.0)


# -- tolerances ------------------------------------------------------------------------------


def _auroc_pair(base: float, cand: float) -> tuple[list[dict], list[dict]]:
    rec = {"method": "m", "params_hash": "0123", "dataset": "d", "seed": 0, "status": "ok",
           "device_name": "cpu", "metrics": {"auroc": base}, "timing": {}}  # fmt: skip
    return [rec], [{**rec, "metrics": {"auroc": cand}}]


@pytest.mark.parametrize(
    ("base", "cand", "outcome"),
    [(0.80, 0.78, "pass"), (0.80, 0.779, "regression"), (0.80, 0.83, "improvement")],
)
def test_default_quality_tolerance_is_0_02_absolute(base, cand, outcome):
    (job,) = compare_records(*_auroc_pair(base, cand)).jobs
    assert job.metrics[0].outcome == outcome


def test_tolerances_from_bench_toml(runs, tmp_path, monkeypatch):
    (tmp_path / "bench.toml").write_text(
        "[compare]\nquality_abs = 1.0\ntime_ratio = 4.0\n"
        "[compare.metrics]\nf1 = { gate = false }\nfit_s = { tolerance = 2.0 }\n"
    )
    settings = load_settings(cwd=tmp_path)
    assert settings.rule("auroc").tolerance == 1.0 and settings.rule("ms_per_image").tolerance == 4
    assert settings.rule("fit_s").tolerance == 2.0 and not settings.rule("f1").gate
    assert str(tmp_path / "bench.toml") in settings.source
    # Any quality drop is within 1.0: the degraded run now passes, from the CLI too.
    monkeypatch.chdir(tmp_path)
    assert bench(["compare", str(runs["baseline"]), str(runs["degraded"])]) == EXIT_PASS


def test_tolerances_from_pyproject_and_bad_values(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.bench.compare]\nmemory_ratio = 2.0\n'
        '[tool.bench.compare.metrics.my_error]\ndirection = "lower"\n'
    )
    settings = load_settings(cwd=tmp_path)
    assert settings.rule("peak_mem_mb").tolerance == 2.0
    assert settings.rule("my_error").direction == "lower"
    assert load_settings(cwd=tmp_path / "nowhere") == CompareSettings()
    bad = tmp_path / "bad.toml"
    bad.write_text("[compare]\ntime_ratio = 0.5\n")
    with pytest.raises(ConfigError, match=r"time_ratio: expected a number >= 1"):
        load_settings(bad)
    bad.write_text("[compare]\nquality_ab = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key.*quality_ab"):
        load_settings(bad)
    assert bench(["compare", "a", "b", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


# -- input and the reference update ----------------------------------------------------------


def test_bad_input_exits_2(runs, tmp_path, capsys):
    assert bench(["compare", str(tmp_path / "nope"), str(runs["rerun"])]) == 2
    # A folder holding two runs of the same jobs is ambiguous as a baseline.
    assert bench(["compare", str(runs["baseline"].parent), str(runs["rerun"])]) == 2
    assert "two records of meandiff" in capsys.readouterr().err


def test_update_makes_the_candidate_the_reference(runs, tmp_path):
    ref = tmp_path / "reference"
    assert bench(["compare", str(ref), str(runs["degraded"]), "--update"]) == 0
    assert len(list(ref.glob("jobs/*.json"))) == 2 and (ref / "records.csv").is_file()
    assert len(list(ref.glob("jobs/*.scores.csv"))) == 2 and (ref / "manifest.json").is_file()
    assert bench(["compare", str(ref), str(runs["degraded"])]) == EXIT_PASS
    assert bench(["compare", str(ref), str(runs["rerun"])]) == EXIT_PASS  # an improvement
    assert bench(["compare", str(ref), str(runs["baseline"]), "--update"]) == 0
    assert bench(["compare", str(ref), str(runs["degraded"])]) == EXIT_REGRESSION
    # The reference's records.csv is itself a valid baseline.
    assert bench(["compare", str(ref / "records.csv"), str(runs["rerun"])]) == EXIT_PASS
