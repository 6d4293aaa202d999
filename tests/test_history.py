"""``bench history`` and named runs: what was run, when, at which commit, with what result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.execution import runner
from bench.execution.config import RunConfig
from bench.execution.provenance import git_commit
from bench.store.history import history_frame, resolve_run, run_folders
from bench.util.errors import DataError


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Three meandiff runs: "before" (seeds 0, 1), "after" (same config), and an unnamed one."""
    from helpers import register_meandiff

    register_meandiff()
    root = tmp_path_factory.mktemp("results")
    cfg = RunConfig(
        methods=["meandiff"], datasets=["synthetic"], seeds=[0, 1], device="cpu", threads=1,
        timing_repeats=1,
    )  # fmt: skip
    runner.run(cfg, results_dir=root / "runs", name="before")
    runner.run(cfg, results_dir=root / "runs", name="after")
    single = RunConfig(
        methods=["meandiff"], datasets=["synthetic"], seeds=[0], device="cpu", threads=1,
        timing_repeats=1,
    )  # fmt: skip
    runner.run(single, results_dir=root / "runs", run_id="plain")
    return root


def test_named_runs_get_their_own_folder_and_manifest_name(results):
    folders = {p.name for p in run_folders(results)}
    assert "plain" in folders
    named = sorted(f for f in folders if f != "plain")
    # Same config, two names: two folders (the second did not resume the first).
    assert [f.rsplit("-", 1)[0] for f in named] == ["after", "before"]
    assert named[0].rsplit("-", 1)[1] == named[1].rsplit("-", 1)[1]  # the config hash
    manifest = json.loads((results / "runs" / named[1] / "manifest.json").read_text())
    assert manifest["name"] == "before" and manifest["git_commit"] == git_commit(Path.cwd())


def test_history_lists_runs_oldest_first_with_seed_means(results):
    frame = history_frame(results)
    assert list(frame["run"]) == ["before", "after", "plain"]
    before = frame.iloc[0]
    assert before["seeds"] == "0,1" and before["ok"] == "2/2"
    assert before["method"].startswith("meandiff (quick) #")
    recs = [json.loads(p.read_text()) for p in (Path(before["path"]) / "jobs").glob("*.json")]
    assert before["auroc"] == pytest.approx(sum(r["metrics"]["auroc"] for r in recs) / 2)
    assert before["ms_per_image"] > 0 and 0.5 < before["pixel_auroc"] <= 1
    # Deterministic: the same config under another name has the same quality.
    assert frame.iloc[1]["auroc"] == before["auroc"]
    assert list(history_frame(results, last=1)["run"]) == ["plain"]
    assert list(history_frame(results, name="after")["run"]) == ["after"]
    assert history_frame(results, method="radar").empty


def test_resolve_run_by_name_or_id(results, tmp_path):
    assert resolve_run("before", results).name.startswith("before-")
    assert resolve_run("plain", results) == results / "runs" / "plain"
    assert resolve_run(str(tmp_path), results) == tmp_path  # an existing path wins
    with pytest.raises(DataError, match="no run of that name or id"):
        resolve_run("nope", results)


def test_history_and_compare_by_name_from_the_cli(results, capsys, monkeypatch):
    def bench(*argv: str) -> int:
        monkeypatch.setattr(sys, "argv", ["bench", *argv])
        with pytest.raises(SystemExit) as done:
            cli.main()
        return int(done.value.code or 0)

    assert bench("history", str(results), "--metrics", "auroc,fit_s") == 0
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "plain" in out and "fit_s" in out
    # Two names of one config: the rerun passes the gate; "plain" lacks seed 1 (missing).
    root = ["--results-root", str(results)]
    assert bench("compare", "before", "after", *root) == 0
    assert bench("compare", "before", "plain", *root) == 1
    assert bench("compare", "before", "plain", "--allow-missing", *root) == 0
    (results / "empty").mkdir()
    assert bench("history", str(results / "empty")) == 0
    assert "no runs under" in capsys.readouterr().out
    # A folder that is not there is bad input (issue #24): one line, exit 2.
    assert bench("history", str(results / "nonexistent")) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "nonexistent: no such folder" in line
