"""The command line end to end: run, resume, force, failures, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import bench_output as bench


def test_run_writes_records_and_resumes(tmp_path, capsys, meandiff):
    args = [
        "run",
        "--methods",
        meandiff,
        "--datasets",
        "synthetic",
        "--seeds",
        "0,1",
        "--results-dir",
        str(tmp_path),
        "--timing-repeats",
        "2",
    ]
    code, out, err = bench(args, capsys)
    assert code == 0, err
    assert "radar-bench results" in out
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1] and manifest["preset"] == "quick"
    assert {"torch", "diffusers", "scikit-learn"} <= set(manifest["environment"]["packages"])
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("jobs/*.json"))]
    assert len(records) == 2
    for rec in records:
        assert rec["status"] == "ok", rec.get("error")
        assert rec["preset"] == "quick" and "preset:quick" in rec["flags"]
        assert rec["params"]["image_size"] == 24 and rec["image_size"] == [24, 24]
        assert 0.5 < rec["metrics"]["auroc"] <= 1.0
        assert 0.5 < rec["metrics"]["pixel_auroc"] <= 1.0
        assert rec["timing"]["ms_per_image"] > 0 and rec["timing"]["fit_s"] >= 0
        assert rec["device_name"] and rec["config_hash"] == manifest["config_hash"]
        scores = pd.read_csv(run_dir / "jobs" / f"{rec['job_id']}.scores.csv")
        assert len(scores) == rec["n_test"] and set(scores["label"]) == {0, 1}
    assert len(pd.read_csv(run_dir / "records.csv")) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}

    code, out, _ = bench(args, capsys)
    assert code == 0 and "2 already done, skipped" in out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}

    code, out, _ = bench([*args, "--force"], capsys)
    assert code == 0 and "skipped" not in out
    assert stamps != {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}


def test_failed_job_is_recorded_and_grid_goes_on(tmp_path, capsys, meandiff):
    code, _, err = bench(
        [
            "run",
            "--methods",
            meandiff,
            "--datasets",
            "synthetic",
            "--seeds",
            "0,1",
            "--set",
            "meandiff.fail=true",
            "--results-dir",
            str(tmp_path),
            "--timing-repeats",
            "1",
        ],
        capsys,
    )
    assert code == 1
    assert err.count("RuntimeError: asked to fail") >= 2
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*/jobs/*.json")]
    assert [r["status"] for r in records] == ["failed", "failed"]


def test_same_seed_gives_identical_records(tmp_path, capsys, meandiff):
    common = ["run", "--methods", meandiff, "--seeds", "3", "--timing-repeats", "1"]
    for name in ("a", "b"):
        assert bench([*common, "--results-dir", str(tmp_path / name)], capsys)[0] == 0
    a, b = (json.loads(next((tmp_path / n).glob("*/jobs/*.json")).read_text()) for n in "ab")
    assert a["job_id"] == b["job_id"] and a["metrics"] == b["metrics"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--methods", "radr"], "unknown method 'radr' (did you mean 'radar'?)"),
        (["run", "--datasets", "mvtek:tile"], "unknown dataset"),
        (["run", "--set", "radar.patch_sise=14"], "did you mean 'patch_size'?"),
        (["run", "--set", "radar.t=abc"], "radar.t='abc': expected an integer"),
        (["run", "--set", "radar.t=5000"], "radar.t must be"),
        (["run", "--seeds", "x"], "--seeds 'x'"),
        (["run", "--preset", "fast"], "unknown preset 'fast'"),
        # typer's own usage errors (typer >= 0.29 vendors click): one line too, no traceback
        (["run", "--nosuch"], "bench run: No such option: --nosuch (see --help)"),
        (["run", "--threads", "two"], "Invalid value for '--threads'"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["run", "--datasets", "mvtec:tile"], "--data-root"),
        (
            ["run", "--datasets", "mvtec:tile", "--data-root", "/nonexistent/mvtec"],
            "/nonexistent/mvtec",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", *argv, "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert not list(tmp_path.iterdir()), "nothing is written before the input is valid"
