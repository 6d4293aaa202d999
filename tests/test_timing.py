"""Timing and memory tracking. Times are bounded by the sleeps inside and the wall time around
the call, never by a fixed budget: a loaded machine must not flake them."""

from __future__ import annotations

import gc
import mmap
import time

import numpy as np
import psutil
import pytest
import torch

from bench.util.timing import LatencyStats, PeakMemory, Stopwatch, measure_latency, timed


def test_timed_measures_a_sleep() -> None:
    outer = time.perf_counter()
    with timed("cpu") as t:
        time.sleep(0.05)
    outer = time.perf_counter() - outer
    assert isinstance(t, Stopwatch)
    assert 0.045 <= t.elapsed <= outer
    assert float(t) == t.elapsed


def test_measure_latency_counts_and_bounds() -> None:
    calls = []

    def work() -> None:
        calls.append(1)
        time.sleep(0.02)

    outer = time.perf_counter()
    stats = measure_latency(work, torch.device("cpu"), repeats=5, warmup=2)
    outer_ms = (time.perf_counter() - outer) * 1000
    assert isinstance(stats, LatencyStats)
    assert len(calls) == 7  # warm-up calls run, but are not timed
    assert len(stats.repeats) == 5
    assert all(ms >= 19.0 for ms in stats.repeats)
    assert sum(stats.repeats) <= outer_ms
    assert 19.0 <= stats.median_ms <= stats.p95_ms <= max(stats.repeats)
    assert min(stats.repeats) <= stats.mean_ms <= max(stats.repeats)
    assert stats.to_json()["repeats"] == stats.repeats


