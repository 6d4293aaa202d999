"""``bench run --workers N``: N jobs at once in worker processes on this machine, one store.

Each worker is a fresh interpreter (``spawn``: no CUDA state or threads inherited from the
driver) that runs jobs one after another through
:func:`~bench.execution.launchers.common.execute_job`, with the run's fixed thread count. When
several GPUs are visible, worker ``i`` sees only GPU ``i mod n`` (``CUDA_VISIBLE_DEVICES``), so N
workers on N GPUs run one job per GPU. A worker that dies (killed, out of memory) breaks the
pool: the jobs finished so far keep their records and rerunning the same command computes the
rest. Workers die with the driver, even when it is killed with SIGKILL (:func:`die_with_parent`).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from bench.execution.config import JobsConfig
from bench.execution.launchers.common import WORKER_ENV, JobResult, JobTask, execute_job
from bench.store.runs import RunStore
from bench.util.errors import BenchError


class WorkerDied(BenchError):
    """A worker process ended without finishing its jobs (exit code 1: nothing to fix)."""

    exit_code = 1


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


#: Seconds between two looks of a worker's watchdog at its parent.
WATCHDOG_PERIOD_S = 0.5
#: linux/prctl.h: ask the kernel for a signal when the parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """End this worker when the ``bench run`` that started it dies, even by SIGKILL (which
    runs no cleanup in the parent): otherwise the workers, re-parented to init, would finish
    their jobs and then idle for ever. Linux: the kernel's parent-death signal
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere: a daemon thread that watches the
    parent pid, which also covers a parent that died before the signal was set up."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the watchdog alone does it
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_PERIOD_S)
        os._exit(1)  # the job's claim lock dies with the process; a rerun computes the job

    threading.Thread(target=watch, name="bench-parent-watchdog", daemon=True).start()


def _init_worker(slots: Any, gpus: list[str], parent_pid: int) -> None:
    # Runs first in each worker, before anything touches CUDA, so the mask takes effect.
    die_with_parent(parent_pid)
    slot = slots.get()
    os.environ[WORKER_ENV] = str(slot)
    if len(gpus) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]


class WorkerPoolLauncher:
    """N worker processes on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def target_device(self, cfg: JobsConfig) -> torch.device | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": "local", "workers": self.workers}

    def launch(
        self,
        tasks: Sequence[JobTask],
        store: RunStore,
        report: Any,
        fail_fast: bool,
    ) -> int:
        ctx = mp.get_context("spawn")
        slots = ctx.Queue()
        n = min(self.workers, len(tasks))
        for i in range(n):
            slots.put(i)
        # Round-robin GPUs only for jobs that use the default CUDA device (not "cuda:1").
        gpus = visible_gpus() if any(t.device == "cuda" for t in tasks) else []
        pool = ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_init_worker, initargs=(slots, gpus, os.getpid())
        )
        futures: dict[Future[JobResult], JobTask] = {
            pool.submit(execute_job, t.with_launcher(name="local", workers=n)): t for t in tasks
        }
        lost: list[JobTask] = []
        stopped_early = False
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    lost.append(futures[future])
                    continue
                report(result)
                if fail_fast and result.record.get("status") != "ok":
                    stopped_early = True
                    break
        except BaseException:  # Ctrl-C (or a failing report): stop the workers now
            _stop(pool)
            raise
        if stopped_early:
            _stop(pool)
        else:
            pool.shutdown(wait=True)
        if lost:
            raise WorkerDied(
                f"a worker process died (killed, or out of memory?): {len(lost)} of "
                f"{len(tasks)} job(s) not finished; finished jobs are saved, rerun the same "
                "command to compute the rest"
            )
        return 0

    def close(self) -> None:
        return None


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers (a running job is lost, not saved)."""
    # ProcessPoolExecutor has no public way to end running workers; a killed job leaves no
    # record and its claim lock dies with it, so the next run computes it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
