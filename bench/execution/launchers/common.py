"""What every launcher shares: the picklable job task, its entry point, and crash records.

A launcher (worker processes, Ray, SLURM) never runs a method itself: it ships a
:class:`JobTask` to wherever the job runs and calls :func:`execute_job` there. That function
does what the in-process runner (:class:`bench.execution.runner.JobLoop`) does for one job: it
claims the job in the run folder (a per-job file lock, so two launchers sharing a folder never
compute a job twice), skips it when a finished record is already there, and runs it through
the one-job pipeline (:func:`bench.execution.job.run_job`, with the task's timing phase), which
writes its record atomically. A job's identity is the hash of its config, so a grid started on
one launcher can be finished on another.

Methods registered at run time (a plugin, a test-only method) are unknown to a fresh worker
process: :func:`make_tasks` pickles their registry entries into the task, and
:func:`execute_job` registers them again before the job runs.

>>> missing = require("no_such_package_xyz", "ray", "ray")
Traceback (most recent call last):
...
bench.util.errors.ConfigError: --launcher ray needs no_such_package_xyz: pip install "radar-bench[ray]"
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import importlib
import os
import pickle
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from bench.execution.config import JobsConfig, resolve_device
from bench.execution.job import JobLike, LatencyTiming, Timing, now, run_job, silent
from bench.execution.provenance import process_info
from bench.methods import registry
from bench.store.runs import RunStore
from bench.util.errors import BenchError, ConfigError

#: Worker slot of a ``--workers`` process (set by its initializer; shown in records).
WORKER_ENV = "BENCH_WORKER"


def require(module: str, launcher: str, extra: str) -> ModuleType:
    """Import an optional dependency of a launcher, or a one-line error saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f'--launcher {launcher} needs {module}: pip install "radar-bench[{extra}]"'
        ) from None


@dataclass(frozen=True)
class JobTask:
    """Everything a worker needs to run one job; pickled to worker processes and nodes."""

    spec: JobLike
    cfg: JobsConfig
    run_dir: str  # absolute: a worker's working directory may differ
    run_id: str
    device: str  # "cpu", "cuda", "cuda:1": where the job runs (resolved on the worker)
    launcher: dict[str, Any] = field(default_factory=dict)
    # --force: a record counts as done only if it was rewritten after the run started.
    force: bool = False
    stamp_at_start: int | None = None
    methods_blob: bytes | None = None  # pickled registry entries of non-builtin methods
    sys_path: tuple[str, ...] = ()  # the driver's import path, for those entries' modules
    # The builtin method modules the job needs (None: import them all, as the CLI does).
    builtin_modules: tuple[str, ...] | None = None
    # The job's timing phase (bench speed's batch sweep); None: bench run's latency timing.
    timing: Timing | None = None

    def with_launcher(self, **info: Any) -> JobTask:
        return dataclasses.replace(self, launcher={**self.launcher, **info})


@dataclass(frozen=True)
class JobResult:
    """A job's record, and whether this call computed it (False: it was already done)."""

    record: dict[str, Any]
    ran: bool


def _is_builtin(entry: registry.MethodEntry) -> bool:
    return entry.params_cls.__module__.startswith("bench.")


def pack_methods(names: Sequence[str]) -> bytes | None:
    """Registry entries of the methods a fresh process would not know, pickled (cloudpickle
    where installed: it also handles entries built from lambdas)."""
    entries = [registry.get_method(n) for n in dict.fromkeys(names)]
    extra = [e for e in entries if not _is_builtin(e)]
    if not extra:
        return None
    try:
        import cloudpickle

        return cloudpickle.dumps(extra)
    except ImportError:
        pass
    try:
        return pickle.dumps(extra)
    except Exception as exc:
        names_text = ", ".join(e.name for e in extra)
        raise ConfigError(
            f"--methods {names_text}: registered in this process only and not picklable "
            f"({exc}); register them in an importable module to run them on other processes"
        ) from None


def needed_modules(names: Sequence[str]) -> tuple[str, ...] | None:
    """The builtin modules that define these methods, so that a worker imports only those
    (None when one cannot be placed: the worker then loads every builtin)."""
    modules: list[str] = []
    for name in dict.fromkeys(names):
        if not _is_builtin(registry.get_method(name)) or name.startswith("anomalib:"):
            continue  # shipped in the task, or resolved from its name by the worker
        module = registry.builtin_module(name)
        if module is None:
            return None
        modules.append(module)
    return tuple(dict.fromkeys(modules))


def restore_methods(task: JobTask) -> None:
    """Make the job's methods known in this (worker) process: only the builtin modules it
    needs, and the driver's run-time-registered methods."""
    if task.builtin_modules is not None:
        registry.load_builtins_only(task.builtin_modules)
    if task.methods_blob is None:
        return
    for entry_path in task.sys_path:
        if entry_path not in sys.path and os.path.isdir(entry_path):
            sys.path.append(entry_path)
    for entry in pickle.loads(task.methods_blob):
        registry.register_method(entry)