def test_measure_latency_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(lambda: None, "cpu", repeats=0, warmup=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(lambda: None, "cpu", repeats=1, warmup=-1)


def _fresh_pages(n_bytes: int) -> mmap.mmap:
    # A new anonymous mapping, written page by page: its pages are always new resident memory.
    # (np.ones may be served from heap pages freed, but still resident, by earlier tests.)
    block = mmap.mmap(-1, n_bytes)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    return block


def test_peak_memory_sees_allocation_inside_block() -> None:
    with PeakMemory("cpu") as pm:
        block = _fresh_pages(200 * 2**20)
        time.sleep(0.1)
        block.close()
    assert pm.kind == "cpu_rss"
    assert pm.peak_mb - pm.baseline_mb > 150


def test_peak_memory_sampler_catches_freed_spike() -> None:
    # The spike is gone before the block ends, so only the sampler thread can have seen it.
    with PeakMemory("cpu", interval_s=0.01) as pm:
        spike = _fresh_pages(200 * 2**20)
        time.sleep(0.2)
        spike.close()
        gc.collect()
    assert pm.peak_mb - pm.baseline_mb > 150


def test_peak_memory_ignores_allocation_freed_before_block() -> None:
    rss_mb = psutil.Process().memory_info().rss / 2**20
    before = np.ones(300 * 2**20, dtype=np.uint8)
    del before
    gc.collect()
    with PeakMemory("cpu") as pm:
        time.sleep(0.05)
    assert pm.peak_mb - pm.baseline_mb < 100
    assert pm.peak_mb < rss_mb + 100  # unlike ru_maxrss, which would still say +300 MB


@pytest.mark.cuda
def test_peak_memory_cuda() -> None:
    with PeakMemory("cuda") as pm:
        x = torch.ones(64 * 2**20, device="cuda", dtype=torch.uint8)
        del x
    assert pm.kind == "cuda_allocated"
    assert pm.peak_mb >= 64
    stats = measure_latency(lambda: torch.ones(1000, 1000, device="cuda").sum(), "cuda", 3, 1)
    assert len(stats.repeats) == 3


# --- provenance (kept here: it is what gets stored beside every timing) ---


def test_environment_is_complete_and_json_able(tmp_path) -> None:
    import json

    from bench.execution.provenance import environment

    env = environment(repo=tmp_path)
    json.dumps(env)
    assert set(env["packages"]) >= {"bench", "torch", "anomalib", "scikit-learn", "numpy"}
    assert env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert env["torch_threads"] == torch.get_num_threads()
    assert set(env["torch_flags"]) >= {
        "cudnn_deterministic",
        "cudnn_benchmark",
        "cuda_matmul_allow_tf32",
        "cudnn_allow_tf32",
        "deterministic_algorithms",
    }
    assert env["machine"]["cpu_count"] >= 1 and env["machine"]["cpu_model"]
    assert env["git_commit"] is None  # tmp_path is no checkout
    import socket

    assert socket.gethostname() not in json.dumps(env)


def test_missing_package_is_absent(monkeypatch) -> None:
    from bench.execution import provenance

    monkeypatch.setitem(provenance.PACKAGES, "nonexistent", "surely-not-installed-pkg")
    assert provenance.package_versions()["nonexistent"] == "absent"


def test_git_commit_never_raises(tmp_path, monkeypatch) -> None:
    import subprocess

    from bench.execution import provenance

    assert provenance.git_commit(tmp_path) is None
    assert provenance.git_commit(tmp_path / "missing") is None

    def fake_run(args, **kwargs):
        out = "abc1234\n" if "rev-parse" in args else " M bench/x.py\n"
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    monkeypatch.setattr(provenance.subprocess, "run", fake_run)
    assert provenance.git_commit(tmp_path) == "abc1234-dirty"

    def timeout(args, **kwargs):
        raise subprocess.TimeoutExpired(args, 10)

    monkeypatch.setattr(provenance.subprocess, "run", timeout)
    assert provenance.git_commit(tmp_path) is None


def test_device_name_cpu() -> None:
    from bench.execution.provenance import device_name

    name = device_name(torch.device("cpu"))
    assert name.endswith(f"({torch.get_num_threads()} threads)")


class FakeCudaMemory:
    """torch.cuda's allocation counters, simulated on a CPU: allocated bytes and their peak."""

    def __init__(self) -> None:
        self.allocated = 0
        self.peak = 0

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def free(self, n: int) -> None:
        self.allocated -= n

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(cuda, "current_device", lambda: 0)
        monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: self.peak)
        monkeypatch.setattr(cuda, "mem_get_info", lambda device=None: (10**15, 10**15))

        def reset(device: object = None) -> None:
            self.peak = self.allocated

        monkeypatch.setattr(cuda, "reset_peak_memory_stats", reset)


def test_fit_peak_memory_keeps_training_when_the_batch_probe_resets_the_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sequence of a RADAR fit inside the runner's measurement: training (its own nested
    # PeakMemory) peaks at 500 MB, then the automatic-batch probe resets the CUDA peak counter
    # and peaks at 50 MB, then the scorer's pass at 100 MB. The fit's peak is training's.
    from bench.methods.radar.patches import MAX_AUTO_BATCH, chunk_for_memory

    mem = FakeCudaMemory()
    mem.install(monkeypatch)
    mb = 2**20

    def probe_forward(batch: torch.Tensor) -> torch.Tensor:
        mem.alloc(50 * mb)
        mem.free(50 * mb)
        return batch

    with PeakMemory("cuda") as fit:
        with PeakMemory("cuda:0") as train:
            mem.alloc(500 * mb)
            mem.free(500 * mb)
        rows = chunk_for_memory(probe_forward, torch.zeros(1, 1, 4, 4), torch.device("cuda"))
        mem.alloc(100 * mb)
        mem.free(100 * mb)
    assert train.peak_mb == 500
    assert fit.peak_mb == 500  # was 100: the probe's reset erased training
    assert rows == MAX_AUTO_BATCH  # a petabyte free: the cap, below CUDA's 65,535 grid limit
    with PeakMemory("cuda") as after:  # closed blocks are forgotten: a fresh block starts at 0
        mem.alloc(10 * mb)
    assert after.peak_mb == 10
