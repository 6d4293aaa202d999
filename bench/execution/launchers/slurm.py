"""``bench run --launcher slurm --slurm-partition gpu``: the jobs as a SLURM job array.

Submission goes through submitit (``AutoExecutor``: one array task per job, logs and pickles
under ``<run>/slurm/<slurm job id>/``), each task calling
:func:`~bench.execution.launchers.common.execute_job`. The SLURM job ids are kept in
``<run>/slurm/submissions.json`` (bench job id -> SLURM id, log paths, submission time), which
``bench status`` reads. By default the command waits and prints a line per finished job;
``--no-wait`` returns after submitting. Rerunning the same command submits only the jobs
that have no finished record and are not still queued or running in SLURM. Ctrl-C stops the
waiting, not the SLURM jobs (``scancel`` stops those).

``--slurm-cluster local`` (for tests and CI) runs the same submission on this machine with
submitit's local executor: one process per job, no SLURM needed.

The run folder must be on a filesystem the compute nodes share, and the nodes must run the same
Python environment (submitit starts ``sys.executable``; ``--slurm-setup`` lines, e.g.
``module load cuda``, run before it). submitit: https://github.com/facebookincubator/submitit
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.execution.config import JobsConfig
from bench.execution.job import now
from bench.execution.launchers.common import JobResult, JobTask, execute_job, record_crash, require
from bench.store.runs import RunStore, _read_json, write_json
from bench.util.errors import ConfigError

#: SLURM states of a job that will still produce a record (do not submit it again).
ACTIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
)


def slurm_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "slurm"


def read_submissions(run_dir: Path) -> dict[str, dict[str, Any]]:
    """bench job id -> its latest submission (``slurm_job_id``, ``stdout``, ``stderr``, ...)."""
    data = _read_json(slurm_dir(run_dir) / "submissions.json")
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict):  # absent, or damaged: the submissions are unknown
        return {}
    return {k: e for k, e in jobs.items() if isinstance(e, dict)}


def _add_submissions(store: RunStore, entries: dict[str, dict[str, Any]]) -> None:
    # Under the run lock: another `bench run` may submit into the same folder.
    path = slurm_dir(store.run_dir) / "submissions.json"
    with store.lock():
        jobs = read_submissions(store.run_dir)
        jobs.update(entries)
        write_json(path, {"jobs": jobs})


def slurm_states(entries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """SLURM state (``RUNNING``, ``PENDING``, ``TIMEOUT``, ...) of recorded submissions, by
    bench job id, from one ``sacct`` call; jobs whose state cannot be known (the local
    executor, no ``sacct`` here) are left out."""
    wanted = {k: e for k, e in entries.items() if e.get("cluster") == "slurm"}
    if not wanted:
        return {}
    try:
        import submitit

        jobs = {
            k: submitit.SlurmJob(folder=e["folder"], job_id=str(e["slurm_job_id"]))
            for k, e in wanted.items()
        }
        next(iter(jobs.values())).watcher.update()  # every registered job in one call
        states = {
            k: str(j.watcher.get_state(j.job_id, mode="cache")).split()[0].upper()
            for k, j in jobs.items()
        }
    except Exception:  # no sacct, a corrupt entry: the state is just unknown
        return {}
    return {k: v for k, v in states.items() if v != "UNKNOWN"}


def log_tail(path: str | Path | None, lines: int = 10) -> list[str]:
    """The last lines of a log file (empty when there is none)."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.rstrip().splitlines()[-lines:]


