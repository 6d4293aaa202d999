"""Typed run configuration, its expansion into jobs, and the hashes that name them.

A job's identity is the hash of everything that can change its numbers (method, every
effective parameter, dataset and data root, seed, device type, the threshold protocol: rule,
calibration fraction (it changes the images a method is fit on) and target FPR); timing settings
and thread counts are not part of it. The same job hash in a results folder means "already done",
which is what makes runs resumable from any launcher.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.evaluation.protocol import (
    DEFAULT_CALIBRATION_FRACTION,
    DEFAULT_RULE,
    DEFAULT_TARGET_FPR,
    ThresholdProtocol,
)
from bench.methods import registry
from bench.store.schema import MAX_SEED
from bench.util.errors import ConfigError, DeviceError
from bench.util.hashing import stable_hash


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; an explicit device that is absent is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {device}: CUDA is not available on this machine "
                "(use --device cpu or --device auto)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    return dev


#: More seeds than this in one ``a-b`` range is a typo, not a grid (and would fill the memory).
MAX_SEEDS = 10_000


def check_seed(seed: int, flag: str = "--seed") -> int:
    """``seed`` if every seeded library accepts it (numpy and scikit-learn's ``random_state``
    take 0 .. 2**32 - 1), else a ConfigError before anything runs."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{flag} {seed}: expected an integer from 0 to {MAX_SEED} (2**32 - 1)")
    return seed


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> list of ints, each in 0 .. 2**32 - 1."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = (int(x) for x in part.split("-"))
                check_seed(hi, f"--seeds {text!r}:")  # before the range is built
                if hi - lo >= MAX_SEEDS:
                    raise ConfigError(f"--seeds {text!r}: at most {MAX_SEEDS} seeds in a range")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: expected integers like 0,1,2 or 0-4") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: expected non-negative integers like 0,1,2")
    for seed in seeds:
        check_seed(seed, f"--seeds {text!r}:")
    return list(dict.fromkeys(seeds))


def split_names(text: str, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{flag}: expected a comma-separated list, got {text!r}")
    return list(dict.fromkeys(names))


def default_threads() -> int:
    """A fixed thread count per job: the same seed gives the same bits only at the same count."""
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass
class JobsConfig:
    """What every grid of jobs is asked for, by ``bench run`` / ``bench ablate``
    (:class:`RunConfig`) and ``bench speed`` (:class:`bench.execution.speed.SpeedConfig`):
    the fields the one-job pipeline (:mod:`bench.execution.job`) reads. Field names are the
    keys of a manifest's ``config``; a subclass adds only its own settings."""

    methods: list[str]
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    preset: str = "auto"
    device: str = "auto"
    sets: dict[str, dict[str, str]] = field(default_factory=dict)
    data_root: Path | None = None
    threads: int = field(default_factory=default_threads)
    # The threshold protocol (bench.evaluation.protocol): --threshold, --calibration-fraction,
    # --target-fpr.
    threshold: str = DEFAULT_RULE
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION
    target_fpr: float = DEFAULT_TARGET_FPR

    @property
    def protocol(self) -> ThresholdProtocol:
        """The validated threshold protocol (ConfigError naming the flag when out of range)."""
        return ThresholdProtocol(self.threshold, self.calibration_fraction, self.target_fpr)

    @property
    def config_hash(self) -> str:
        """Identity of the run (each subclass says which of its settings belong to it)."""
        raise NotImplementedError

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["data_root"] = None if self.data_root is None else str(self.data_root)
        return d

    def job_data_root(self, dataset: str) -> str | None:
        """The data root that is part of a job's identity: none for the generated synthetic
        sets (they read no files, so the folder cannot change their numbers), else the
        resolved ``--data-root``."""
        if dataset.startswith("synthetic") or self.data_root is None:
            return None
        return str(Path(self.data_root).resolve())


@dataclass
class RunConfig(JobsConfig):
    """What ``bench run`` (and ``bench ablate``) was asked for."""

    seeds: list[int] = field(default_factory=lambda: [0])
    timing_repeats: int = 5
    timing_warmup: int = 1

    @property
    def config_hash(self) -> str:
        """Identity of the run: what was asked for, not how it was timed."""
        d = self.to_json()
        for key in ("threads", "timing_repeats", "timing_warmup"):
            d.pop(key)
        return stable_hash(d)

    def default_run_id(self) -> str:
        label = "-".join([*self.methods[:3], *(d.split(":")[-1] for d in self.datasets[:2])])
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60]
        return f"{label}-{self.config_hash[:8]}"


@dataclass(frozen=True)
class JobSpec:
    """One (method, effective parameters, dataset, seed) cell of the grid."""

    method: str
    params: dict[str, object]
    preset: str
    dataset: str
    seed: int
    device_type: str
    data_root: str | None = None
    # Extra keys copied into the job's record (bench ablate: "varied", "ablation"); not part of
    # the job's identity, so the same job found by `bench run` and `bench ablate` is one job.
    record_extra: dict[str, object] = field(default_factory=dict, compare=False)
    # The threshold protocol: its calibration hold-out changes the images a method is fit on.
    threshold: ThresholdProtocol = field(default_factory=ThresholdProtocol)

    def identity(self) -> dict[str, object]:
        return {
            "method": self.method,
            "params": self.params,
            "dataset": self.dataset,
            "data_root": self.data_root,
            "seed": self.seed,
            "device_type": self.device_type,
            "threshold": self.threshold.identity(),
        }

    @property
    def job_id(self) -> str:
        return stable_hash(self.identity(), 16)

    @property
    def params_hash(self) -> str:
        return stable_hash({"method": self.method, "params": self.params})

    def label(self) -> str:
        return f"{self.method} · {self.dataset} · seed {self.seed}"


def expand_jobs(cfg: RunConfig, device: torch.device) -> list[JobSpec]:
    """Method x dataset x seed, with parameters resolved (preset + --set) and validated up front,
    so that a typo fails before hours of work rather than in the middle of them."""
    preset = registry.resolve_preset(cfg.preset, device.type)
    protocol = cfg.protocol
    for method in cfg.sets:
        registry.get_method(method)
    params = {
        m: registry.params_dict(registry.build_params(m, preset, cfg.sets.get(m)))
        for m in cfg.methods
    }
    return [
        JobSpec(m, params[m], preset, d, s, device.type, cfg.job_data_root(d), threshold=protocol)
        for d in cfg.datasets
        for m in cfg.methods
        for s in cfg.seeds
    ]
