"""Test helpers: a tiny, real detector for exercising the runner without training a network,
the smallest settings of every method, and ``bench`` called in-process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from bench.interface import ImageSet, InputSpec, Prediction, RunContext
from bench.methods.registry import MethodEntry, register_method
from bench.util.errors import ConfigError

# Each method's smallest working settings (a fit takes a second or two), shared by its own tests
# and the contract test (test_method_contract.py) that every registered method passes.

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

DIFFUSIONAD_TINY: dict[str, object] = dict(
    image_size=32,
    grayscale=True,
    block_out_channels=(8, 16),
    norm_num_groups=8,
    seg_base_width=4,
    epochs=1,
    batch_size=8,
    top_k=5,
)

DDPM_RECON_TINY: dict[str, object] = dict(
    image_size=16,
    grayscale=True,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=8,
    epochs=1,
    batch_size=8,
    t_start=40,
    steps=4,
    sampler="ddim",
    map_sigma=1.0,
    ssim_window=5,
)

# Bui & Apley at 24 px, 4 neighbours, 2-fold pruning over 3 alphas.
BUI_APLEY_TINY: dict[str, object] = dict(
    image_size=24, nb=(1,), w=5, xval=2, n_alphas=3, cv_pixels=500
)

# anomalib models that run offline with random weights (or need none), each with overrides that
# make a fit take seconds: one training step for the models that train (memory-bank models fit
# in one pass anyway). ANOMALIB_TINY applies to all of them.
ANOMALIB_TINY: dict[str, object] = {
    "image_size": 32,
    "max_epochs": 1,
    "train_batch_size": 3,
    "eval_batch_size": 4,
}
ANOMALIB_OFFLINE: dict[str, dict[str, object]] = {
    "patchcore": {"backbone": "resnet18", "coreset_sampling_ratio": 0.05},
    "padim": {},
    "fastflow": {"flow_steps": 2, "max_steps": 1},
    "cflow": {
        "backbone": "resnet18",
        "layers": ("layer2", "layer3"),
        "coupling_blocks": 2,
        "fiber_batch_size": 4,
        "max_steps": 1,
    },
    "reverse_distillation": {"backbone": "resnet18", "max_steps": 1},
    "dfm": {"backbone": "resnet18", "pooling_kernel_size": 1},
    "dfkde": {"n_pca_components": 4},
    "fre": {"backbone": "resnet18", "latent_dim": 8, "max_steps": 1},
    "ganomaly": {"n_features": 8, "latent_vec_size": 8, "batch_size": 3, "max_steps": 1},
    "draem": {"max_steps": 1},
}


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


class MeanDiff:
    """Distance of each pixel to the per-pixel mean of the training images."""

    name = "meandiff"

    def __init__(self, params: MeanDiffParams) -> None:
        self.params = params

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec((self.params.image_size, self.params.image_size), grayscale=True)

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


# -- small inputs (tests get these as fixtures: conftest.py) -----------------------------------

RandomImages = Callable[..., ImageSet]
CpuContext = Callable[..., RunContext]
TinyUNet = Callable[[int, tuple[int, ...]], torch.nn.Module]


def make_random_images(
    n: int, size: int, seed: int = 0, name: str = "good/{i:03d}.png"
) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(
        images=torch.rand(n, 1, size, size, generator=g),
        labels=torch.zeros(n, dtype=torch.long),
        masks=None,
        names=[name.format(i=i, seed=seed) for i in range(n)],
    )


def make_cpu_ctx(
    seed: int = 0,
    work_dir: Path = Path("."),
    cache_dir: Path | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> RunContext:
    ctx = RunContext(seed=seed, device=torch.device("cpu"), work_dir=work_dir, cache_dir=cache_dir)
    if progress is not None:
        ctx.progress = progress
    return ctx


def make_tiny_unet(sample_size: int, block_out_channels: tuple[int, ...]) -> torch.nn.Module:
    from bench.methods.diffusion.ddpm import build_unet

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_unet(sample_size, 1, block_out_channels, norm_num_groups=8).eval()


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

    from bench.cli import commands as cli

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
