"""Wall-clock time and peak memory of a block of work, honest on GPU and CPU alike.

CUDA kernels run asynchronously: without a ``torch.cuda.synchronize`` the clock stops when the
work is queued, not when it is done. Every reading here synchronises first on CUDA devices.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
import psutil
import torch

DeviceLike = torch.device | str | None

_MB = 2.0**20


def _as_device(device: DeviceLike) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def synchronize(device: DeviceLike) -> None:
    """Wait for queued CUDA work on ``device``; a no-op on CPU."""
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass
class Stopwatch:
    """``with Stopwatch(device) as sw: ...`` then ``sw.elapsed`` (seconds, ``time.perf_counter``).

    Synchronises on entry too, so that work queued before the block is not billed to it.
    """

    device: DeviceLike = None
    elapsed: float = float("nan")
    _start: float = field(default=0.0, repr=False)

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        synchronize(self.device)
        self.elapsed = time.perf_counter() - self._start

    def __float__(self) -> float:
        return self.elapsed


def timed(device: DeviceLike = None) -> Stopwatch:
    """``with timed(device) as t: work()``; ``t.elapsed`` is then the block's seconds."""
    return Stopwatch(device)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds over ``len(repeats)`` timed calls (warm-up excluded)."""

    median_ms: float
    p95_ms: float
    mean_ms: float
    repeats: list[float]  # every timed call, ms, in order

    def to_json(self) -> dict[str, object]:
        return {
            "median_ms": self.median_ms,
            "p95_ms": self.p95_ms,
            "mean_ms": self.mean_ms,
            "repeats": list(self.repeats),
        }


def measure_latency(
    fn: Callable[[], object], device: DeviceLike, repeats: int, warmup: int
) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed (lazy init, caches, cuDNN autotune), then
    ``repeats`` times, each timed on its own with a synchronised clock. The median is the
    headline number: it shrugs off the odd slow call that a loaded machine produces."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times_ms: list[float] = []
    for _ in range(repeats):
        with timed(device) as t:
            fn()
        times_ms.append(t.elapsed * 1000.0)
    return LatencyStats(
        median_ms=float(statistics.median(times_ms)),
        p95_ms=float(np.percentile(times_ms, 95)),  # linear interpolation between ranks
        mean_ms=float(statistics.fmean(times_ms)),
        repeats=times_ms,
    )


# CUDA peak measurements now open (PeakMemory blocks, nested: a job's fit around RADAR's
# training). Every reset of a device's peak counter goes through reset_cuda_peak, which first
# folds the peak so far into each open measurement of that device, so that an inner reset (an
# inner block, the automatic-batch probe) never erases what an outer block has seen.
_OPEN_CUDA: list[PeakMemory] = []


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def reset_cuda_peak(device: DeviceLike) -> None:
    """``torch.cuda.reset_peak_memory_stats`` that open :class:`PeakMemory` blocks survive."""
    dev = _as_device(device)
    peak = torch.cuda.max_memory_allocated(dev)
    for open_block in _OPEN_CUDA:
        if _cuda_index(open_block.device) == _cuda_index(dev):
            open_block._peak_bytes = max(open_block._peak_bytes, peak)
    torch.cuda.reset_peak_memory_stats(dev)


class PeakMemory:
    """Peak memory while the block runs: ``with PeakMemory(device) as pm: ...; pm.peak_mb``.

    * CUDA (``kind == "cuda_allocated"``): ``torch.cuda.max_memory_allocated`` after a
      ``reset_peak_memory_stats`` on entry, i.e. tensors allocated through PyTorch's caching
      allocator on that device (not the allocator's reserve, not other processes). Blocks
      nest: a reset inside the block (an inner block, the automatic-batch probe, both through
      :func:`reset_cuda_peak`) keeps the peak seen before it.
    * CPU (``kind == "cpu_rss"``): the largest resident set size of this process seen while the
      block runs, sampled by a daemon thread every ``interval_s`` (and on entry and exit).
      ``resource.getrusage().ru_maxrss`` is not used on purpose: it is the high-water mark of
      the whole process life and cannot be reset, so a big job would inflate every job run
      after it in the same process. Sampling can miss a spike shorter than the interval; it
      is a measurement of the working set, not an exact allocator count. ``peak_mb`` is the
      absolute RSS (interpreter, libraries and data included); ``baseline_mb`` is the RSS on
      entry, so ``peak_mb - baseline_mb`` is what the block added.
    """

    def __init__(self, device: DeviceLike = None, interval_s: float = 0.02) -> None:
        self.device = _as_device(device)
        self.interval_s = interval_s
        self.kind = "cuda_allocated" if self.device.type == "cuda" else "cpu_rss"
        self.peak_mb = float("nan")
        self.baseline_mb = float("nan")
        self._peak_bytes = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process(os.getpid())

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        with self._lock:  # the sampler thread and the entry/exit samples both write
            self._peak_bytes = max(self._peak_bytes, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if self.kind == "cuda_allocated":
            torch.cuda.synchronize(self.device)
            reset_cuda_peak(self.device)
            self._peak_bytes = 0
            _OPEN_CUDA.append(self)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / _MB
            return self
        self._peak_bytes = 0
        self._sample()
        self.baseline_mb = self._peak_bytes / _MB
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.kind == "cuda_allocated":
            torch.cuda.synchronize(self.device)
            peak = max(self._peak_bytes, torch.cuda.max_memory_allocated(self.device))
            if self in _OPEN_CUDA:
                _OPEN_CUDA.remove(self)
            self.peak_mb = peak / _MB
            return
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.peak_mb = self._peak_bytes / _MB
