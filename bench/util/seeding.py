"""One seed per job for every source of randomness, and a fixed thread count.

On the CPU, floating-point reductions depend on how work is split between threads, so the same
seed gives bit-identical numbers only at the same thread count: the runner fixes it per job and
records it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def seed_everything(seed: int, threads: int | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if threads is not None:
        torch.set_num_threads(threads)


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one image: a stable hash (sha256) of the job's seed and the image's
    name, so that an image's random draws depend on that image alone, never on its position
    in a set or on the batch it is predicted in."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def image_generators(
    seed: int, names: Sequence[str], device: torch.device | str
) -> list[torch.Generator]:
    """One generator per image on ``device``, seeded by :func:`image_seed`."""
    return [torch.Generator(device=device).manual_seed(image_seed(seed, n)) for n in names]


def per_image_randn(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise of ``shape`` (N, ...), row ``i`` drawn from ``generators[i]`` (on
    the generators' device, then moved to ``device``). Drawing twice from the same generators
    gives each image its next independent draw."""
    rows = [
        torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generators
    ]
    if len(rows) != shape[0]:
        raise ValueError(f"{len(rows)} generators for {shape[0]} images")
    if not rows:
        return torch.empty(tuple(shape), device=device, dtype=dtype)
    return torch.cat(rows).to(device)
