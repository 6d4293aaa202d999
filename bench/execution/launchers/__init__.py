"""Where the jobs of a run execute: here, in worker processes, on Ray, or on SLURM.

``bench run --launcher local`` (the default) runs the jobs in this process, one after the other
(:func:`bench.execution.runner.run`); ``--workers N`` runs N at once in worker processes
(:mod:`bench.execution.launchers.local`); ``--launcher ray`` makes each job a Ray task
(:mod:`bench.execution.launchers.ray_launcher`); ``--launcher slurm`` submits a SLURM job array
through submitit (:mod:`bench.execution.launchers.slurm`). All of them call one entry point per job
(:func:`bench.execution.launchers.common.execute_job`) and write into one run folder, so results are
identical whichever launcher ran them, and a run started on one can be resumed on another.

>>> make_launcher(LauncherOptions()) is None  # the in-process default
True
>>> make_launcher(LauncherOptions(workers=2)).describe()
{'name': 'local', 'workers': 2}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from bench.execution.config import JobsConfig
from bench.execution.launchers.common import JobResult, JobTask, done_line
from bench.store.runs import RunStore
from bench.util.errors import ConfigError, unknown_name

__all__ = [
    "LAUNCHERS",
    "JobResult",
    "JobTask",
    "Launcher",
    "LauncherOptions",
    "done_line",
    "make_launcher",
]

LAUNCHERS = ("local", "ray", "slurm")
SLURM_CLUSTERS = ("slurm", "local")  # "local": submitit's local executor (tests, CI)

Report = Callable[[JobResult], None]


class Launcher(Protocol):
    """Runs job tasks somewhere else than in this process
    (see :func:`bench.execution.runner.run`)."""

    name: str

    def target_device(self, cfg: JobsConfig) -> torch.device | None:
        """The device the jobs run on when it is not this machine's (None: resolve here)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about the launcher."""
        ...

    def launch(
        self, tasks: Sequence[JobTask], store: RunStore, report: Report, fail_fast: bool
    ) -> int:
        """Run the tasks, calling ``report`` once per finished job; returns how many were
        submitted and not waited for (``--no-wait``), else 0."""
        ...

    def close(self) -> None:
        """Release what :meth:`target_device` / :meth:`launch` acquired (a Ray connection)."""
        ...


@dataclass(frozen=True)
class LauncherOptions:
    """The ``bench run`` launcher flags."""

    launcher: str = "local"
    workers: int = 1
    ray_address: str | None = None
    slurm_partition: str | None = None
    slurm_gpus_per_job: int | None = None  # None: 1, or 0 with --device cpu
    slurm_time: int = 60  # minutes
    slurm_cpus_per_job: int | None = None  # None: the run's --threads
    slurm_mem_gb: float | None = None
    slurm_array_parallelism: int | None = None
    slurm_cluster: str = "slurm"
    slurm_setup: tuple[str, ...] = ()
    wait: bool = True


def _check_slurm(opts: LauncherOptions) -> None:
    if opts.slurm_cluster not in SLURM_CLUSTERS:
        raise unknown_name("--slurm-cluster", opts.slurm_cluster, SLURM_CLUSTERS)
    if opts.slurm_cluster == "slurm" and not opts.slurm_partition:
        raise ConfigError(
            "--launcher slurm needs --slurm-partition: the SLURM partition to submit to "
            "(e.g. gpu; `sinfo -s` lists them)"
        )
    positive = {
        "--slurm-time": opts.slurm_time,
        "--slurm-cpus-per-job": opts.slurm_cpus_per_job,
        "--slurm-mem-gb": opts.slurm_mem_gb,
        "--slurm-array-parallelism": opts.slurm_array_parallelism,
    }
    for flag, value in positive.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{flag} {value}: expected a positive number")
    if opts.slurm_gpus_per_job is not None and opts.slurm_gpus_per_job < 0:
        raise ConfigError(
            f"--slurm-gpus-per-job {opts.slurm_gpus_per_job}: expected 0 or a positive integer"
        )


def make_launcher(opts: LauncherOptions) -> Launcher | None:
    """The launcher the flags ask for; None for the in-process default. Flag mistakes and a
    missing optional package are one-line :class:`~bench.util.errors.ConfigError` s."""
    if opts.launcher not in LAUNCHERS:
        raise unknown_name("--launcher", opts.launcher, LAUNCHERS)
    if opts.workers < 1:
        raise ConfigError(f"--workers {opts.workers}: expected a positive integer (jobs at once)")
    if opts.workers > 1 and opts.launcher != "local":
        raise ConfigError(
            f"--workers {opts.workers} applies to --launcher local; "
            f"{opts.launcher} schedules the jobs itself"
        )
    if opts.ray_address is not None and opts.launcher != "ray":
        raise ConfigError("--ray-address applies to --launcher ray")
    if opts.slurm_partition is not None and opts.launcher != "slurm":
        raise ConfigError("--slurm-partition applies to --launcher slurm")
    if not opts.wait and opts.launcher != "slurm":
        raise ConfigError("--no-wait applies to --launcher slurm (the others run while you wait)")
    if opts.launcher == "ray":
        from bench.execution.launchers.ray_launcher import RayLauncher

        return RayLauncher(opts.ray_address)
    if opts.launcher == "slurm":
        _check_slurm(opts)
        from bench.execution.launchers.slurm import SlurmLauncher

        return SlurmLauncher(opts)
    if opts.workers == 1:
        return None
    from bench.execution.launchers.local import WorkerPoolLauncher

    return WorkerPoolLauncher(opts.workers)
