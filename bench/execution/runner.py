"""Run a grid of jobs into one run folder: claims, resume, launchers and the manifest.

``bench run`` expands its configuration into jobs (:func:`bench.execution.config.expand_jobs`;
``bench ablate`` builds its own list) and :func:`run` hands them to a :class:`JobLoop`, which
runs each through the one-job pipeline (:func:`bench.execution.job.run_job`: seed, load, fit,
predict, time, one atomic record) with ``bench run``'s timing phase, single-image latency
(:class:`~bench.execution.job.LatencyTiming`). A finished job is skipped on the next run unless
``force``; a job that raises is recorded as failed and the grid goes on (unless ``fail_fast``).
Each job is claimed (a per-job lock) while it runs, so two processes sharing a run folder split
the grid instead of computing a job twice; a job claimed by the other process is waited for at
the end. With a launcher (:mod:`bench.execution.launchers`) the jobs not done yet run elsewhere,
through the same pipeline. ``bench speed`` (:mod:`bench.execution.speed`) runs its jobs through
the same :class:`JobLoop` with its own timing phase and manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.datasets import make_dataset
from bench.execution.config import JobsConfig, JobSpec, RunConfig, expand_jobs, resolve_device
from bench.execution.job import (
    JobLike,
    LatencyTiming,
    ProgressFn,
    Timing,
    now,
    run_job,
    silent,
    undefined_warning,
)
from bench.execution.provenance import device_name, environment, git_commit
from bench.methods import registry
from bench.store.runs import RunStore, open_run_folder

if TYPE_CHECKING:
    from bench.execution.launchers import Launcher
    from bench.execution.launchers.common import JobResult

__all__ = [
    "DEFAULT_RESULTS",
    "JobLoop",
    "ProgressFn",
    "RunOutcome",
    "manifest_head",
    "prepare",
    "run",
    "undefined_warning",
]

#: Where ``bench run``, ``bench ablate`` and ``bench speed`` put their run folders.
DEFAULT_RESULTS = Path("results/runs")

#: Called as a job starts: (job, its index, how many) -> the job's progress callback.
StartFn = Callable[[Any, int, int], ProgressFn]
#: Called as a job ends: its record, or None when it was already done (skipped).
EndFn = Callable[[dict[str, Any] | None], None]


@dataclass
class RunOutcome:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    # Jobs handed to a batch system and not waited for (bench run --launcher slurm --no-wait).
    submitted: int = 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def manifest_head(
    cfg: JobsConfig, run_id: str, device: torch.device, seeds: list[int]
) -> dict[str, Any]:
    """The manifest fields every run folder starts with: what was asked, on what, with which
    code and environment."""
    return {
        "run_id": run_id,
        "config": cfg.to_json(),
        "config_hash": cfg.config_hash,
        "preset": registry.resolve_preset(cfg.preset, device.type),
        "seeds": seeds,
        "device": str(device),
        "device_name": device_name(device),
        "git_commit": git_commit(Path.cwd()),
        "environment": environment(),
    }


class JobLoop:
    """The jobs of one run folder, each run once: here, one after the other, or by a launcher.

    A job with a finished (``ok``) record is skipped; under ``force`` only a record rewritten
    since the loop first saw the job counts as finished (by a concurrent process that claimed
    it first). ``outcome`` collects every job's record, in the order the jobs were given.
    """

    def __init__(
        self,
        store: RunStore,
        cfg: JobsConfig,
        device: torch.device,
        run_id: str,
        timing: Timing,
        force: bool = False,
        on_job_start: StartFn | None = None,
        on_job_end: EndFn | None = None,
    ) -> None:
        self.store, self.cfg, self.device, self.run_id = store, cfg, device, run_id
        self.timing, self.force = timing, force
        self.on_job_start, self.on_job_end = on_job_start, on_job_end
        self.outcome = RunOutcome(run_dir=store.run_dir)
        self.stamps_at_start: dict[str, int | None] = {}  # under force: each record's mtime

    def _stamp(self, job_id: str) -> int | None:
        path = self.store.record_path(job_id)
        return path.stat().st_mtime_ns if path.exists() else None

    def finished(self, job_id: str) -> dict[str, Any] | None:
        """The job's ok record when it counts as done, else None."""
        rec = self.store.read_record(job_id)
        if rec is None or rec.get("status") != "ok":
            return None
        return (
            rec if not self.force or self._stamp(job_id) != self.stamps_at_start[job_id] else None
        )

    def _ended(self, record: dict[str, Any], ran: bool) -> None:
        self.outcome.records.append(record)
        self.outcome.skipped += 0 if ran else 1
        if self.on_job_end:
            self.on_job_end(record if ran else None)

    def attempt(self, index: int, total: int, spec: JobLike, wait: bool) -> bool:
        """Run or skip one job; False when another live process holds it (try it later)."""
        rec = self.finished(spec.job_id)
        if rec is None:
            with self.store.claim(spec.job_id, wait=wait) as mine:
                if not mine:
                    return False
                rec = self.finished(spec.job_id)  # it may have finished while we were not looking
                if rec is None:
                    start = self.on_job_start
                    progress = start(spec, index, total) if start else silent
                    record = run_job(
                        spec, self.cfg, self.device, self.store, self.run_id, progress, self.timing
                    )
                    self._ended(record, ran=True)
                    return True
        self._ended(rec, ran=False)
        return True

    def run(
        self, jobs: Sequence[JobLike], launcher: Launcher | None = None, fail_fast: bool = False
    ) -> None:
        """Run (or skip) ``jobs``: here, or through ``launcher``
        (each job through :func:`bench.execution.launchers.common.execute_job`)."""
        if self.force:  # before any of them runs: what is rewritten after this was done now
            for spec in jobs:
                self.stamps_at_start.setdefault(spec.job_id, self._stamp(spec.job_id))
        if launcher is not None:
            self._launch(launcher, jobs, fail_fast)
            return
        failed = len(self.outcome.failed)
        held_elsewhere: list[tuple[int, JobLike]] = []
        for i, spec in enumerate(jobs):
            if not self.attempt(i, len(jobs), spec, wait=False):
                held_elsewhere.append((i, spec))
            elif fail_fast and len(self.outcome.failed) > failed:
                return
        # Wait for jobs another process was running; if it died or failed, run them here.
        for i, spec in held_elsewhere:
            self.attempt(i, len(jobs), spec, wait=True)
            if fail_fast and len(self.outcome.failed) > failed:
                return

    def _launch(self, launcher: Launcher, jobs: Sequence[JobLike], fail_fast: bool) -> None:
        """Hand the jobs that are not done to ``launcher``; collect its records in job order."""
        from bench.execution.launchers.common import make_tasks

        first = len(self.outcome.records)
        todo: list[JobLike] = []
        for spec in jobs:
            rec = self.finished(spec.job_id)
            if rec is None:
                todo.append(spec)
            else:
                self._ended(rec, ran=False)

        def report(result: JobResult) -> None:
            self._ended(result.record, result.ran)

        store, stamps = self.store, self.stamps_at_start
        tasks = make_tasks(
            todo, self.cfg, self.device, store.run_dir, self.run_id, stamps, self.timing
        )
        self.outcome.submitted += launcher.launch(tasks, store, report, fail_fast) if tasks else 0
        order = {spec.job_id: i for i, spec in enumerate(jobs)}
        mine = self.outcome.records[first:]
        mine.sort(key=lambda r: order.get(r.get("job_id", ""), len(order)))
        self.outcome.records[first:] = mine


