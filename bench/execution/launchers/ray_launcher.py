"""``bench run --launcher ray [--ray-address auto]``: each job a Ray task.

Without ``--ray-address`` a Ray instance is started on this machine (and stopped at the end);
with one (``auto``: the cluster this node belongs to, or ``ray://head:10001``) the jobs go to
that cluster unchanged. A task asks for the resources its job needs: one GPU when the job runs
on CUDA (and the method is not ``cpu_only``), otherwise ``--threads`` CPUs, so Ray packs CPU
jobs by cores and GPU jobs one per GPU. With ``--device auto`` the jobs run on CUDA when the
cluster has GPUs. Ctrl-C cancels the tasks still queued or running; finished records stay.

Workers must import the same ``bench`` (install the package on every node, or a shared
environment); records go to the run folder, which must be on a filesystem all nodes share.
Ray: P. Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from bench.execution.config import JobsConfig
from bench.execution.launchers.common import JobResult, JobTask, execute_job, record_crash, require
from bench.methods import registry
from bench.store.runs import RunStore
from bench.util.errors import ConfigError


def cpu_only(method: str) -> bool:
    """Methods that never use a GPU (their registry entry says ``cpu_only``)."""
    return registry.get_method(method).cpu_only


def task_resources(task: JobTask) -> dict[str, float]:
    """Ray resources of one job: a GPU for CUDA jobs, else the run's thread count in CPUs."""
    if task.device.startswith("cuda") and not cpu_only(task.spec.method):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": task.cfg.threads}


class RayLauncher:
    """Jobs as Ray tasks (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.ray = require("ray", "ray", "ray")
        self.address = address
        self._owned = False  # whether this launcher started Ray (and so stops it)

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():  # e.g. a notebook or a test that already started Ray
            return
        previous = signal.getsignal(signal.SIGTERM)
        ray_log = logging.getLogger("ray")
        level = ray_log.level
        ray_log.setLevel(logging.ERROR)  # its start-up notices would interleave with our lines
        try:
            ray.init(
                address=self.address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except ConnectionError as exc:
            raise ConfigError(
                f"--ray-address {self.address}: no Ray cluster there ({exc}); start one with "
                "`ray start --head`, or leave out --ray-address for a local instance"
            ) from None
        finally:
            ray_log.setLevel(level)
            # ray.init installs a SIGTERM handler that aborts the process; keep bench's (stop as
            # on Ctrl-C: cancel the tasks, keep the records) where there was one.
            if callable(previous) and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
        self._owned = True

    def target_device(self, cfg: JobsConfig) -> torch.device:
        self._connect()
        resources = self.ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
        if cfg.device == "auto":
            device = torch.device("cuda" if gpus >= 1 else "cpu")
        else:
            try:
                device = torch.device(cfg.device)
            except RuntimeError:
                raise ConfigError(f"--device {cfg.device!r}: expected auto, cpu or cuda") from None
        if device.type == "cuda" and gpus < 1 and self.address is None:
            raise ConfigError(f"--device {cfg.device}: the local Ray instance has no GPU")
        if device.type == "cpu" and cfg.threads > cpus and self.address is None:
            raise ConfigError(
                f"--threads {cfg.threads}: each job asks Ray for that many CPUs and the local "
                f"Ray instance has {cpus:g}; pass --threads {max(1, int(cpus))} or fewer"
            )
        return device

    def describe(self) -> dict[str, Any]:
        return {"name": "ray", "address": self.address or "local instance"}

    def launch(
        self, tasks: Sequence[JobTask], store: RunStore, report: Any, fail_fast: bool
    ) -> int:
        ray = self.ray
        self._connect()
        # max_retries: a task whose node died runs once more elsewhere; the job's claim lock
        # keeps the two attempts from computing it twice.
        remote = ray.remote(max_retries=1)(execute_job)
        started_ns = time.time_ns()
        refs = {}
        for task in tasks:
            task = task.with_launcher(name="ray")
            options = {**task_resources(task), "name": f"bench {task.spec.label()}"}
            refs[remote.options(**options).remote(task)] = task
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        record = record_crash(
                            store, refs[ref], f"Ray task failed: {first[:300]}", started_ns
                        )
                        result = JobResult(record, ran=True)
                    report(result)
                    if fail_fast and result.record.get("status") != "ok":
                        _cancel(ray, pending)
                        return 0
        except BaseException:  # Ctrl-C: outstanding tasks are cancelled, finished ones stay
            _cancel(ray, pending)
            raise
        return 0

    def close(self) -> None:
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()
        self._owned = False


def _cancel(ray: Any, refs: list[Any]) -> None:
    for ref in refs:
        with contextlib.suppress(Exception):  # already finished or gone
            ray.cancel(ref, force=True)
