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

from bench.methods.diffusion.ddpm import add_noise, padded_unet
from bench.util.timing import reset_cuda_peak

log = logging.getLogger(__name__)

OutOfMemory = torch.cuda.OutOfMemoryError

# The largest automatic batch: CUDA caps a kernel grid's y and z dimensions at 65,535 blocks, and
# FlashAttention (the U-Net's lowest-resolution attention) launches one block per sample there, so
# 65,536 rows fail with "invalid configuration argument". A multiple of 64 below that: 65,472.
MAX_AUTO_BATCH = 65_535 // 64 * 64

# What a CUDA kernel launch says when its grid or block size is out of range (a batch too large
# for one launch); not an out-of-memory error, but cured the same way: fewer rows per pass.
_LAUNCH_CONFIG_ERROR = "invalid configuration argument"


def is_launch_config_error(exc: BaseException) -> bool:
    """True for the CUDA error of a kernel launched with a grid too large for the device."""
    return isinstance(exc, RuntimeError) and _LAUNCH_CONFIG_ERROR in str(exc)


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
    all patches, without holding that set in memory. ``generator``, ``ys`` and ``xs`` live on
    ``x``'s device: a training step then draws and gathers without any host-to-device copy (a
    copy of CPU index tensors would block and synchronise the stream at every step).
    """
    dev = x.device
    if ys.device != dev or xs.device != dev:
        raise ValueError(
            f"sample_patches: ys and xs must be on the images' device {dev}, got "
            f"{ys.device} and {xs.device} (move them once, outside the training loop)"
        )
    i = torch.randint(0, x.shape[0], (batch,), generator=generator, device=dev)
    yi = torch.randint(0, len(ys), (batch,), generator=generator, device=dev)
    xi = torch.randint(0, len(xs), (batch,), generator=generator, device=dev)
    return _windows(x, patch)[i, :, ys[yi], xs[xi]]


def map_in_chunks(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    chunk: int,
    oom: type[BaseException] | tuple[type[BaseException], ...] = OutOfMemory,
    pad: bool = False,
) -> tuple[Tensor, int]:
    """``fn`` over ``x`` in slices of ``chunk`` rows, halving ``chunk`` whenever ``oom`` is raised.

    Returns the concatenated output and the chunk size that worked, so that the caller can start
    there next time. ``oom`` is a parameter so that tests can simulate an out-of-memory on a CPU.
    A CUDA launch-configuration error (:func:`is_launch_config_error`: a grid too large for one
    kernel launch) is halved once too; a second one is a real error and raised.
    ``pad``: when ``x`` takes several slices, a last slice shorter than ``chunk`` is padded (its
    last row repeated) to the next power of two rows (at most ``chunk``) and the padding's output
    dropped, so that ``fn`` sees few shapes whatever the number of rows (a compiled model or a
    CUDA graph is built once per shape) at less than twice the work of the tail. Rows must not
    interact inside ``fn`` (true of the U-Net: GroupNorm and attention act per sample).
    """
    outs: list[Tensor] = []
    i = 0
    launch_retried = False
    while i < x.shape[0]:
        failed = ""
        part = x[i : i + chunk]
        n = part.shape[0]
        if pad and n < chunk and x.shape[0] > chunk:
            size = min(chunk, 1 << (n - 1).bit_length())
            part = torch.cat([part, part[-1:].expand(size - n, *part.shape[1:])])
        try:
            outs.append(fn(part)[:n])
        except oom:
            if chunk == 1:
                raise
            failed = "out of memory"
        except RuntimeError as exc:
            if launch_retried or chunk == 1 or not is_launch_config_error(exc):
                raise
            launch_retried = True
            failed = "CUDA launch configuration error"
        if failed:
            # Outside the except block: the exception's traceback pins the failed pass's
            # activations until the block ends, and empty_cache could not release them.
            log.warning("%s at %d patches per pass; retrying with %d", failed, chunk, chunk // 2)
            chunk //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        i += outs[-1].shape[0]
    return torch.cat(outs), chunk


def unet_forward(
    unet: Callable[..., object],
    t: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    cuda_graphs: bool = False,
    multiple: int = 1,
) -> Callable[[Tensor], Tensor]:
    """``batch -> predicted noise`` (float32) of a U-Net at step ``t``, with the fast-path options.

    ``multiple``: inputs whose sides are not a multiple of it are reflect-padded up to one and
    the prediction cropped back (:func:`~bench.methods.diffusion.ddpm.padded_unet`), so that a
    U-Net that halves its input ``k`` times takes patches of any size (``multiple = 2 ** k``).

    ``autocast_dtype``: mixed precision (``torch.autocast``; bf16 works on CPU and CUDA, fp16 on
    CUDA). ``channels_last``: the input is handed over in NHWC memory order (the module itself
    must have been converted with ``unet.to(memory_format=torch.channels_last)``).
    ``cuda_graphs``: ``unet`` is a ``torch.compile``d module whose mode replays CUDA graphs
    ("reduce-overhead", "max-autotune"): each call is marked as a new step and its output cloned,
    since the next replay overwrites the graph's output buffer.
    """

    def forward(batch: Tensor) -> Tensor:
        steps = torch.full((batch.shape[0],), t, device=device, dtype=torch.long)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=bool(autocast_dtype)
        ):
            out = padded_unet(unet, batch, steps, multiple)
        return out.clone().float() if cuda_graphs else out.float()

    return forward


def chunk_for_memory(
    forward: Callable[[Tensor], Tensor],
    item: Tensor,
    device: torch.device,
    fraction: float = 0.5,
    probe: int = 16,
    cap: int = MAX_AUTO_BATCH,
) -> int:
    """The largest batch of ``item``-shaped inputs that fits in ``fraction`` of the free GPU memory.

    Measures the peak memory of one ``probe``-row forward pass (``torch.cuda.mem_get_info`` for
    what is free, ``max_memory_allocated`` for what a row costs), scales it to the free memory,
    rounds down to a multiple of 64 rows (tensor-core friendly) and caps it at ``cap``
    (:data:`MAX_AUTO_BATCH`: one kernel launch per pass stays within CUDA's grid limit). The
    out-of-memory halving of :func:`map_in_chunks` still backs it up. CUDA only.
    """
    if device.type != "cuda":
        raise ValueError(f"chunk_for_memory measures CUDA memory; got device {device}")
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    base = torch.cuda.memory_allocated(device)
    reset_cuda_peak(device)  # an open PeakMemory (the job's fit) keeps what it saw
    batch = item.expand(probe, *item.shape[1:]).contiguous()
    with torch.inference_mode():
        forward(batch)
    torch.cuda.synchronize(device)
    per_row = max(1, (torch.cuda.max_memory_allocated(device) - base) // probe)
    del batch
    torch.cuda.empty_cache()
    return auto_batch_rows(free, per_row, fraction, cap)


def auto_batch_rows(
    free_bytes: int, bytes_per_row: int, fraction: float = 0.5, cap: int = MAX_AUTO_BATCH
) -> int:
    """Rows that fit in ``fraction`` of ``free_bytes``: a multiple of 64 (when 64 or more fit),
    at least 1, at most ``cap`` rounded down to a multiple of 64."""
    rows = int(fraction * free_bytes // max(1, bytes_per_row))
    limit = cap - cap % 64 if cap >= 64 else cap
    rows = min(rows, limit)
    if rows >= 64:
        rows -= rows % 64
    return max(1, rows)


def noise_images(
    scheduler: DDPMScheduler, x0: Tensor, t: int, generator: torch.Generator
) -> Tensor:
    """``x_t`` of every image, with one noise draw from ``generator`` for the whole set, in image
    order (a set's noised images depend only on the set and the generator's seed)."""
    eps = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype)
    return add_noise(scheduler, x0, eps.to(x0.device), t)


def unet_noise_map(
    forward: Callable[[Tensor], Tensor],
    x_t: Tensor,
    patch: int,
    stride: int,
    chunk: int,
    oom: type[BaseException] | tuple[type[BaseException], ...] = OutOfMemory,
    pad: bool = False,
    group_chunks: int = 1,
) -> tuple[Tensor, int]:
    """The predicted-noise map of noised images: patches through ``forward``, folded back.

    Images are cut into patches at ``stride`` (``Tensor.unfold`` + index on the device; no
    Python loop over patches) a group at a time, the patches of the group's images are pushed
    through ``forward`` together in chunks of ``chunk``, and folded back (``F.fold``) into one
    (N, C, H, W) map per image with the overlaps averaged. A group holds enough images for
    ``group_chunks`` chunks: 1 keeps the memory of the patches small, more make fewer ragged last
    chunks (and fewer padded rows with ``pad``, see :func:`map_in_chunks`). A patch as large as
    the image is the whole-image pass. Returns the map and the chunk size that fitted in memory.
    """
    n, _, h, w = x_t.shape
    ys, xs = patch_starts(h, patch, stride), patch_starts(w, patch, stride)
    per_image = len(ys) * len(xs)
    maps = []
    g = 0
    while g < n:
        group = max(1, math.ceil(group_chunks * chunk / per_image))
        patches = extract_patches(x_t[g : g + group], patch, ys, xs)
        eps_hat, chunk = map_in_chunks(forward, patches, chunk, oom, pad)
        maps.append(fold_patches(eps_hat, (h, w), ys, xs))
        g += group
    return torch.cat(maps), chunk


def predict_noise_map(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    x0: Tensor,
    t: int,
    patch: int,
    stride: int,
    chunk: int,
    noise: torch.Generator | Tensor,
    autocast_dtype: torch.dtype | None = None,
    oom: type[BaseException] | tuple[type[BaseException], ...] = OutOfMemory,
    *,
    channels_last: bool = False,
    pad: bool = False,
    group_chunks: int = 1,
    cuda_graphs: bool = False,
    multiple: int = 1,
) -> tuple[Tensor, int]:
    """RADAR's single forward step: noise ``x0`` to step ``t``, predict the noise patch-wise.

    ``noise`` is the injected noise itself (``x0``'s shape; RADAR draws it per image, see
    :func:`bench.util.seeding.per_image_randn`) or a generator to draw it from in one go
    (:func:`noise_images`). :func:`unet_noise_map` then predicts the noise of every patch and
    folds them back into one (N, C, H, W) map per image. The keyword options are the inference
    fast paths (:func:`unet_forward`, :func:`unet_noise_map`) and ``multiple`` (patches of any
    size, :func:`unet_forward`); their defaults are the plain path. Returns the map and the
    chunk size that fitted in memory.
    """
    if isinstance(unet, torch.nn.Module):
        unet.eval()
    if isinstance(noise, torch.Generator):
        x_t = noise_images(scheduler, x0, t, noise)
    else:
        x_t = add_noise(scheduler, x0, noise.to(device=x0.device, dtype=x0.dtype), t)
    forward = unet_forward(
        unet, t, x0.device, autocast_dtype, channels_last, cuda_graphs, multiple=multiple
    )
    with torch.inference_mode():
        return unet_noise_map(forward, x_t, patch, stride, chunk, oom, pad, group_chunks)
