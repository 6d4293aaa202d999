"""One job pipeline for ``bench run`` and ``bench speed``: the same record builder, job ids and
config hashes as before the two were merged, claims and resume for speed jobs, and speed jobs
through a launcher.

No timed assertions: timing blocks are compared by their keys, never by their values.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from bench.execution import runner
from bench.execution.ablate import expand_ablation, parse_grid
from bench.execution.config import JobsConfig, RunConfig, expand_jobs
from bench.execution.job import LatencyTiming, now
from bench.execution.speed import SpeedConfig, SweepTiming, run_speed, speed_job

CPU = torch.device("cpu")
# What a speed record and a run record of the same job differ in, by design: identity of the
# job and of its run (a speed job id includes kind and variant; the configs differ), when it
# ran, and how it was timed.
DESIGNED = {"job_id", "run_id", "config_hash", "started_at", "finished_at", "timing"}


def test_job_ids_and_config_hashes_are_those_of_before_the_merge() -> None:
    # Computed by the two separate pipelines (runner.py and speed.py before they shared one):
    # a job id names a finished job in every results folder, so it must never move.
    cfg = RunConfig(methods=["pca", "iforest"], seeds=[0, 7], preset="quick", device="cpu")
    ids = [j.job_id for j in expand_jobs(cfg, CPU)]
    assert ids == ["b6c1a71501372399", "3df9193cf426b9b1", "628258b8628f5584", "c699e25ed1e080f4"]
    other = RunConfig(
        methods=["pca"], seeds=[1], preset="paper", threshold="oracle", calibration_fraction=0.2,
        target_fpr=0.01, sets={"pca": {"contamination": "0.2"}},
    )  # fmt: skip
    assert [j.job_id for j in expand_jobs(other, CPU)] == ["a610b71395e9c66d"]
    assert (other.config_hash, cfg.config_hash) == ("3f10407df66e", "294d1b1d2363")
    quick = RunConfig(methods=["pca"], preset="quick", seeds=[0], device="cpu")
    ablation = expand_ablation(quick, parse_grid(["contamination=0.05,0.2"]), False, CPU)
    assert [j.job_id for j in ablation.jobs] == ["b6c1a71501372399", "8560fd1c39efd211"]
    speed = SpeedConfig(methods=["pca", "iforest"], preset="quick", device="cpu", seed=3, threads=2)
    jobs = [speed_job(speed, m, "base", {}, "quick", "synthetic", "cpu") for m in speed.methods]
    assert [j.job_id for j in jobs] == ["b916d07af7ee7f75", "669d97a1afd8a56f"]
    assert speed.config_hash == "ac0065f3a571"


def test_run_and_speed_configs_share_one_base_and_keep_their_fields(tmp_path: Path) -> None:
    run_cfg = RunConfig(methods=["pca"], data_root=tmp_path)
    speed_cfg = SpeedConfig(methods=["pca"], data_root=tmp_path)
    assert isinstance(run_cfg, JobsConfig) and isinstance(speed_cfg, JobsConfig)
    # The keys of a manifest's "config" (and so of its hash) are each command's own.
    common = {"methods", "datasets", "preset", "device", "sets", "data_root", "threads"}
    common |= {"threshold", "calibration_fraction", "target_fpr"}
    assert set(run_cfg.to_json()) == common | {"seeds", "timing_repeats", "timing_warmup"}
    speed_own = {"variants", "repeats", "warmup", "batches", "budget_s", "eval_images", "seed"}
    assert set(speed_cfg.to_json()) == common | speed_own | {"peak_tflops"}
    # Timing settings are not a run's identity; a speed run's hash holds all of its settings.
    assert RunConfig(methods=["pca"], threads=1, timing_repeats=9).config_hash == (
        RunConfig(methods=["pca"], threads=2).config_hash
    )
    assert SpeedConfig(methods=["pca"], repeats=9).config_hash != speed_cfg.config_hash
    assert speed_cfg.seeds == [0]
    # The data root names a job only where files are read: not for the generated sets.
    assert run_cfg.job_data_root("synthetic") is None
    assert speed_cfg.job_data_root("synthetic:carpet") is None
    assert run_cfg.job_data_root("mvtec:bottle") == str(tmp_path.resolve())
    assert RunConfig(methods=["pca"]).job_data_root("mvtec:bottle") is None


def test_timing_phases_travel_to_workers_and_timestamps_sort() -> None:
    cfg = SpeedConfig(methods=["pca"], batches=[1, 4], eval_images=12)
    sweep = pickle.loads(pickle.dumps(SweepTiming(cfg)))
    assert sweep == SweepTiming(cfg) and not sweep.records_local_launcher
    latency = LatencyTiming.of(RunConfig(methods=["pca"], timing_repeats=7, timing_warmup=0))
    assert pickle.loads(pickle.dumps(latency)) == LatencyTiming(7, 0)
    assert latency.records_local_launcher
    first, second = now(), now()
    assert first <= second and first.endswith("+00:00") and len(first.split(".")[1]) == 9


def _records(outcome: runner.RunOutcome) -> dict[str, dict]:
    """method -> its record as stored (NaN as null, tuples as lists)."""
    assert not outcome.failed, [r.get("error") for r in outcome.failed]
    jobs = outcome.run_dir / "jobs"
    return {
        r["method"]: json.loads((jobs / f"{r['job_id']}.json").read_text()) for r in outcome.records
    }


@pytest.fixture
def settings(meandiff: str) -> dict:
    return dict(methods=[meandiff, "pca"], preset="quick", device="cpu", threads=1)


def test_a_speed_record_is_the_run_record_of_its_job_with_other_timing(
    tmp_path: Path, settings: dict
) -> None:
    run_cfg = RunConfig(**settings, seeds=[3], timing_repeats=1, timing_warmup=0)
    speed_cfg = SpeedConfig(**settings, seed=3, repeats=2, warmup=0, batches=[1, 4])
    ran = _records(runner.run(run_cfg, tmp_path, "run"))
    timed = _records(run_speed(speed_cfg, tmp_path, "speed"))
    assert set(ran) == set(timed) == set(settings["methods"])
    for method, rec in ran.items():
        fast = timed[method]
        assert set(fast) - set(rec) == {"kind", "variant", "speed"}
        assert set(rec) - set(fast) == {"launcher"}  # a speed record never said where it ran
        assert fast["kind"] == "speed" and fast["variant"] == "base"
        same = (set(rec) & set(fast)) - DESIGNED
        assert {"params", "dataset", "seed", "flags", "metrics", "git_commit"} <= same
        assert {k: fast[k] for k in same} == {k: rec[k] for k in same}, method
        # The speed timing block holds every run timing key, plus the batch sweep's.
        assert set(rec["timing"]) < set(fast["timing"])
        assert [b["batch"] for b in fast["speed"]["batches"]] == [1, 4]
        for side in ("scores.csv", "calibration.csv"):
            run_file = tmp_path / "run" / "jobs" / f"{rec['job_id']}.{side}"
            speed_file = tmp_path / "speed" / "jobs" / f"{fast['job_id']}.{side}"
            assert run_file.read_text() == speed_file.read_text()


def test_speed_measures_again_by_default_and_resumes_when_asked(
    tmp_path: Path, settings: dict
) -> None:
    cfg = SpeedConfig(**settings, repeats=1, warmup=0, batches=[1])
    first = _records(run_speed(cfg, tmp_path, "s", force=False))
    stored = {p: p.read_bytes() for p in (tmp_path / "s" / "jobs").iterdir()}
    again = run_speed(cfg, tmp_path, "s", force=False)
    assert again.skipped == 2 and [r["job_id"] for r in again.records] == [
        first[m]["job_id"] for m in cfg.methods
    ]
    assert {p: p.read_bytes() for p in stored} == stored  # nothing measured or written again
    measured = run_speed(cfg, tmp_path, "s")
    assert measured.skipped == 0
    for method, rec in _records(measured).items():
        assert rec["started_at"] > first[method]["finished_at"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["kind"] == "speed" and len(manifest["earlier_configs"]) == 2
    assert sorted(manifest["jobs"]) == sorted(r["job_id"] for r in first.values())
    assert "launcher" not in manifest  # only a launched speed run names one


def test_a_failing_speed_job_is_a_failed_record_and_the_rest_go_on(
    tmp_path: Path, meandiff: str
) -> None:
    cfg = SpeedConfig(
        methods=[meandiff, "pca"], sets={meandiff: {"fail": "true"}}, preset="quick",
        device="cpu", threads=1, repeats=1, warmup=0, batches=[1],
    )  # fmt: skip
    ended: list[str] = []
    outcome = run_speed(cfg, tmp_path, "f", on_job_end=lambda r: ended.append(r["status"]))
    broken, fine = outcome.records
    assert ended == ["failed", "ok"] and outcome.failed == [broken]
    assert broken["kind"] == "speed" and broken["variant"] == "base"
    assert broken["error_kind"] == "crash" and "asked to fail" in broken["error"]
    assert "launcher" not in broken and "speed" not in broken and fine["status"] == "ok"


def test_speed_jobs_run_through_a_launcher_with_the_same_numbers(
    tmp_path: Path, meandiff: str
) -> None:
    from bench.execution.launchers import LauncherOptions, make_launcher

    # Image scores only: pixel metrics import anomalib, seconds per worker process.
    cfg = SpeedConfig(
        methods=[meandiff, "pca"], sets={meandiff: {"maps": "false"}}, preset="quick",
        device="cpu", threads=1, repeats=1, warmup=0, batches=[1],
    )  # fmt: skip
    here = _records(run_speed(cfg, tmp_path, "here"))
    launcher = make_launcher(LauncherOptions(workers=2))
    assert launcher is not None
    try:
        outcome = run_speed(cfg, tmp_path, "there", launcher=launcher)
    finally:
        launcher.close()
    there = _records(outcome)
    assert [r["method"] for r in outcome.records] == cfg.methods  # in job order
    for method, rec in there.items():
        assert rec["launcher"]["name"] == "local" and "worker" in rec["launcher"]
        assert rec["job_id"] == here[method]["job_id"]
        for key in ("metrics", "thresholds", "params", "flags", "kind", "variant", "n_test"):
            assert rec[key] == here[method][key], (method, key)
    manifest = json.loads((tmp_path / "there" / "manifest.json").read_text())
    assert manifest["launcher"] == {"name": "local", "workers": 2}