def make_tasks(
    specs: Sequence[JobLike],
    cfg: JobsConfig,
    device: torch.device,
    run_dir: Path,
    run_id: str,
    stamps_at_start: dict[str, int | None],
    timing: Timing | None = None,
) -> list[JobTask]:
    """One task per job; ``stamps_at_start`` holds every job's record mtime under --force."""
    names = [s.method for s in specs]
    blob = pack_methods(names)
    path = tuple(p for p in sys.path if p) if blob is not None else ()
    modules = needed_modules(names)
    return [
        JobTask(
            spec=spec,
            cfg=cfg,
            run_dir=str(Path(run_dir).resolve()),
            run_id=run_id,
            device=str(device),
            force=spec.job_id in stamps_at_start,
            stamp_at_start=stamps_at_start.get(spec.job_id),
            methods_blob=blob,
            sys_path=path,
            builtin_modules=modules,
            timing=timing,
        )
        for spec in specs
    ]


def _stamp(store: RunStore, job_id: str) -> int | None:
    path = store.record_path(job_id)
    return path.stat().st_mtime_ns if path.exists() else None


def finished_record(store: RunStore, task: JobTask) -> dict[str, Any] | None:
    """The job's ok record, unless --force asks to recompute one older than the run."""
    rec = store.read_record(task.spec.job_id)
    if rec is None or rec.get("status") != "ok":
        return None
    if task.force and _stamp(store, task.spec.job_id) == task.stamp_at_start:
        return None
    return rec


def where() -> dict[str, Any]:
    """Host and process of this worker, plus its scheduler's ids (SLURM job, Ray node)."""
    info: dict[str, Any] = dict(process_info())
    if os.environ.get(WORKER_ENV):
        info["worker"] = int(os.environ[WORKER_ENV])
    if os.environ.get("SUBMITIT_EXECUTOR"):  # inside a submitit job (SLURM or its local twin)
        try:
            import submitit

            info["slurm_job_id"] = submitit.JobEnvironment().job_id
        except Exception:  # not fatal: the id is provenance only
            info["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
    if "ray" in sys.modules:
        try:
            import ray

            if ray.is_initialized():
                info["ray_node"] = ray.get_runtime_context().get_node_id()
        except Exception:
            pass
    return info


def failure_record(
    task: JobTask, kind: str, error: str, launcher: dict[str, Any], trace: str | None = None
) -> dict[str, Any]:
    """A failed record for a job that could not even start, or whose worker died."""
    spec = task.spec
    return {
        "job_id": spec.job_id,
        "run_id": task.run_id,
        "method": spec.method,
        "params": spec.params,
        "preset": spec.preset,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "device": task.device,
        "threads": task.cfg.threads,
        "config_hash": task.cfg.config_hash,
        "threshold_rule": spec.threshold.rule,
        "launcher": launcher,
        **spec.record_extra,
        "status": "failed",
        "error_kind": kind,
        "error": error,
        "traceback": trace,
        "finished_at": now(),
    }


def record_crash(store: RunStore, task: JobTask, error: str, since_ns: int) -> dict[str, Any]:
    """Record that a job's worker died (killed, out of memory, node lost) without a record of
    its own; a record written by the job itself after ``since_ns`` is kept instead."""
    path = store.record_path(task.spec.job_id)
    current = store.read_record(task.spec.job_id)
    if current is not None and (
        current.get("status") == "ok" or (path.exists() and path.stat().st_mtime_ns >= since_ns)
    ):
        return current
    record = failure_record(task, "crash", error, task.launcher)
    store.write_record(record)
    return record


def execute_job(task: JobTask) -> JobResult:
    """Run one job wherever this is called (a worker process, a Ray task, a SLURM job).

    Claims the job (waiting while another live process holds it), skips it when finished,
    otherwise runs it and writes its record. Returns the record; never raises for a failure
    inside the job.
    """
    # As `bench` does (without --debug): library deprecation notices are not for our users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    restore_methods(task)
    torch.set_num_threads(task.cfg.threads)
    store = RunStore(Path(task.run_dir))
    launcher = {**task.launcher, **where()}
    rec = finished_record(store, task)
    if rec is not None:
        return JobResult(rec, ran=False)
    with store.claim(task.spec.job_id, wait=True):
        rec = finished_record(store, task)
        if rec is not None:
            return JobResult(rec, ran=False)
        try:
            device = resolve_device(task.device)
        except BenchError as exc:  # e.g. a job for a GPU landed on a node without one
            rec = failure_record(
                task, "input", f"{type(exc).__name__}: {exc}", launcher, traceback.format_exc()
            )
            store.write_record(rec)
            return JobResult(rec, ran=True)
        timing = task.timing or LatencyTiming.of(task.cfg)
        record = run_job(task.spec, task.cfg, device, store, task.run_id, silent, timing, launcher)
    return JobResult(record, ran=True)


def done_line(record: dict[str, Any]) -> str:
    """One progress line per finished job: ``ok meandiff · synthetic · seed 1 (worker 0)``."""
    where_ = record.get("launcher") or {}
    bits = [f"{k} {where_[k]}" for k in ("worker", "slurm_job_id", "host") if k in where_]
    timing = record.get("timing") or {}
    if "fit_s" in timing:
        bits.append(f"fit {timing['fit_s']:.1f} s")
    auroc = (record.get("metrics") or {}).get("auroc")
    if auroc is not None:
        bits.append(f"AUROC {auroc:.3f}")
    label = f"{record.get('method')} · {record.get('dataset')} · seed {record.get('seed')}"
    status = "ok" if record.get("status") == "ok" else "failed"
    extra = f" ({', '.join(bits)})" if bits else ""
    error = f": {record.get('error')}" if status == "failed" else ""
    return f"{status} {label}{extra}{error}"
