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
        text = (self.record or {}).get("traceback") or ""
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
    if (path / "manifest.json").is_file() or (path / "jobs").is_dir():
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
    if record and record.get("method"):
        return f"{record['method']} · {record.get('dataset')} · seed {record.get('seed')}"
    return (manifest.get("job_labels") or {}).get(job_id, job_id)


def run_status(run_dir: Path) -> RunStatus:
    """The state of every job of the run in ``run_dir`` (see the module docstring)."""
    from bench.execution.launchers.slurm import read_submissions, slurm_states

    store = RunStore(run_dir)
    manifest = store.read_manifest() or {}
    records = {r["job_id"]: r for r in store.records() if "job_id" in r}
    job_ids = list(dict.fromkeys([*manifest.get("jobs", []), *records]))
    submissions = read_submissions(run_dir)
    unfinished = {
        k: e
        for k, e in submissions.items()
        if k in job_ids and (records.get(k) or {}).get("status") != "ok"
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
        if rec is not None and rec.get("status") == "ok":
            job.state = "done"
        elif claim_held(store, job_id) or job.slurm_state == "RUNNING":
            job.state = "running"
        elif rec is not None:
            job.state, job.error = "failed", str(rec.get("error"))
        elif job.slurm_state in SLURM_ENDED:
            job.state = "failed"
            job.error = f"SLURM job {job.slurm['slurm_job_id']} ended {job.slurm_state} " + (
                "without a record"
            )
        status.jobs.append(job)
    return status


def render(status: RunStatus, verbose: bool = False, lines: int = 10) -> list[Any]:
    """rich renderables: the counts, a table per job (``verbose``), details of failed jobs."""
    from rich.table import Table
    from rich.text import Text

    counts = status.counts
    total = sum(counts.values())
    launcher = (status.manifest.get("launcher") or {}).get("name", "local")
    finished = status.manifest.get("finished_at")
    interrupted = status.manifest.get("interrupted_at")
    head = Text(f"{status.run_dir}  ({total} jobs, launcher {launcher}")
    if finished:
        head.append(f", finished {finished[:19].replace('T', ' ')})")
    elif interrupted:  # stopped by Ctrl-C / SIGTERM: rerun the same command to resume
        head.append(f", interrupted {interrupted[:19].replace('T', ' ')}; rerun to resume)")
    else:
        head.append(")")
    out: list[Any] = [head]
    table = Table(show_header=True, title_justify="left")
    for state in STATES:
        table.add_column(state, justify="right")
    table.add_row(*(str(counts[s]) for s in STATES))
    out.append(table)
    if verbose:
        jobs = Table(title="jobs", title_justify="left")
        for col in ("job", "method · dataset · seed", "state", "where", "AUROC", "fit s"):
            jobs.add_column(col, justify="right" if col in ("AUROC", "fit s") else "left")
        for job in status.jobs:
            rec = job.record or {}
            where = rec.get("launcher") or {}
            place = " ".join(
                f"{k}={where[k]}" for k in ("name", "worker", "slurm_job_id", "host") if k in where
            )
            if not place and job.slurm:
                place = f"slurm job {job.slurm.get('slurm_job_id')} {job.slurm_state or ''}"
            auroc = (rec.get("metrics") or {}).get("auroc")
            fit = (rec.get("timing") or {}).get("fit_s")
            jobs.add_row(
                job.job_id,
                job.label,
                job.state,
                place.strip(),
                "--" if auroc is None else f"{auroc:.3f}",
                "--" if fit is None else f"{fit:.1f}",
            )
        out.append(jobs)
    for job in status.failed:
        out.append(Text(f"failed: {job.label} ({job.job_id}): {job.error}", style="red"))
        for line in job.traceback_tail(lines):
            out.append(Text(f"  | {line}"))
        log = job.log_tail(lines)
        if log:
            out.append(Text(f"  slurm log {job.slurm.get('stderr') if job.slurm else ''}:"))
            out.extend(Text(f"  | {line}") for line in log)
    return out
