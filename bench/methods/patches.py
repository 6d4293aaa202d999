"""Patches: where they sit, cutting them out, putting them back, and running a model over them.

RADAR trains and runs its U-Net on ``patch x patch`` windows of the image rather than on the
whole image, which keeps the network small and lets a few images yield many training samples.

Patch positions along an axis are the stride grid ``0, s, 2s, ...`` plus, when the grid does not
end exactly at ``size - patch``, that final position: the last rows and columns are then covered
by a patch that overlaps its neighbour more, instead of padding the image with content the model
never saw in training. Recombination averages the overlapping predictions per pixel.

>>> import torch
>>> starts = patch_starts(10, 4, 3)
>>> starts.tolist()
[0, 3, 6]
>>> patch_starts(11, 4, 3).tolist()  # 6 + 4 < 11: the final position 7 is added
[0, 3, 6, 7]
>>> x = torch.rand(2, 1, 10, 10)
>>> p = extract_patches(x, 4, starts, starts)
>>> p.shape
torch.Size([18, 1, 4, 4])
>>> torch.allclose(fold_patches(p, (10, 10), starts, starts), x)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from torch import Tensor

from bench.methods.ddpm import add_noise

log = logging.getLogger(__name__)

OutOfMemory = torch.cuda.OutOfMemoryError


def patch_starts(size: int, patch: int, stride: int) -> Tensor:
    """Start offsets of the patches along one axis: the stride grid plus ``size - patch``."""
    if not 1 <= patch <= size:
        raise ValueError(f"patch {patch} does not fit in {size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return torch.tensor(starts, dtype=torch.long)


def _windows(x: Tensor, patch: int) -> Tensor:
    # A view (N, C, H-p+1, W-p+1, p, p) of every stride-1 window: indexing it copies only the
    # patches asked for, never all of them.
    return x.unfold(2, patch, 1).unfold(3, patch, 1)


def extract_patches(x: Tensor, patch: int, ys: Tensor, xs: Tensor) -> Tensor:
    """(N, C, H, W) -> (N * len(ys) * len(xs), C, p, p), image-major, then row, then column."""
    c = x.shape[1]
    w = _windows(x, patch)
    w = w.index_select(2, ys.to(x.device)).index_select(3, xs.to(x.device))
    return w.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, patch, patch)


def fold_patches(patches: Tensor, size: tuple[int, int], ys: Tensor, xs: Tensor) -> Tensor:
    """Inverse of :func:`extract_patches`: sum the patches in place, divide by the overlap count.

    ``F.fold`` needs a regular grid; the positions (stride grid plus the final one) all lie on the
    stride-1 grid, so the patches are placed there, the positions not used left at zero, and the
    count of patches per pixel is folded the same way.
    """
    h, w = size
    c, p = patches.shape[1], patches.shape[-1]
    ny, nx = len(ys), len(xs)
    n = patches.shape[0] // (ny * nx)
    cols = patches.reshape(n, ny * nx, c * p * p).transpose(1, 2)
    gh, gw = h - p + 1, w - p + 1
    if ny * nx == gh * gw:  # stride 1: already the full grid
        ones = torch.ones(1, p * p, gh * gw, device=patches.device, dtype=patches.dtype)
    else:
        idx = (ys.to(patches.device)[:, None] * gw + xs.to(patches.device)[None, :]).reshape(-1)
        dense = patches.new_zeros(n, c * p * p, gh * gw)
        dense[:, :, idx] = cols
        cols = dense
        ones = patches.new_zeros(1, p * p, gh * gw)
        ones[:, :, idx] = 1.0
    summed = F.fold(cols, (h, w), p)
    count = F.fold(ones, (h, w), p)
    if not bool((count > 0).all()):
        raise ValueError("the patches leave pixels uncovered (a stride larger than the patch?)")
    return summed / count


def sample_patches(
    x: Tensor, patch: int, ys: Tensor, xs: Tensor, batch: int, generator: torch.Generator
) -> Tensor:
    """``batch`` random (image, position) patches, uniformly over images and grid positions.

    Drawing positions per step is the same in expectation as shuffling the materialised set of
    all patches, without holding that set in memory. ``generator`` lives on ``x``'s device.
    """
    dev = x.device
    i = torch.randint(0, x.shape[0], (batch,), generator=generator, device=dev)
    yi = torch.randint(0, len(ys), (batch,), generator=generator, device=dev)
    xi = torch.randint(0, len(xs), (batch,), generator=generator, device=dev)
    return _windows(x, patch)[i, :, ys.to(dev)[yi], xs.to(dev)[xi]]


def map_in_chunks(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    chunk: int,
    oom: type[BaseException] | tuple[type[BaseException], ...] = OutOfMemory,
) -> tuple[Tensor, int]:
    """``fn`` over ``x`` in slices of ``chunk`` rows, halving ``chunk`` whenever ``oom`` is raised.

    Returns the concatenated output and the chunk size that worked, so that the caller can start
    there next time. ``oom`` is a parameter so that tests can simulate an out-of-memory on a CPU.
    """
    outs: list[Tensor] = []
    i = 0
    while i < x.shape[0]:
        failed = False
        try:
            outs.append(fn(x[i : i + chunk]))
        except oom:
            if chunk == 1:
                raise
            failed = True
        if failed:
            # Outside the except block: the exception's traceback pins the failed pass's
            # activations until the block ends, and empty_cache could not release them.
            log.warning("out of memory at %d patches per pass; retrying with %d", chunk, chunk // 2)
            chunk //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        i += outs[-1].shape[0]
    return torch.cat(outs), chunk


def predict_noise_map(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    x0: Tensor,
    t: int,
    patch: int,
    stride: int,
    chunk: int,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
    oom: type[BaseException] | tuple[type[BaseException], ...] = OutOfMemory,
) -> tuple[Tensor, int]:
    """RADAR's single forward step: noise ``x0`` to step ``t``, predict the noise patch-wise.

    Every image is noised with one draw from ``generator`` (in image order, so a set's maps depend
    only on the set and the generator's seed), cut into patches at ``stride``, the patches of
    several images are pushed through the U-Net together in chunks of ``chunk``, and the
    predicted noise is folded back into one (N, C, H, W) map per image with overlaps averaged.
    Returns the map and the chunk size that fitted in memory.
    """
    unet.eval()
    dev = x0.device
    n, _, h, w = x0.shape
    ys, xs = patch_starts(h, patch, stride), patch_starts(w, patch, stride)
    per_image = len(ys) * len(xs)
    eps = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype)
    x_t = add_noise(scheduler, x0, eps.to(dev), t)
    group = max(1, math.ceil(chunk / per_image))

    def forward(batch: Tensor) -> Tensor:
        steps = torch.full((batch.shape[0],), t, device=dev, dtype=torch.long)
        with torch.autocast(
            dev.type, dtype=autocast_dtype or torch.float32, enabled=bool(autocast_dtype)
        ):
            return unet(batch, steps).sample.float()

    maps = []
    with torch.inference_mode():
        for g in range(0, n, group):
            patches = extract_patches(x_t[g : g + group], patch, ys, xs)
            eps_hat, chunk = map_in_chunks(forward, patches, chunk, oom)
            maps.append(fold_patches(eps_hat, (h, w), ys, xs))
    return torch.cat(maps), chunk
