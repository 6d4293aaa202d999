"""FLOPs of one forward pass, counted by torch's own dispatcher-level counter.

Records carry GFLOP per test image so that speed claims can name their cost, whatever device
they were measured on. torch counts a multiply-add as 2 FLOPs (matmul, convolution, attention).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_gflops(fn, *args, **kwargs) -> float:
    """GFLOPs of ``fn(*args, **kwargs)``, run once under no_grad."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    return counter.get_total_flops() / 1e9
