"""The launchers: one grid, identical records from local, --workers, Ray and SLURM (submitit's
local executor); concurrent writers; a killed worker; the one-line errors of the flags."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from helpers import bench_exit_code as bench

from bench.store.runs import RunStore

# A 4-job grid of the test-only method, image scores only (no pixel metrics: those import
# anomalib, seconds per worker process), one thread per job so that two run at once.
GRID = [
    "run", "--methods", "meandiff", "--datasets", "synthetic", "--seeds", "0-3",
    "--set", "meandiff.maps=false", "--threads", "1", "--timing-repeats", "1",
]  # fmt: skip
# What must be equal number for number, whichever launcher ran the job.
RESULT_KEYS = ("metrics", "metrics_ci", "per_defect", "thresholds", "threshold", "n_test")


def results(run_dir: Path) -> dict[str, tuple[str, str]]:
    """job id -> (the numbers of its record, its per-image scores file)."""
    out = {}
    for path in sorted((run_dir / "jobs").glob("*.json")):
        rec = json.loads(path.read_text())
        assert rec["status"] == "ok", rec.get("error")
        numbers = json.dumps({k: rec[k] for k in RESULT_KEYS}, sort_keys=True)
        out[rec["job_id"]] = (numbers, path.with_suffix(".scores.csv").read_text())
    return out


def launchers(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text())["launcher"] for p in sorted(run_dir.glob("jobs/*.json"))]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, tuple[str, str]]:
    from helpers import register_meandiff

    register_meandiff()
    root = tmp_path_factory.mktemp("baseline")
    assert bench([*GRID, "--results-dir", str(root), "--run-id", "local"]) == 0
    found = results(root / "local")
    assert len(found) == 4
    return found


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_records(tmp_path, baseline, ray_instance):
    assert bench([*GRID, "--results-dir", str(tmp_path), "--run-id", "r", "--launcher", "ray"]) == 0
    assert results(tmp_path / "r") == baseline
    where = launchers(tmp_path / "r")
    assert {w["name"] for w in where} == {"ray"} and all(w["ray_node"] for w in where)
    assert ray_instance.is_initialized()  # a Ray session the launcher did not start stays up


def test_ray_resources_follow_the_device():
    pytest.importorskip("ray")
    from bench.execution.config import JobSpec, RunConfig
    from bench.execution.launchers.common import JobTask
    from bench.execution.launchers.ray_launcher import task_resources

    cfg = RunConfig(methods=["radar", "pca"], threads=3)
    spec = JobSpec("radar", {}, "quick", "synthetic", 0, "cuda")
    task = JobTask(spec=spec, cfg=cfg, run_dir="/x", run_id="r", device="cuda")
    assert task_resources(task) == {"num_gpus": 1, "num_cpus": 1}
    cpu = JobTask(spec=spec, cfg=cfg, run_dir="/x", run_id="r", device="cpu")
    assert task_resources(cpu) == {"num_cpus": 3}
    # scikit-learn methods never hold a GPU, even in a CUDA run.
    pca = JobSpec("pca", {}, "quick", "synthetic", 0, "cuda")
    pca_task = JobTask(spec=pca, cfg=cfg, run_dir="/x", run_id="r", device="cuda")
    assert task_resources(pca_task) == {"num_cpus": 3}


def test_slurm_local_gives_the_same_records_and_resubmits_only_missing(tmp_path, baseline, capsys):
    pytest.importorskip("submitit")
    from bench.execution.launchers.slurm import read_submissions
    from bench.execution.status import run_status

    args = [*GRID, "--results-dir", str(tmp_path), "--run-id", "s", "--launcher", "slurm"]
    args += ["--slurm-cluster", "local", "--slurm-time", "10"]
    assert bench(args) == 0
    run_dir = tmp_path / "s"
    assert results(run_dir) == baseline
    first = read_submissions(run_dir)
    assert len(first) == 4 and len({e["slurm_job_id"] for e in first.values()}) == 4
    for rec in (json.loads(p.read_text()) for p in run_dir.glob("jobs/*.json")):
        assert rec["launcher"]["slurm_job_id"] == first[rec["job_id"]]["slurm_job_id"]
        assert Path(first[rec["job_id"]]["stdout"]).is_file()  # logs in the run folder
    capsys.readouterr()

    # One record lost: the rerun submits that job only; --no-wait returns at once and
    # bench status follows the job until it is done.
    lost = sorted(first)[0]
    (run_dir / "jobs" / f"{lost}.json").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}
    assert bench([*args, "--no-wait"]) == 0
    out = capsys.readouterr().out
    assert "submitted 1 job(s), not waiting" in out and "bench status" in out
    assert json.loads((run_dir / "manifest.json").read_text())["finished_at"] is None
    again = read_submissions(run_dir)
    changed = [k for k in again if again[k]["slurm_job_id"] != first[k]["slurm_job_id"]]
    assert changed == [lost]
    deadline = time.monotonic() + 120
    while run_status(run_dir).counts["done"] < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_status(run_dir).counts == {"done": 4, "pending": 0, "running": 0, "failed": 0}
    assert bench(["status", str(run_dir)]) == 0
    assert "launcher slurm" in capsys.readouterr().out
    assert results(run_dir) == baseline
    after = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}
    assert {k: v for k, v in after.items() if k in stamps} == stamps


# -- the store under concurrency --------------------------------------------------------------


def _writer(run_dir: str, worker: int, n: int, go) -> None:
    store = RunStore(Path(run_dir))
    go.wait()
    for i in range(n):
        job_id = f"w{worker}-{i:03d}"
        with store.claim(job_id) as mine:
            assert mine
            store.write_record(
                {"job_id": job_id, "status": "ok", "method": "m", "dataset": "d", "seed": i,
                 "metrics": {}, "payload": "x" * 4000}
            )  # fmt: skip

        def add(manifest: dict | None, job_id: str = job_id) -> dict:
            manifest = manifest or {"run_id": "writers", "config_hash": "h"}
            return {**manifest, "jobs": [*manifest.get("jobs", []), job_id]}

        store.update_manifest(add)  # read-modify-write under the run lock


def test_eight_writers_lose_and_corrupt_nothing(tmp_path):
    # fork: the writers need only the store, not a fresh interpreter importing torch (spawn)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    go = ctx.Event()
    n = 25
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, n, go)) for w in range(8)]
    for p in procs:
        p.start()
    go.set()  # all at once
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    store = RunStore(tmp_path)
    records = store.records()  # every file parses (an unreadable one would be dropped)
    assert len(records) == len(list(tmp_path.glob("jobs/*.json"))) == 8 * n
    assert all(r["payload"] == "x" * 4000 for r in records)
    assert sorted(store.read_manifest()["jobs"]) == sorted(r["job_id"] for r in records)
    assert not list(tmp_path.glob("jobs/.*.tmp"))  # no temporary file left behind


# -- --workers, and a worker killed mid-grid ----------------------------------------------------


def test_workers_give_the_same_records_and_a_killed_one_loses_only_its_job(
    tmp_path, baseline, monkeypatch, capsys
):
    """--workers 2 on the 4-job grid while the worker holding seed 1 is SIGKILLed: the other
    three records are those of the in-process run; rerunning computes seed 1 only."""
    trace, gate = tmp_path / "trace.txt", tmp_path / "never"
    monkeypatch.setenv("MEANDIFF_TRACE", str(trace))  # "seed pid" per fit
    monkeypatch.setenv("MEANDIFF_SLEEP_SEED", "1")  # seed 1 waits for the gate ...
    monkeypatch.setenv("MEANDIFF_GATE", str(gate))  # ... which never opens: kill its worker
    run_dir = tmp_path / "k"
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            lines = trace.read_text().split("\n") if trace.exists() else []
            held = [int(line.split()[1]) for line in lines if line.startswith("1 ")]
            if held and len(list(run_dir.glob("jobs/*.json"))) == 3:
                os.kill(held[0], signal.SIGKILL)
                killed.append(held[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    args = [*GRID, "--results-dir", str(tmp_path), "--run-id", "k"]
    code = bench([*args, "--workers", "2"])
    thread.join()
    out, err = capsys.readouterr()
    assert killed and code == 1 and "a worker process died" in err
    assert out.count("ok meandiff · synthetic · seed") == 3  # a progress line per finished job
    workers = launchers(run_dir)
    assert len(workers) == 3 and {w["name"] for w in workers} == {"local"}
    assert {w["worker"] for w in workers} <= {0, 1} and all(
        w["pid"] != os.getpid() for w in workers
    )
    # The killed worker's own job is the one lost (the worker may have finished another job
    # first: which worker takes which job depends on how fast each one starts).
    assert sorted(r["seed"] for r in RunStore(run_dir).records()) == [0, 2, 3]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["launcher"] == {"name": "local", "workers": 2}

    from bench.execution.status import run_status

    assert run_status(run_dir).counts == {"done": 3, "pending": 1, "running": 0, "failed": 0}

    stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}
    monkeypatch.delenv("MEANDIFF_GATE")
    fits_before = len(trace.read_text().split())
    assert bench(args) == 0
    new_fits = trace.read_text().split()[fits_before:]
    assert new_fits[0::2] == ["1"]  # only the job that was lost ran again
    assert results(run_dir) == baseline  # number for number, workers or not
    after = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*.json")}
    assert {k: after[k] for k in stamps} == stamps


# -- one-line errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "--workers 0: expected a positive integer"),
        (["--launcher", "bogus"], "unknown --launcher 'bogus'; valid: local, ray, slurm"),
        (["--launcher", "slurm"], "--launcher slurm needs --slurm-partition"),
        (["--launcher", "ray", "--workers", "2"], "--workers 2 applies to --launcher local"),
        (["--no-wait"], "--no-wait applies to --launcher slurm"),
        (
            ["--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "0"],
            "--slurm-time 0",
        ),
    ],
)
def test_flag_mistakes_are_one_line_errors(tmp_path, capsys, meandiff, extra, message):
    code = bench([*GRID, "--results-dir", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/jobs/*.json"))


@pytest.mark.parametrize(("launcher", "module"), [("ray", "ray"), ("slurm", "submitit")])
def test_missing_package_says_how_to_install_it(
    tmp_path, capsys, meandiff, monkeypatch, launcher, module
):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    extra = ["--slurm-cluster", "local"] if launcher == "slurm" else []
    code = bench([*GRID, "--results-dir", str(tmp_path), "--launcher", launcher, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    install = f'pip install "radar-bench[{launcher}]"'
    assert err == f"error: --launcher {launcher} needs {module}: {install}"


# -- what a worker process imports ---------------------------------------------------------------


def test_tasks_name_only_the_builtin_modules_their_methods_need(meandiff):
    from bench.execution.launchers.common import needed_modules, pack_methods

    # meandiff travels inside the task (registered at run time), pca's module is imported
    assert needed_modules(["meandiff", "pca", "iforest"]) == ("bench.methods.classical",)
    assert pack_methods(["pca"]) is None and pack_methods(["meandiff", "pca"]) is not None


def test_worker_registry_loads_the_rest_only_when_asked(monkeypatch):
    from helpers import MeanDiff, MeanDiffParams

    from bench.methods import registry

    imported: list[str] = []

    def fake_module(name: str, method: str) -> None:
        module = types.ModuleType(name)

        def method_entries() -> list[registry.MethodEntry]:
            imported.append(name)
            return [registry.MethodEntry(method, MeanDiffParams, MeanDiff, "fake")]

        module.method_entries = method_entries  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)

    fake_module("fake_a", "a")
    fake_module("fake_b", "b")
    for attr, value in [
        ("BUILTIN_MODULES", ("fake_a", "fake_b")),
        ("_METHODS", {}),
        ("_BUILTINS_LOADED", False),
        ("_PARTIAL", False),
        ("_LOADED_MODULES", set()),
        ("_BUILTIN_ORIGIN", {}),
    ]:
        monkeypatch.setattr(registry, attr, value)
    registry.load_builtins_only(["fake_b"])
    assert sorted(registry.methods()) == ["b"] and imported == ["fake_b"]
    assert registry.get_method("a").name == "a" and imported == ["fake_b", "fake_a"]
    assert registry.builtin_module("a") == "fake_a" and sorted(registry.methods()) == ["a", "b"]


def test_ablate_through_workers_gives_the_in_process_records(tmp_path, meandiff):
    """bench ablate takes the launchers too: the same ablation records, varied values included."""
    grid = [
        "ablate", "--method", "meandiff", "--datasets", "synthetic", "--seeds", "0,1",
        "--grid", "reduce=max,mean", "--set", "meandiff.maps=false", "--threads", "1",
        "--timing-repeats", "1", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    assert bench([*grid, "--run-id", "here"]) == 0
    assert bench([*grid, "--run-id", "workers", "--workers", "2"]) == 0
    here, workers = results(tmp_path / "here"), results(tmp_path / "workers")
    assert len(here) == 4 and workers == here

    def varied(run: str) -> dict[str, object]:
        return {
            rec["job_id"]: rec["varied"]
            for rec in map(json.loads, map(Path.read_text, (tmp_path / run).glob("jobs/*.json")))
        }

    assert varied("workers") == varied("here")
    assert {w["worker"] for w in launchers(tmp_path / "workers")} <= {0, 1}
    manifest = json.loads((tmp_path / "workers" / "manifest.json").read_text())
    assert manifest["launcher"] == {"name": "local", "workers": 2} and "ablation" in manifest
