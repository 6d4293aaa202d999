"""The U-Net and noise-schedule parameters the diffusion methods share, checked once.

RADAR, DiffusionAD and ddpm_recon each declare ``block_out_channels``, ``layers_per_block``,
``norm_num_groups``, ``attention``, ``num_train_timesteps`` and ``beta_schedule`` in their own
parameter dataclass, with their own defaults and sources (:mod:`bench.util.sources`) and at
their own place in it (the order is part of every record's parameters and so of the job
hashes); this module holds what they have in common: the checks and building the U-Net.

>>> from dataclasses import dataclass
>>> from bench.util.validation import field_check
>>> @dataclass(frozen=True)
... class P:
...     block_out_channels: tuple[int, ...] = (16, 32)
...     layers_per_block: int = 1
...     norm_num_groups: int = 8
...     attention: bool = True
...     num_train_timesteps: int = 1000
...     beta_schedule: str = "linear"
>>> check = field_check("m", P())
>>> unet_levels(check, P()), check_unet(check, P(), min_timesteps=2)
(2, None)
>>> unet_from(P(), sample_size=16, channels=1).config.block_out_channels
(16, 32)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from diffusers import UNet2DModel

from bench.interface import RunContext
from bench.methods.diffusion.ddpm import BETA_SCHEDULES, build_unet
from bench.util.validation import FieldCheck


class UNetParams(Protocol):
    """The shared fields of a diffusion method's parameter dataclass."""

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    norm_num_groups: int
    attention: bool
    num_train_timesteps: int
    beta_schedule: str


def unet_levels(check: FieldCheck, params: UNetParams) -> int:
    """The U-Net's number of resolution levels, after checking there is at least one.

    ``block_out_channels`` becomes a tuple first: the registry passes lists for tuple fields
    given as Python values, and the record and the hash must not tell the two apart.
    """
    object.__setattr__(params, "block_out_channels", tuple(params.block_out_channels))
    levels = len(params.block_out_channels)
    check(levels >= 1, "block_out_channels", "a non-empty tuple of channel counts")
    return levels


def check_unet(check: FieldCheck, params: UNetParams, min_timesteps: int) -> None:
    """The group norms, the channel counts, the depth and the noise schedule.

    ``min_timesteps``: RADAR needs one step, the reconstruction methods a small and a larger one.
    """
    groups = params.norm_num_groups
    check(groups >= 1, "norm_num_groups", ">= 1")
    check(
        all(c >= 1 and c % groups == 0 for c in params.block_out_channels),
        "block_out_channels",
        f"positive multiples of norm_num_groups ({groups})",
    )
    check(params.layers_per_block >= 1, "layers_per_block", ">= 1")
    check(
        params.num_train_timesteps >= min_timesteps,
        "num_train_timesteps",
        f">= {min_timesteps}",
    )
    check(params.beta_schedule in BETA_SCHEDULES, "beta_schedule", f"one of {BETA_SCHEDULES}")


def unet_from(params: UNetParams, sample_size: int, channels: int) -> UNet2DModel:
    """The noise-prediction U-Net these parameters describe (:func:`~.ddpm.build_unet`)."""
    return build_unet(
        sample_size,
        channels,
        params.block_out_channels,
        params.layers_per_block,
        params.norm_num_groups,
        params.attention,
    )


#: The CPU-sized U-Net of the diffusion baselines' ``quick`` presets (each adds its own
#: training length): 64 px grayscale, three levels, one layer per block.
QUICK_UNET: dict[str, object] = {
    "image_size": 64,
    "grayscale": True,
    "block_out_channels": (16, 32, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
}


class Fitted(Protocol):
    device_: torch.device
    noise_seed_: int


def begin_fit(detector: Fitted, ctx: RunContext, noise_stream: int) -> torch.device:
    """Record the fit's device and the seed of its per-image test noise (drawn from the job's
    ``noise_stream``), so that predict does not depend on what ran before it."""
    detector.device_ = ctx.device
    detector.noise_seed_ = ctx.generator(noise_stream).initial_seed()
    return ctx.device


@contextmanager
def seeded_init(ctx: RunContext, init_stream: int) -> Iterator[None]:
    """Initialise networks from the job's ``init_stream`` without touching the global RNG that
    the rest of the job draws from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.generator(init_stream).initial_seed())
        yield


def cut_training_flags(params: UNetParams, paper: UNetParams, length: str) -> list[str]:
    """``train:cut`` for the paper network (its ``block_out_channels``) trained shorter than the
    paper's ``length`` (``epochs``, ``train_steps``): a GPU window's budget, or a speed run's
    handful of steps. A smaller network is marked by its preset (``preset:cpu``) instead."""
    short = getattr(params, length) < getattr(paper, length)
    same_net = tuple(params.block_out_channels) == tuple(paper.block_out_channels)
    return ["train:cut"] if short and same_net else []