class SlurmLauncher:
    """A SLURM job array through submitit (see the module docstring)."""

    name = "slurm"

    def __init__(self, opts: Any) -> None:
        self.submitit = require("submitit", "slurm", "slurm")
        self.opts = opts
        self.gpus = opts.slurm_gpus_per_job
        self.cpus = opts.slurm_cpus_per_job

    def target_device(self, cfg: JobsConfig) -> torch.device:
        local = self.opts.slurm_cluster == "local"
        if self.gpus is None:  # a GPU per job unless the run is CPU-only
            no_gpu_here = local and not torch.cuda.is_available()
            self.gpus = 0 if cfg.device == "cpu" or no_gpu_here else 1
        if self.cpus is None:
            self.cpus = cfg.threads
        if cfg.device == "auto":
            return torch.device("cuda" if self.gpus > 0 else "cpu")
        try:
            device = torch.device(cfg.device)
        except RuntimeError:
            raise ConfigError(f"--device {cfg.device!r}: expected auto, cpu or cuda") from None
        if device.type == "cuda" and self.gpus == 0:
            raise ConfigError(f"--device {cfg.device} with --slurm-gpus-per-job 0: no GPU to use")
        return device

    def describe(self) -> dict[str, Any]:
        o = self.opts
        return {
            "name": "slurm",
            "cluster": o.slurm_cluster,
            "partition": o.slurm_partition,
            "gpus_per_job": self.gpus,
            "cpus_per_job": self.cpus,
            "time_min": o.slurm_time,
            "mem_gb": o.slurm_mem_gb,
            "array_parallelism": o.slurm_array_parallelism,
        }

    def _executor(self, run_dir: Path, run_id: str) -> Any:
        o = self.opts
        executor = self.submitit.AutoExecutor(
            folder=slurm_dir(run_dir) / "%j", cluster=o.slurm_cluster
        )
        params: dict[str, Any] = {
            "name": f"bench-{run_id}"[:64],
            "timeout_min": int(o.slurm_time),
            "gpus_per_node": int(self.gpus or 0),
            "cpus_per_task": int(self.cpus or 1),
            "nodes": 1,
            "tasks_per_node": 1,
        }
        if o.slurm_mem_gb is not None:
            params["mem_gb"] = float(o.slurm_mem_gb)
        if o.slurm_cluster == "slurm":
            params["slurm_partition"] = o.slurm_partition
            if o.slurm_array_parallelism is not None:
                params["slurm_array_parallelism"] = int(o.slurm_array_parallelism)
            if o.slurm_setup:
                params["slurm_setup"] = list(o.slurm_setup)
        executor.update_parameters(**params)
        return executor

    def launch(
        self, tasks: Sequence[JobTask], store: RunStore, report: Any, fail_fast: bool
    ) -> int:
        cluster = self.opts.slurm_cluster
        started_ns = time.time_ns()
        previous = read_submissions(store.run_dir)
        wanted = {t.spec.job_id for t in tasks}
        states = slurm_states({k: e for k, e in previous.items() if k in wanted})
        pending: list[tuple[Any, JobTask]] = []
        to_submit: list[JobTask] = []
        for task in tasks:
            entry = previous.get(task.spec.job_id, {})
            if states.get(task.spec.job_id) in ACTIVE_STATES:  # still queued or running
                job = self.submitit.SlurmJob(entry["folder"], str(entry["slurm_job_id"]))
                pending.append((job, task))
            else:
                to_submit.append(task.with_launcher(name="slurm", cluster=cluster))
        if to_submit:
            executor = self._executor(store.run_dir, to_submit[0].run_id)
            try:
                with executor.batch():
                    jobs = [executor.submit(execute_job, t) for t in to_submit]
            except Exception as exc:  # no sbatch here, a partition that does not exist, ...
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(
                    f"--launcher slurm: submission failed ({first[:300]}); is this a SLURM "
                    "login node, and does --slurm-partition exist (`sinfo -s`)?"
                ) from None
            folder = str(slurm_dir(store.run_dir) / "%j")
            with contextlib.suppress(OSError):  # an empty literal "%j" folder submitit leaves
                Path(folder).rmdir()
            _add_submissions(
                store,
                {
                    t.spec.job_id: {
                        "slurm_job_id": str(j.job_id),
                        "cluster": cluster,
                        "folder": folder,
                        "stdout": str(j.paths.stdout),
                        "stderr": str(j.paths.stderr),
                        "submitted_at": now(),
                        "label": t.spec.label(),
                    }
                    for t, j in zip(to_submit, jobs, strict=True)
                },
            )
            pending += list(zip(jobs, to_submit, strict=True))
        if not self.opts.wait:
            return len(pending)
        self._wait(pending, store, report, fail_fast, started_ns)
        return 0

    def _wait(
        self,
        pending: list[tuple[Any, JobTask]],
        store: RunStore,
        report: Any,
        fail_fast: bool,
        started_ns: int,
    ) -> None:
        # sacct is a shared service: poll it every 15 s on a cluster; locally, 10 times a second.
        poll_s = 0.1 if self.opts.slurm_cluster == "local" else 15.0
        while pending:
            still: list[tuple[Any, JobTask]] = []
            for job, task in pending:
                if not job.done():
                    still.append((job, task))
                    continue
                result = self._result(job, task, store, started_ns)
                report(result)
                if fail_fast and result.record.get("status") != "ok":
                    for other, _ in pending:
                        if other is not job and not other.done():
                            other.cancel(check=False)
                    return
            pending = still
            if pending:
                time.sleep(poll_s)

    def _result(self, job: Any, task: JobTask, store: RunStore, started_ns: int) -> JobResult:
        try:
            return job.result()
        except Exception as exc:  # the job died: time limit, out of memory, node failure
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = (
                f"SLURM job {job.job_id} ended without a result ({job.state}): {first[:300]}; "
                f"log: {job.paths.stderr}"
            )
            return JobResult(record_crash(store, task, message, started_ns), ran=True)

    def close(self) -> None:
        return None
