"""Where a number came from: package versions, machine, numeric flags, code revision.

Stored next to every result so that two runs that disagree can be told apart by what differed
(a torch upgrade, TF32 switched on, a dirty checkout) rather than by guesswork. The
environment records no host name or user (result files get shared); only a record's
``launcher`` block names the host and process that ran the job (:func:`process_info`), as the
README's "Provenance" promises for every launcher.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

#: Report key -> distribution name on the package index.
PACKAGES: dict[str, str] = {
    "bench": "radar-bench",
    "torch": "torch",
    "torchvision": "torchvision",
    "diffusers": "diffusers",
    "anomalib": "anomalib",
    "scikit-learn": "scikit-learn",
    "numpy": "numpy",
    "pandas": "pandas",
    "kornia": "kornia",
    "torchmetrics": "torchmetrics",
}


def process_info() -> dict[str, object]:
    """Host name and process id of this process: where a job ran."""
    return {"host": platform.node(), "pid": os.getpid()}


def package_versions() -> dict[str, str]:
    """Installed versions without importing the packages (anomalib alone takes ~10 s)."""
    out: dict[str, str] = {}
    for key, dist in PACKAGES.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = "absent"
    if out["bench"] == "absent":  # a source checkout that was never pip-installed
        from bench.util.version import __version__

        out["bench"] = __version__
    return out


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """CPU model string, e.g. ``AMD EPYC 7763 64-Core Processor``; best effort, never raises."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _flag(read: Callable[[], object]) -> object:
    try:
        return read()
    except Exception:  # an attribute a future or older torch does not have
        return None


def torch_flags() -> dict[str, object]:
    """The switches that change numeric results or speed: determinism, autotune, TF32."""
    return {
        "cudnn_deterministic": _flag(lambda: bool(torch.backends.cudnn.deterministic)),
        "cudnn_benchmark": _flag(lambda: bool(torch.backends.cudnn.benchmark)),
        "cuda_matmul_allow_tf32": _flag(lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        "cudnn_allow_tf32": _flag(lambda: bool(torch.backends.cudnn.allow_tf32)),
        "float32_matmul_precision": _flag(torch.get_float32_matmul_precision),
        "deterministic_algorithms": _flag(torch.are_deterministic_algorithms_enabled),
        "deterministic_algorithms_warn_only": _flag(
            torch.is_deterministic_algorithms_warn_only_enabled
        ),
        "cudnn_enabled": _flag(lambda: bool(torch.backends.cudnn.enabled)),
        "cuda_matmul_allow_fp16_reduced_precision": _flag(
            lambda: bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)
        ),
        "cuda_matmul_allow_bf16_reduced_precision": _flag(
            lambda: bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
        ),
        "mkldnn_enabled": _flag(lambda: bool(torch.backends.mkldnn.enabled)),
        # CPU reductions split work by thread, so these change the last bits of CPU results.
        "num_threads": _flag(torch.get_num_threads),
        "num_interop_threads": _flag(torch.get_num_interop_threads),
    }


def git_commit(path: str | Path) -> str | None:
    """Short commit of the checkout holding ``path``, with ``-dirty`` when tracked files have
    uncommitted changes (untracked files do not count: result folders would always trip it).
    None outside a git checkout, without git, or on any error: provenance must never fail a
    run."""
    # GIT_OPTIONAL_LOCKS=0: do not refresh the index, which would take .git/index.lock and could
    # collide with the user's own git commands running at the same time.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    cwd = Path(path)
    if cwd.is_file():
        cwd = cwd.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if sha.returncode != 0 or not sha.stdout.strip():
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = sha.stdout.strip()
    if status.returncode != 0:
        return commit + "-unknown"  # committed revision known, state of the tree not
    return commit + ("-dirty" if status.stdout.strip() else "")


def device_name(device: torch.device | str) -> str:
    """Human name of the device that ran a job: ``NVIDIA H100 80GB HBM3`` or
    ``AMD EPYC 7763 64-Core Processor (8 threads)`` (torch threads, which set CPU speed)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return torch.cuda.get_device_name(dev)
        except Exception:
            return "CUDA device (name unavailable)"
    if dev.type == "cpu":
        return f"{cpu_model()} ({torch.get_num_threads()} threads)"
    return str(dev)


def environment(repo: str | Path | None = None) -> dict[str, object]:
    """Everything above in one JSON-able dict. ``repo`` defaults to this package's checkout."""
    if repo is None:
        repo = Path(__file__).resolve().parent
    cuda = torch.cuda.is_available()
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": {
            "arch": platform.machine(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
        },
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": _flag(torch.get_num_interop_threads),
        "torch_flags": torch_flags(),
        "cuda": {
            "available": cuda,
            "torch_cuda_version": torch.version.cuda,
            "cudnn_version": _flag(torch.backends.cudnn.version) if cuda else None,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda
            else [],
        },
        "git_commit": git_commit(repo),
    }
