"""FLOPs of one forward pass, counted by torch's own dispatcher-level counter.

Records carry GFLOP per test image so that speed claims can name their cost, whatever device
they were measured on, and the training cost (``fit_info.train_gflops``: one training step's
forward + backward, counted once, times the samples seen) so that quality can be drawn against
compute. torch counts a multiply-add as 2 FLOPs (matmul, convolution, attention).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_gflops(fn, *args, **kwargs) -> float:
    """GFLOPs of ``fn(*args, **kwargs)``, run once under no_grad."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    return counter.get_total_flops() / 1e9


def count_train_gflops(step: Callable[..., Tensor], *modules: nn.Module) -> float:
    """GFLOPs of one training step: the forward pass of ``step(*meta_modules)``, which returns
    a loss, plus its backward pass (about twice the forward). The optimiser update is not
    counted.

    ``step`` gets copies of ``modules`` on the ``meta`` device (shapes, no data) and must build
    its inputs there too: nothing is computed, no gradient or running statistic of the real
    modules changes and no random number is drawn, so counting never changes a result, and a
    paper-size network costs no more to count than a tiny one.

    >>> lin = nn.Linear(10, 10)
    >>> count_train_gflops(lambda m: m(torch.zeros(4, 10, device="meta")).sum(), lin)
    1.6e-06
    """
    meta = [copy.deepcopy(m).to("meta") for m in modules]
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        step(*meta).backward()
    return counter.get_total_flops() / 1e9


class FlopMeter:
    """Counts the FLOPs torch runs between ``start()`` and ``stop()``, forward and backward, for
    loops the suite does not own (a Lightning fit: started and stopped from its hooks). Counting
    observes the operators only: results are the same as without it.

    >>> meter = FlopMeter()
    >>> meter.start()
    >>> nn.Linear(10, 10)(torch.zeros(4, 10)).sum().backward()
    >>> meter.stop()
    1.6e-06
    """

    def __init__(self) -> None:
        self._counter: FlopCounterMode | None = None

    @property
    def running(self) -> bool:
        return self._counter is not None

    def start(self) -> None:
        self._counter = FlopCounterMode(display=False)
        self._counter.__enter__()

    def stop(self) -> float:
        """GFLOPs counted since ``start()``."""
        counter, self._counter = self._counter, None
        assert counter is not None, "FlopMeter.stop() without start()"
        counter.__exit__(None, None, None)
        return counter.get_total_flops() / 1e9
