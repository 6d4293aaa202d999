"""Test helpers: a tiny, real detector for exercising the runner without training a network,
and the smallest RADAR configuration the RADAR tests share."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal

import torch

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext
from bench.methods.registry import register_method
from bench.util.errors import ConfigError

# RADAR parameters of a U-Net small enough that a fit takes a second or two.
RADAR_TINY: dict[str, object] = dict(
    image_size=32,
    patch_size=16,
    block_out_channels=(8, 16),
    norm_num_groups=8,
    train_steps=3,
    batch_size=8,
    infer_stride=8,
    infer_batch=16,
)


@dataclass
class MeanDiffParams:
    image_size: int = 32
    reduce: Literal["max", "mean"] = "max"
    fail: bool = False
    scale: float = 1.0
    channels: tuple[int, ...] = (1, 2)
    maps: bool = True  # False: image scores only (skips pixel metrics, which import anomalib)

    def __post_init__(self) -> None:
        if self.image_size < 4:
            raise ConfigError(f"meandiff.image_size must be >= 4, got {self.image_size}")


class MeanDiff(Method[MeanDiffParams]):
    """Distance of each pixel to the per-pixel mean of the training images."""

    name = "meandiff"
    params_cls = MeanDiffParams

    def fit(self, train: ImageSet, ctx: RunContext) -> MeanDiff:
        # Test hooks for run-level tests in subprocesses, as environment variables so that they
        # do not change the job identity: MEANDIFF_TRACE appends "seed pid" per fit to a file
        # (who computed what); MEANDIFF_SLEEP_S keeps the job busy (something to kill) and
        # MEANDIFF_GATE holds it until that file exists, both only for seed MEANDIFF_SLEEP_SEED
        # when that is set.
        trace = os.environ.get("MEANDIFF_TRACE")
        if trace:
            with open(trace, "a", encoding="utf-8") as fh:
                fh.write(f"{ctx.seed} {os.getpid()}\n")
        if os.environ.get("MEANDIFF_SLEEP_SEED", str(ctx.seed)) == str(ctx.seed):
            time.sleep(float(os.environ.get("MEANDIFF_SLEEP_S", "0")))
            gate = os.environ.get("MEANDIFF_GATE")
            while gate and not os.path.exists(gate):
                time.sleep(0.05)
        if self.params.fail:
            raise RuntimeError("asked to fail")
        self.mean_ = train.images.mean(0, keepdim=True)
        self.std_ = train.images.std(0, keepdim=True) + 1e-3
        # A little seeded noise so that seeds matter, as they do for real methods.
        self.jitter_ = torch.rand(1, generator=ctx.generator()).item() * 1e-3
        return self

    def predict(self, test: ImageSet) -> Prediction:
        maps = ((test.images - self.mean_).abs() / self.std_).mean(1) * self.params.scale
        flat = maps.flatten(1)
        scores = (flat.amax(1) if self.params.reduce == "max" else flat.mean(1)) + self.jitter_
        return Prediction(
            scores=scores,
            decisions=(scores > scores.median()).long(),
            maps=maps if self.params.maps else None,
        )


def register_meandiff() -> None:
    register_method(
        MethodEntry(
            name="meandiff",
            params_cls=MeanDiffParams,
            build=MeanDiff,
            summary="test-only: per-pixel z-score against the training mean",
            presets={"quick": {"image_size": 24}},
        )
    )


def bench_exit_code(argv: list[str]) -> int:
    """``bench ARGV`` in this process (test-only methods stay registered); its exit code."""
    import sys

    import pytest

    from bench import cli

    old = sys.argv
    sys.argv = ["bench", *argv]
    try:
        with pytest.raises(SystemExit) as done:
            cli.main()
    finally:
        sys.argv = old
    return int(done.value.code or 0)


def bench_output(argv: list[str], capsys: object) -> tuple[int, str, str]:
    """``bench ARGV`` in this process: exit code, stdout, stderr (``capsys`` is pytest's)."""
    code = bench_exit_code(argv)
    out = capsys.readouterr()  # type: ignore[attr-defined]
    return code, out.out, out.err


def use_dataset(monkeypatch, make) -> None:
    """Make every dataset ``make(spec, root)``: where a run validates its datasets up front
    (:func:`bench.execution.runner.prepare`) and where each job loads one
    (:func:`bench.execution.job.run_job`)."""
    from bench.execution import job, runner

    monkeypatch.setattr(runner, "make_dataset", make)
    monkeypatch.setattr(job, "make_dataset", make)