def prepare(
    cfg: RunConfig, device: torch.device | None = None
) -> tuple[torch.device, list[JobSpec]]:
    """Validate everything that can be checked before any work starts. ``device``: the one
    the jobs will run on when that is not this machine's (a launcher's GPU nodes)."""
    device = resolve_device(cfg.device) if device is None else device
    for spec in cfg.datasets:
        make_dataset(spec, cfg.data_root)
    return device, expand_jobs(cfg, device)


def run(
    cfg: RunConfig,
    results_dir: Path = DEFAULT_RESULTS,
    run_id: str | None = None,
    force: bool = False,
    fail_fast: bool = False,
    on_job_start: Callable[[JobSpec, int, int], ProgressFn] | None = None,
    on_job_end: Callable[[dict[str, Any] | None], None] | None = None,
    job_list: list[JobSpec] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    name: str | None = None,
    launcher: Launcher | None = None,
) -> RunOutcome:
    """Run (or resume) a grid; records land in ``results_dir/<run_id>/``.

    ``name`` labels the run in its manifest (``bench history``, ``bench compare NAME``); without
    ``run_id`` the folder is then ``<name>-<config hash>``, so that two named runs of one config
    (before and after a change) do not resume each other.

    ``job_list`` replaces the jobs expanded from ``cfg`` (``bench ablate`` builds its own grid);
    ``manifest_extra`` adds keys to the manifest (e.g. ``"ablation"``: the grid).

    ``launcher`` (:mod:`bench.execution.launchers`: worker processes, Ray, SLURM) runs the jobs
    that are not done yet elsewhere, each through
    :func:`bench.execution.launchers.common.execute_job`;
    without it they run here, one after the other.
    """
    device, jobs = prepare(cfg, launcher.target_device(cfg) if launcher is not None else None)
    if job_list is not None:
        jobs = job_list
    if launcher is None or launcher.name == "local":
        # Knowable now, not after each job has loaded its data (remote nodes have their own
        # caches: there `bench prepare` is the check).
        from bench.execution.prepare import require_weights

        require_weights(jobs)
    if run_id is None and name:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".-_")[:60] or "run"
        run_id = f"{label}-{cfg.config_hash[:8]}"
    run_id = run_id or cfg.default_run_id()
    store = open_run_folder(Path(results_dir), run_id)  # a safe name, never a foreign folder
    started = now()
    # The manifest records the thread count the jobs run with (seed_everything sets it per job).
    torch.set_num_threads(cfg.threads)
    fresh = {
        **manifest_head(cfg, run_id, device, cfg.seeds),
        "finished_at": None,
        "launcher": launcher.describe() if launcher is not None else {"name": "local"},
        **(manifest_extra or {}),
    }

    def merge(previous: dict[str, Any] | None) -> dict[str, Any]:
        # Another process may share this folder: keep its jobs and the first creation time.
        # Without a usable manifest (none yet, or a damaged one set aside), the job list is
        # rebuilt from the records on disk and this run's configuration.
        old = previous or {}
        on_disk = [] if previous else [r["job_id"] for r in store.records()]
        ids = [*old.get("jobs", []), *on_disk, *(spec.job_id for spec in jobs)]
        return {
            **fresh,
            "jobs": list(dict.fromkeys(ids)),
            "created_at": old.get("created_at", started),
            "resumed_at": started if previous else None,
            "name": name or old.get("name"),
            # What `bench status` shows for jobs that have no record yet.
            "job_labels": {**old.get("job_labels", {}), **{s.job_id: s.label() for s in jobs}},
        }

    store.update_manifest(merge)
    timing = LatencyTiming.of(cfg)
    loop = JobLoop(store, cfg, device, run_id, timing, force, on_job_start, on_job_end)
    interrupted = False
    try:
        loop.run(jobs, launcher, fail_fast)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (bench.cli turns it into this)
        interrupted = True
        raise
    finally:
        # Also on Ctrl-C: what finished is already on disk; keep the derived files in step.
        store.export_csv()
        # A run stopped by a signal did not finish (`bench status` says "interrupted"); jobs
        # submitted and not waited for are not finished either: `bench status` follows them.
        end = None if loop.outcome.submitted or interrupted else now()
        stopped = now() if interrupted else None
        store.update_manifest(
            lambda m: {**(m or fresh), "finished_at": end, "interrupted_at": stopped}
        )
    return loop.outcome
