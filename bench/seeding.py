"""One seed per job for every source of randomness, and a fixed thread count.

On the CPU, floating-point reductions depend on how work is split between threads, so the same
seed gives bit-identical numbers only at the same thread count: the runner fixes it per job and
records it.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, threads: int | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if threads is not None:
        torch.set_num_threads(threads)
