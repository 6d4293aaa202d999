"""The Python API: the same records as ``bench run``, runnable documentation, clear errors."""

from __future__ import annotations

import doctest
import runpy
import sys
from pathlib import Path

import pytest

import bench
from bench import api
from bench.store.runs import RunStore
from bench.util.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_docstring_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # they read the committed CPU smoke reference
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_example_script_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    monkeypatch_argv = [str(ROOT / "examples/from_python.py"), str(tmp_path)]
    old, sys.argv = sys.argv, monkeypatch_argv
    try:
        runpy.run_path(monkeypatch_argv[0], run_name="__main__")
    finally:
        sys.argv = old
    out = capsys.readouterr().out
    assert "verdict: pass (4 jobs compared)" in out
    assert (tmp_path / "report" / "index.html").is_file()


def test_run_returns_the_stored_records_and_resumes(meandiff, tmp_path: Path) -> None:
    first = bench.run(
        meandiff,
        "synthetic",
        [0, 1],
        preset="quick",
        results_dir=tmp_path,
        run_id="api",
        sets={"meandiff.image_size": 16},
    )
    stored = {r["job_id"]: r for r in RunStore(tmp_path / "api").records()}
    assert sorted(first["job_id"]) == sorted(stored)
    for _, row in first.iterrows():
        record = stored[row["job_id"]]
        assert row["metrics.auroc"] == pytest.approx(record["metrics"]["auroc"])
        assert row["params.image_size"] == record["params"]["image_size"] == 16
    again = bench.run(
        meandiff,
        "synthetic",
        "0,1",
        preset="quick",
        results_dir=tmp_path,
        run_id="api",
        sets=["meandiff.image_size=16"],
    )
    # resumed: nothing recomputed, the same finish times
    assert dict(zip(again["job_id"], again["finished_at"], strict=True)) == dict(
        zip(first["job_id"], first["finished_at"], strict=True)
    )


def test_bad_arguments_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--seeds"):
        api.run_config("iforest", seeds="zero")
    with pytest.raises(ConfigError, match="--set"):
        api.run_config("iforest", sets={"radar.t": 1})
    with pytest.raises(ConfigError, match="--run-id"):
        bench.run("iforest", results_dir=tmp_path, run_id="../escape")


def test_load_runs_keeps_one_row_per_job_across_sources() -> None:
    smoke = ROOT / "results/reference/cpu-smoke"
    both = bench.load_runs(smoke, smoke / "records.csv")
    assert len(both) == len(bench.load_runs(smoke)) == 6
