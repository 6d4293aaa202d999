from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench.store.runs import RunStore, load_results
from bench.util.errors import DataError


def _record(job_id: str, status: str = "ok", f1: float = 0.5) -> dict:
    return {
        "job_id": job_id, "status": status, "method": "m", "dataset": "d", "seed": 0,
        "metrics": {"f1": f1},
    }  # fmt: skip


def test_records_round_trip_and_flatten(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_record(_record("a", f1=0.25))
    store.write_record(_record("b", status="failed", f1=float("nan")))
    assert store.is_done("a") and not store.is_done("b") and not store.is_done("c")
    frame = store.frame()
    assert sorted(frame["job_id"]) == ["a", "b"]
    assert frame.set_index("job_id").loc["a", "metrics.f1"] == 0.25
    # NaN is stored as JSON null so every reader can parse it
    raw = json.loads((tmp_path / "run/jobs/b.json").read_text())
    assert raw["metrics"]["f1"] is None
    csv = pd.read_csv(store.export_csv())
    assert len(csv) == 2
    assert math.isnan(csv.set_index("job_id").loc["b", "metrics.f1"])


def test_rewrite_replaces_and_leaves_no_temp_files(tmp_path):
    store = RunStore(tmp_path)
    store.write_record(_record("a", f1=0.1))
    store.write_record(_record("a", f1=0.9))
    assert store.read_record("a")["metrics"]["f1"] == 0.9
    assert [p.name for p in store.jobs_dir.iterdir()] == ["a.json"]


def test_load_results_accepts_run_folder_parent_and_files(tmp_path):
    for run in ("r1", "r2"):
        RunStore(tmp_path / run).write_record(_record(run))
    assert len(load_results(tmp_path / "r1")) == 1
    assert len(load_results(tmp_path)) == 2
    assert len(load_results(tmp_path / "r1/jobs/r1.json")) == 1
    with pytest.raises(DataError, match="no such results"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no job records"):
        load_results(tmp_path / "empty")
