"""``bench status <run>``: how far a run is, read from its folder while it runs anywhere.

A job is

* ``done``    when its record says ok;
* ``running`` when its claim lock (``locks/job-<id>.lock``) is held by a live process, or
  SLURM reports it ``RUNNING``;
* ``failed``  when its record says failed, or SLURM ended it without a record (time limit,
  out of memory, node failure);
* ``pending`` otherwise (not started, queued in SLURM, or never launched).

Nothing here writes into the run folder, except that probing a claim lock may create its
(empty) lock file, and that a damaged record or manifest is moved aside as every reader does
(:func:`bench.store.runs.read_record_file`). A run stopped by Ctrl-C or SIGTERM is shown as
interrupted, not finished. For failed jobs it shows the error, the last lines of the traceback
and of the SLURM log when the job was submitted with ``--launcher slurm``.

>>> from pathlib import Path; import tempfile
>>> run_status(Path(tempfile.mkdtemp())).counts
{'done': 0, 'pending': 0, 'running': 0, 'failed': 0}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bench.store.runs import RunStore
from bench.store.schema import Field, Manifest, Status
from bench.util.errors import ConfigError

STATES = ("done", "pending", "running", "failed")

#: SLURM states that end a job; without a record of its own it failed.
SLURM_ENDED = frozenset(
    {
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "COMPLETED",
    }
)


@dataclass
class JobStatus:
    job_id: str
    label: str
    state: str
    record: dict[str, Any] | None = None
    slurm: dict[str, Any] | None = None  # the submission (slurm_job_id, stdout, stderr, ...)
    slurm_state: str | None = None
    error: str | None = None

    def traceback_tail(self, lines: int) -> list[str]:
        text = (self.record or {}).get(Field.TRACEBACK) or ""
        return text.rstrip().splitlines()[-lines:] if lines > 0 else []

    def log_tail(self, lines: int) -> list[str]:
        from bench.execution.launchers.slurm import log_tail

        if not self.slurm or lines <= 0:
            return []
        return log_tail(self.slurm.get("stderr"), lines) or log_tail(
            self.slurm.get("stdout"), lines
        )


@dataclass
class RunStatus:
    run_dir: Path
    jobs: list[JobStatus] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs:
            counts[job.state] += 1
        return counts

    @property
    def failed(self) -> list[JobStatus]:
        return [j for j in self.jobs if j.state == "failed"]


def resolve_run_dir(run: str | Path, results_dir: Path) -> Path:
    """A run folder given as a path, or as a run id under ``results_dir``."""
    path = Path(run)
    store = RunStore(path)
    if store.manifest_path.is_file() or store.jobs_dir.is_dir():
        return path
    candidate = Path(results_dir) / str(run)
    if candidate.is_dir():
        return candidate
    raise ConfigError(
        f"{run}: neither a run folder (with manifest.json or jobs/) nor a run id in {results_dir}"
    )


def claim_held(store: RunStore, job_id: str) -> bool:
    """Whether a live process holds the job's claim (the kernel drops it when one dies)."""
    path = store.run_dir / "locks" / f"job-{job_id}.lock"
    if not path.exists():
        return False
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:  # a read-only folder: cannot probe; say nothing rather than guess
        return False
    lock.release()
    return False


def _label(job_id: str, record: dict[str, Any] | None, manifest: dict[str, Any]) -> str:
    if record and record.get(Field.METHOD):
        return (
            f"{record[Field.METHOD]} · {record.get(Field.DATASET)} · seed {record.get(Field.SEED)}"
        )
    return (manifest.get(Manifest.JOB_LABELS) or {}).get(job_id, job_id)


def run_status(run_dir: Path) -> RunStatus:
    """The state of every job of the run in ``run_dir`` (see the module docstring); printed
    by :func:`bench.reports.console.status_renderables`."""
    from bench.execution.launchers.slurm import read_submissions, slurm_states

    store = RunStore(run_dir)
    manifest = store.read_manifest() or {}
    records = {r[Field.JOB_ID]: r for r in store.records() if Field.JOB_ID in r}
    job_ids = list(dict.fromkeys([*manifest.get(Manifest.JOBS, []), *records]))
    submissions = read_submissions(run_dir)
    unfinished = {
        k: e
        for k, e in submissions.items()
        if k in job_ids and (records.get(k) or {}).get(Field.STATUS) != Status.OK
    }
    states = slurm_states(unfinished)
    status = RunStatus(run_dir=Path(run_dir), manifest=manifest)
    for job_id in job_ids:
        rec = records.get(job_id)
        job = JobStatus(
            job_id=job_id,
            label=_label(job_id, rec, manifest),
            state="pending",
            record=rec,
            slurm=submissions.get(job_id),
            slurm_state=states.get(job_id),
        )
        if rec is not None and rec.get(Field.STATUS) == Status.OK:
            job.state = "done"
        elif claim_held(store, job_id) or job.slurm_state == "RUNNING":
            job.state = "running"
        elif rec is not None:
            job.state, job.error = "failed", str(rec.get(Field.ERROR))
        elif job.slurm_state in SLURM_ENDED:
            job.state = "failed"
            job.error = f"SLURM job {job.slurm['slurm_job_id']} ended {job.slurm_state} " + (
                "without a record"
            )
        status.jobs.append(job)
    return status
