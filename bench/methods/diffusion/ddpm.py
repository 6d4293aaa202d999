"""The DDPM core shared by RADAR and the diffusion-reconstruction baselines.

A denoising diffusion probabilistic model (Ho et al., 2020) corrupts a clean image ``x0`` in
``T`` steps; with ``abar_t`` the cumulative product of ``alpha_s = 1 - beta_s`` up to ``t``, the
forward process has the closed form

    x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps,        eps ~ N(0, I)

and a U-Net ``eps_theta(x_t, t)`` is trained to predict ``eps`` (the L2 "simple" loss). Inverting
the closed form with the predicted noise gives the one-step estimate of the clean image

    x0_hat = (x_t - sqrt(1 - abar_t) * eps_hat) / sqrt(abar_t).

The network and the schedules are diffusers' (``UNet2DModel``, ``DDPMScheduler``); this module only
fixes the architecture family the suite uses and writes the two formulas once.

Step index convention. Every ``t`` in the suite (RADAR's ``t``, DiffusionAD's ``t_d``/``t_s``,
ddpm_recon's ``t_start``) is a *diffusers index* into ``0..T-1``: index ``i`` noises with
``abar = prod_{s<=i} (1 - beta_s)``, so index 0 is the first noising step, the one Ho et al.
(and most papers) call ``t = 1``, and ``T - 1`` the last. A paper's "t = 1" is therefore
index 0 if it counts DDPM steps from 1, index 1 if it already counts from 0; RADAR's default
reads it as index 1, and ``t=0`` (the smallest step there is) is a valid value for the
ablation.

>>> import torch
>>> scheduler = make_scheduler(num_train_timesteps=1000)
>>> x0, eps, t = torch.rand(2, 1, 8, 8), torch.randn(2, 1, 8, 8), torch.tensor([10, 500])
>>> x_t = add_noise(scheduler, x0, eps, t)
>>> torch.allclose(x0_from_eps(scheduler, x_t, eps, t), x0, atol=1e-4)
True
>>> unet = build_unet(28, 1, block_out_channels=(16, 32, 32), norm_num_groups=8)
>>> unet(torch.randn(2, 1, 28, 28), t).sample.shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import Tensor

from bench.util.flops import count_train_gflops

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def build_unet(
    sample_size: int,
    in_channels: int,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    layers_per_block: int = 2,
    norm_num_groups: int = 32,
    attention: bool = True,
) -> UNet2DModel:
    """A noise-prediction U-Net with self-attention at the lowest resolution only.

    The lowest-resolution down block and its mirror up block are the attention variants; the
    diffusers mid block (also at that resolution) keeps its attention layer. With
    ``attention=False`` every block, the mid block included, is purely convolutional. Each block
    but the last halves the resolution, so ``sample_size`` must be divisible by
    ``2 ** (len(block_out_channels) - 1)``.
    """
    n = len(block_out_channels)
    lowest_down, lowest_up = (
        ("AttnDownBlock2D", "AttnUpBlock2D") if attention else ("DownBlock2D", "UpBlock2D")
    )
    down = ("DownBlock2D",) * (n - 1) + (lowest_down,)
    up = (lowest_up,) + ("UpBlock2D",) * (n - 1)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups,
        down_block_types=down,
        up_block_types=up,
        add_attention=attention,
    )


def padding_to_multiple(size: int, multiple: int) -> tuple[int, int]:
    """(before, after) padding that brings ``size`` up to the next multiple of ``multiple``.

    The extra pixels are split as evenly as possible, the odd one after.

    >>> padding_to_multiple(14, 4), padding_to_multiple(28, 4), padding_to_multiple(42, 4)
    ((1, 1), (0, 0), (1, 1))
    """
    total = -size % multiple
    return total // 2, total - total // 2


def padded_unet(unet: UNet2DModel, x: Tensor, t: Tensor, multiple: int = 1) -> Tensor:
    """``unet(x, t).sample`` for inputs of any size: reflect-pad to a multiple, crop back.

    A U-Net that halves its input ``k`` times needs sides divisible by ``multiple = 2 ** k``.
    Other sizes (RADAR's 14, 42 px patches) are reflect-padded up to the next multiple and the
    prediction of the padded border is cropped away, so the output has ``x``'s shape and only
    the real pixels count. Sizes that already fit go through untouched (bit for bit).
    """
    h, w = x.shape[-2:]
    top, bottom = padding_to_multiple(h, multiple)
    left, right = padding_to_multiple(w, multiple)
    if not (top or bottom or left or right):
        return unet(x, t).sample
    out = unet(F.pad(x, (left, right, top, bottom), mode="reflect"), t).sample
    return out[..., top : top + h, left : left + w]


def make_scheduler(
    num_train_timesteps: int = 1000, beta_schedule: str = "linear", *, clip_sample: bool = True
) -> DDPMScheduler:
    """The DDPM noise schedule (linear betas 1e-4..0.02 by default, as in Ho et al.).

    ``clip_sample`` only affects sampling with ``scheduler.step``; the closed-form helpers below
    never clip.
    """
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        clip_sample=clip_sample,
        prediction_type="epsilon",
    )


def alpha_bar(scheduler: DDPMScheduler, t: Tensor | int, like: Tensor) -> Tensor:
    """``abar_t`` broadcastable against ``like`` (one value per batch element)."""
    t = torch.as_tensor(t, device=scheduler.alphas_cumprod.device).long().reshape(-1)
    abar = scheduler.alphas_cumprod[t].to(device=like.device, dtype=like.dtype)
    return abar.reshape(-1, *([1] * (like.ndim - 1)))


def add_noise(scheduler: DDPMScheduler, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
    """The forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (diffusers' own)."""
    t = torch.as_tensor(t, device=x0.device).long().reshape(-1).expand(x0.shape[0])
    return scheduler.add_noise(x0, noise, t)


def x0_from_eps(scheduler: DDPMScheduler, x_t: Tensor, eps_hat: Tensor, t: Tensor | int) -> Tensor:
    """The clean-image estimate ``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``."""
    abar_t = alpha_bar(scheduler, t, x_t)
    return (x_t - (1.0 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()


def noise_prediction_loss(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    x0: Tensor,
    generator: torch.Generator,
    max_t: int | None = None,
    multiple: int = 1,
) -> Tensor:
    """The "simple" DDPM loss ``|| eps - eps_theta(x_t, t) ||^2`` with ``t ~ U{0..max_t-1}``.

    ``max_t`` defaults to ``T`` (DDPM). ``generator`` must live on ``x0``'s device; every draw
    comes from it so that a training run is a function of its seed. ``multiple``: ``x_t`` goes
    through :func:`padded_unet` (reflect-padded to that multiple, the prediction cropped back),
    as test inputs do, so the loss sees only the real pixels.
    """
    n = x0.shape[0]
    high = max_t or scheduler.config.num_train_timesteps
    t = torch.randint(0, high, (n,), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    eps_hat = padded_unet(unet, add_noise(scheduler, x0, eps, t), t, multiple)
    return F.mse_loss(eps_hat.float(), eps.float())


def unet_train_gflops(unet: UNet2DModel, channels: int, size: int, passes: int = 1) -> float:
    """GFLOPs of the noise-prediction loss, forward and backward, for ONE training sample of
    ``channels x size x size`` that goes through the U-Net ``passes`` times (DiffusionAD: two
    noise levels per image). Counted on meta copies: free, and no result changes."""

    def step(meta: UNet2DModel) -> Tensor:
        x = torch.zeros(1, channels, size, size, device="meta")
        t = torch.zeros(1, dtype=torch.long, device="meta")
        return sum(F.mse_loss(meta(x, t).sample, x) for _ in range(passes))

    return count_train_gflops(step, unet)


# -- reconstruction helpers (DiffusionAD, ddpm_recon) ----------------------------------------

Sampler = Literal["ddpm", "ddim"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


def eps_toward(scheduler: DDPMScheduler, x_t: Tensor, x0: Tensor, t: Tensor | int) -> Tensor:
    """The noise that explains ``x_t`` as a noised ``x0``.

    ``eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)``, the inverse of :func:`add_noise` in
    ``eps``.

    With ``x0`` a *normal* image and ``x_t`` a
    noised *anomalous* one it is the target that makes one-step denoising land on the normal image.
    """
    abar_t = alpha_bar(scheduler, t, x_t)
    return (x_t - abar_t.sqrt() * x0) / (1.0 - abar_t).sqrt()


def reverse_timesteps(t_start: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps from (at most) ``t_start`` down to ``stride``.

    The stride is ``t_start // steps``; the first timestep is ``stride * steps`` (= ``t_start``
    when ``steps`` divides it), so the last step lands exactly on ``t = 0``.
    """
    if not 1 <= steps <= t_start:
        raise ValueError(f"steps must be in 1..t_start ({t_start}), got {steps}")
    stride = t_start // steps
    return [stride * (steps - i) for i in range(steps)]


def make_sampler(
    kind: str, num_train_timesteps: int = 1000, beta_schedule: str = "linear"
) -> DDPMScheduler | DDIMScheduler:
    """A diffusers reverse-process scheduler on the noise schedule of :func:`make_scheduler`."""
    if kind == "ddpm":
        return make_scheduler(num_train_timesteps, beta_schedule)
    if kind == "ddim":
        return DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            clip_sample=True,
            prediction_type="epsilon",
            set_alpha_to_one=True,
        )
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")


@torch.no_grad()
def reverse_sample(
    unet: UNet2DModel,
    sampler: DDPMScheduler | DDIMScheduler,
    x_t: Tensor,
    timesteps: list[int],
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> Tensor:
    """Denoise ``x_t`` (noised to ``timesteps[0]``) along ``timesteps`` to a clean image.

    One U-Net evaluation per timestep. DDPM draws its posterior noise from ``generator``
    (ancestral sampling; a list holds one generator per image); DDIM is deterministic
    (eta = 0).
    """
    if isinstance(sampler, DDIMScheduler):
        # DDIM steps from t to t - T // num_inference_steps: set that stride.
        stride = timesteps[0] - timesteps[1] if len(timesteps) > 1 else timesteps[0]
        if sampler.config.num_train_timesteps % stride:
            raise ValueError(f"DDIM needs a stride that divides T, got stride {stride}")
        sampler.set_timesteps(sampler.config.num_train_timesteps // stride)
    else:
        sampler.set_timesteps(timesteps=timesteps)
    x = x_t
    for t in timesteps:
        step_t = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps_hat = unet(x, step_t).sample
        if isinstance(sampler, DDIMScheduler):
            x = sampler.step(eps_hat, t, x, eta=0.0).prev_sample
        else:
            x = sampler.step(eps_hat, t, x, generator=generator).prev_sample
    return x
