"""DiffusionAD: norm-guided one-step denoising diffusion for anomaly detection.

Implements the method of H. Zhang, Z. Wang, Z. Wu and Y.-G. Jiang, "DiffusionAD: Norm-guided
One-step Denoising Diffusion for Anomaly Detection" (arXiv:2303.08730, 2023), following the
authors' code (github.com/HuiZhang0812/DiffusionAD) where the paper leaves details open.

Training (normal images only) plants Perlin-shaped synthetic anomalies in half of each batch
(:mod:`bench.methods.diffusionad.synthetic_anomalies`) and trains two networks jointly:

* the *reconstruction sub-network*, a DDPM U-Net ``eps_theta``
(:mod:`bench.methods.diffusion.ddpm`). Each
  image ``x`` (possibly anomalous, normal version ``x_n``) is noised twice, to a small step
  ``t_d ~ U{0..split-1}`` and a large step ``t_s ~ U{split..T-1}``. Normal images get the usual
  noise-prediction loss at both steps. For anomalous images the large-step target is the noise
  *with respect to the normal image*, ``eps_n = (x_t - sqrt(abar_t) x_n) / sqrt(1 - abar_t)``, so
  that one-step denoising of a noised anomalous image lands on its normal version
  (``anomalous_noise_loss=large_step``, our variant; the default ``none`` is the official
  code, see below). No small-step noise loss is put on anomalous images:
  there ``eps_n`` grows like ``1 / sqrt(1 - abar_t)`` (unbounded as ``t -> 0``); the small step is
  pulled toward normal by the guidance below instead. ``anomalous_noise_loss=none`` (the
  default) is the official code: the noise loss on normal images only.
* the *segmentation sub-network* (:mod:`bench.methods.diffusionad.segnet`, DRAEM's discriminative
  U-Net) on ``[x, x0_hat]``, trained with ``5 * focal + smooth L1`` against the synthetic masks; its
  loss
  also reaches the U-Net through ``x0_hat`` (as in the official code).

Norm-guided one-step denoising (the paper's Eq. 10-12; the official ``norm_guided_one_step_
denoising``). With ``x_s = sqrt(abar_s) x + sqrt(1 - abar_s) eps_1``, ``x_d = sqrt(abar_d) x +
sqrt(1 - abar_d) eps_2`` and ``w`` = ``condition_w``:

    eps_s = eps_theta(x_s, t_s);  x0_s = clip((x_s - sqrt(1 - abar_s) eps_s) / sqrt(abar_s))
    eps_d = eps_theta(x_d, t_d)
    x_d_from_s = sqrt(abar_d) x0_s + sqrt(1 - abar_d) eps_d        (x0_s re-noised to t_d)
    eps_g = eps_d - w sqrt(1 - abar_d) (x_d_from_s - x_d)          (guided noise estimate)
    x0_hat = clip((x_d - sqrt(1 - abar_d) eps_g) / sqrt(abar_d))

The large step removes anomalies but loses detail; its reconstruction, re-noised to ``t_d``,
steers the small-step estimate, which keeps detail. Two U-Net evaluations per image.
With ``steps > 0`` the reconstruction is instead plain multi-step reverse sampling (DDIM, ``steps``
evaluations) from ``x_s``, for comparison.

The pixel map is the segmentation sub-network's probability; the image score is the mean of its
``top_k`` largest values.

Defaults are the paper's / official code's settings (256 px RGB, 3000 epochs, batch 16, lr 1e-4
for the U-Net and 1e-5 for the segmentation net with the official per-batch cosine cycle
(``seg_lr_cycle`` 10), T = 1000 linear, split 300, test steps t_d = 200 and t_s = 400, w = 1,
top-50 score, focal loss alpha 0.5 / gamma 4, Perlin scales 1..32, blend beta ~ U[0.2, 0.8),
self-augmentation shuffled in 8 x 8 strips, no warm-up). Our choices: the U-Net is the suite's
diffusers ``UNet2DModel`` (``block_out_channels`` (128, 256, 256, 512), attention at the lowest
resolution only) instead of the guided-diffusion U-Net of the paper (base 128, attention at
32/16/8); the anomaly source is ``mixed`` (no DTD here; see
:mod:`~bench.methods.diffusionad.synthetic_anomalies`).

The ``quick`` preset (64 px gray, about 200 training steps) departs from those defaults where a
short CPU run needs it, each a parameter: ``seg_lr`` 3e-3 without the cosine cycle (1e-5 is
meant for 3000 epochs), ``seg_warmup_epochs`` (the segmentation net waits for the U-Net's
reconstructions to mean something), ``focal_gamma`` 2, ``perlin_max_scale`` 8 (the paper's finest
Perlin blobs are ~8 px at 256 px; scale 32 at 64 px gives 2 px speckles), batch 8 (more steps for
the same compute) and a narrow segmentation net (``seg_base_width`` 8).

>>> from pathlib import Path
>>> import torch
>>> from bench.interface import ImageSet, RunContext
>>> params = DiffusionADParams(image_size=32, grayscale=True, block_out_channels=(8, 16),
...     norm_num_groups=8, seg_base_width=4, epochs=1, batch_size=4, top_k=5)
>>> train = ImageSet(torch.rand(4, 1, 32, 32), torch.zeros(4, dtype=torch.long), None,
...                  [f"good/{i}.png" for i in range(4)])
>>> ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
>>> prediction = DiffusionAD(params).fit(train, ctx).predict(train)
>>> prediction.scores.shape, prediction.maps.shape
(torch.Size([4]), torch.Size([4, 32, 32]))
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import Tensor, nn

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext
from bench.methods.diffusion.ddpm import (
    add_noise,
    alpha_bar,
    eps_toward,
    make_sampler,
    make_scheduler,
    reverse_sample,
    reverse_timesteps,
    unet_train_gflops,
    x0_from_eps,
)
from bench.methods.diffusion.unet_params import (
    QUICK_UNET,
    begin_fit,
    check_unet,
    cut_training_flags,
    seeded_init,
    unet_from,
    unet_levels,
)
from bench.methods.diffusionad.segnet import SEGNET_DIVISOR, build_segnet, segmentation_loss
from bench.methods.diffusionad.synthetic_anomalies import SOURCES, AnomalySynthesizer
from bench.util.flops import count_gflops, count_train_gflops
from bench.util.seeding import image_generators, per_image_randn
from bench.util.sources import official, ours, suite
from bench.util.validation import field_check

# Offsets of RunContext.generator: one independent stream per purpose.
_SEED_INIT, _SEED_TRAIN, _SEED_SYNTH, _SEED_NOISE = 21, 22, 23, 24

AnomalousNoiseLoss = Literal["large_step", "none"]


@dataclass(frozen=True)
class DiffusionADParams:
    """DiffusionAD's parameters. Each default says where it comes from (:mod:`bench.util.sources`,
    ``bench list``): the paper (arXiv:2303.08730), the official code
    (github.com/HuiZhang0812/DiffusionAD, the file named), or our choice (see the module
    docstring). ``anomalous_noise_loss=large_step`` is our labelled variant; the default,
    ``none``, is the official code's."""

    # input
    image_size: int = official(256, "args/args1.json: img_size 256 x 256")
    grayscale: bool = official(False, "args/args1.json: channels 3")
    # reconstruction U-Net and noise schedule
    block_out_channels: tuple[int, ...] = ours(
        (128, 256, 256, 512), "the suite's diffusers U-Net in place of the official "
        "guided-diffusion one (base_channels 128)"
    )  # fmt: skip
    layers_per_block: int = ours(2, "the suite's diffusers U-Net")
    norm_num_groups: int = ours(32, "the suite's diffusers U-Net")
    attention: bool = ours(True, "attention at the lowest resolution only (official: at 32, 16, 8)")
    num_train_timesteps: int = official(1000, "args/args1.json: T")
    beta_schedule: str = official("linear", "args/args1.json: beta_schedule")
    # segmentation U-Net
    seg_base_width: int = official(64, "models/Seg_subnetwork.py (DRAEM's discriminative net)")
    # > 0: output bias starts at this anomaly probability; 0 = official
    seg_init_prior: float = suite(0.0, "0 = the official initialisation; > 0 our short-run aid")
    # training
    epochs: int = official(3000, "args/args1.json: EPOCHS")
    batch_size: int = official(16, "args/args1.json: Batch_Size")
    lr: float = official(1e-4, "args/args1.json: diffusion_lr")
    seg_lr: float = official(1e-5, "args/args1.json: seg_lr")
    seg_lr_cycle: int = official(
        10, "train.py: CosineAnnealingLR(T_max=10) stepped per batch; 0 = constant"
    )
    seg_warmup_epochs: int = suite(0, "epochs of U-Net-only training first; 0 = official")
    weight_decay: float = official(0.0, "args/args1.json: weight_decay")
    # small steps 0..t_split-1, large steps t_split..T-1
    t_split: int = official(300, "args/args1.json: less_t_range")
    anomalous_noise_loss: AnomalousNoiseLoss = official(
        "none", "train.py: noise loss on normal samples only; large_step is our variant"
    )
    focal_weight: float = official(5.0, "train.py: 5 * focal + smooth L1")
    focal_gamma: float = official(4.0, "BinaryFocalLoss() default (alpha 0.5, gamma 4)")
    # synthetic anomalies
    anomaly_source: str = ours("mixed", "official: DTD textures, not available here")
    anomaly_probability: float = official(0.5, "data/dataset_beta_thresh.py: half anomalous")
    anomaly_beta_min: float = official(0.2, "data/dataset_beta_thresh.py: beta ~ U[0.2, 0.8)")
    anomaly_beta_max: float = official(0.8, "data/dataset_beta_thresh.py: beta ~ U[0.2, 0.8)")
    perlin_max_scale: int = official(32, "data/dataset_beta_thresh.py: Perlin scales 1..32")
    anomaly_self_strips: int = official(8, "data/dataset_beta_thresh.py: 8 x 8 strip shuffle")
    # inference
    t_d: int = official(200, "args/args1.json: eval_normal_t (the small step)")
    t_s: int = official(400, "args/args1.json: eval_noisier_t (the large step)")
    condition_w: float = official(1.0, "args/args1.json: condition_w")
    steps: int = suite(0, "0 = norm-guided one-step (paper); N > 0: our N-step DDIM variant")
    top_k: int = official(50, "eval.py: image score = mean of the top 50 mask values")
    infer_batch: int = suite(16, "images per pass; the scores do not depend on it")

    def __post_init__(self) -> None:
        s, T = self.image_size, self.num_train_timesteps
        check = field_check("diffusionad", self)
        levels = unet_levels(check, self)
        divisor = max(SEGNET_DIVISOR, 2 ** (levels - 1))
        check(
            s >= divisor and s % divisor == 0,
            "image_size",
            f"a multiple of {divisor} (the segmentation net pools 5 times, the U-Net "
            f"{levels - 1} times)",
        )
        check_unet(check, self, min_timesteps=2)
        check(self.seg_base_width >= 1, "seg_base_width", ">= 1")
        check(0 <= self.seg_init_prior < 1, "seg_init_prior", "in [0, 1) (0 = default init)")
        check(self.epochs >= 1, "epochs", ">= 1")
        check(self.batch_size >= 1, "batch_size", ">= 1")
        check(self.lr > 0, "lr", "> 0")
        check(self.seg_lr > 0, "seg_lr", "> 0")
        check(self.seg_lr_cycle >= 0, "seg_lr_cycle", ">= 0 (0 = constant seg_lr)")
        check(
            0 <= self.seg_warmup_epochs < self.epochs,
            "seg_warmup_epochs",
            f"in 0..epochs-1 (0..{self.epochs - 1})",
        )
        check(self.weight_decay >= 0, "weight_decay", ">= 0")
        check(1 <= self.t_split < T, "t_split", f"in 1..num_train_timesteps-1 (1..{T - 1})")
        losses = get_args(AnomalousNoiseLoss)
        check(self.anomalous_noise_loss in losses, "anomalous_noise_loss", " or ".join(losses))
        check(self.focal_weight >= 0, "focal_weight", ">= 0")
        check(self.focal_gamma >= 0, "focal_gamma", ">= 0")
        check(0 <= self.anomaly_probability <= 1, "anomaly_probability", "in [0, 1]")
        check(0 <= self.anomaly_beta_min <= 1, "anomaly_beta_min", "in [0, 1]")
        check(
            self.anomaly_beta_min <= self.anomaly_beta_max <= 1,
            "anomaly_beta_max",
            f"in [anomaly_beta_min, 1] ([{self.anomaly_beta_min}, 1])",
        )
        check(
            self.perlin_max_scale >= 1 and self.perlin_max_scale & (self.perlin_max_scale - 1) == 0,
            "perlin_max_scale",
            "a power of two >= 1",
        )
        check(self.anomaly_self_strips >= 0, "anomaly_self_strips", ">= 0 (0 = no shuffle)")
        check(0 <= self.t_d < T, "t_d", f"in 0..num_train_timesteps-1 (0..{T - 1})")
        check(
            self.t_d < self.t_s < T,
            "t_s",
            f"in t_d+1..num_train_timesteps-1 ({self.t_d + 1}..{T - 1})",
        )
        check(self.condition_w >= 0, "condition_w", ">= 0")
        check(0 <= self.steps <= self.t_s, "steps", f"in 0..t_s (0..{self.t_s}); 0 = one-step")
        if self.steps:
            stride = self.t_s // self.steps
            check(
                T % stride == 0,
                "steps",
                f"such that the DDIM stride t_s // steps divides T ({T}); stride is {stride}",
            )
        check(1 <= self.top_k <= s * s, "top_k", f"in 1..image_size**2 (1..{s * s})")
        check(self.infer_batch >= 1, "infer_batch", ">= 1")
        if self.anomaly_source not in SOURCES:
            AnomalySynthesizer(self.anomaly_source)  # raises a ConfigError for a bad folder


# CPU-sized: about 3-5 minutes on 2 cores for 60 train + 60 test images of the synthetic set
# (175 steps). Why each value departs from the paper: see the module docstring.
_QUICK: dict[str, object] = {
    **QUICK_UNET,
    "seg_base_width": 8,
    "epochs": 25,
    "batch_size": 8,
    "lr": 1e-3,
    "seg_lr": 3e-3,
    "seg_lr_cycle": 0,
    "seg_warmup_epochs": 5,
    "focal_gamma": 2.0,
    "perlin_max_scale": 8,
}
PRESETS: dict[str, dict[str, object]] = {
    "quick": _QUICK,
    # Real data on a laptop (issue #21): the quick networks for 6 epochs of the 720
    # magnetic_tile training images (each epoch is 29x the synthetic set's), warm-up 1 epoch
    # (results/reference/cpu/sweep/diffusionad-mtd-epochs).
    "cpu": {**_QUICK, "epochs": 6, "seg_warmup_epochs": 1},
}


def norm_guided_x0(
    scheduler: DDPMScheduler,
    x_d: Tensor,
    t_d: Tensor | int,
    eps_d: Tensor,
    x_s: Tensor,
    t_s: Tensor | int,
    eps_s: Tensor,
    condition_w: float = 1.0,
) -> Tensor:
    """The norm-guided one-step reconstruction (module docstring; differentiable)."""
    x0_s = x0_from_eps(scheduler, x_s, eps_s, t_s).clamp(-1, 1)
    abar_d = alpha_bar(scheduler, t_d, x_d)
    x_d_from_s = add_noise(scheduler, x0_s, eps_d, t_d)
    eps_guided = eps_d - condition_w * (1.0 - abar_d).sqrt() * (x_d_from_s - x_d)
    return x0_from_eps(scheduler, x_d, eps_guided, t_d).clamp(-1, 1)


def top_k_mean(maps: Tensor, k: int) -> Tensor:
    """(N, ...) -> (N,): the mean of each map's ``k`` largest values."""
    flat = maps.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(1)


class DiffusionAD(Method[DiffusionADParams]):
    """DiffusionAD as a :class:`~bench.interface.Method`.

    Fitted state: ``unet_``, ``segnet_``, ``scheduler_``, ``fit_info_``.
    """

    name = "diffusionad"
    params_cls = DiffusionADParams
    gray_from_rgb = "mean"  # not luminance: the scores of colour inputs were measured so

    @property
    def flags(self) -> list[str]:
        return cut_training_flags(self.params, DiffusionADParams(), "epochs")

    @property
    def grayscale(self) -> bool:
        return self.params.grayscale

    # -- fit -----------------------------------------------------------------------------------

    def fit(self, train: ImageSet, ctx: RunContext) -> DiffusionAD:
        p = self.params
        dev = begin_fit(self, ctx, _SEED_NOISE)
        with seeded_init(ctx, _SEED_INIT):
            unet = unet_from(p, p.image_size, self.channels)
            segnet = build_segnet(self.channels, p.seg_base_width, p.seg_init_prior)
        self.unet_, self.segnet_ = unet.to(dev), segnet.to(dev)
        self.scheduler_ = make_scheduler(p.num_train_timesteps, p.beta_schedule)
        self.sampler_ = make_sampler("ddim", p.num_train_timesteps, p.beta_schedule)

        start = time.perf_counter()
        images = self.prepare(train.images)
        losses = self._train(images, ctx)
        unet_gflops, seg_gflops = self.train_gflops_per_image()
        seg_epochs = p.epochs - p.seg_warmup_epochs
        self.fit_info_ = {
            "epochs": p.epochs,
            "steps": losses["steps"],
            "seg_steps": losses["seg_steps"],
            # Training compute: per image and epoch, the noise loss's two U-Net passes and,
            # after the warm-up, the seg net's; forward + backward each.
            "train_gflops_per_sample": unet_gflops + seg_gflops,
            "train_gflops": len(images) * (p.epochs * unet_gflops + seg_epochs * seg_gflops),
            "final_loss": losses["loss"],
            "final_noise_loss": losses["noise"],
            "final_seg_loss": losses["seg"],
            "seg_warmup_epochs": p.seg_warmup_epochs,
            "train_seconds": round(time.perf_counter() - start, 3),
            "unet_parameters": sum(q.numel() for q in self.unet_.parameters()),
            "segnet_parameters": sum(q.numel() for q in self.segnet_.parameters()),
            "anomaly_source": p.anomaly_source,
        }
        ctx.progress("diffusionad: fitted", 1.0)
        return self

    def _train(self, images: Tensor, ctx: RunContext) -> dict[str, float]:
        p = self.params
        dev = self.device_
        unet, segnet = self.unet_, self.segnet_
        synthesize = AnomalySynthesizer(
            p.anomaly_source,
            p.anomaly_beta_max,
            p.anomaly_beta_min,
            p.perlin_max_scale,
            p.anomaly_self_strips,
        )
        g_order = ctx.generator(_SEED_TRAIN)
        g_synth = ctx.generator(_SEED_SYNTH)
        g_noise = torch.Generator(device=dev).manual_seed(g_order.initial_seed() + 1)
        opt_unet = torch.optim.AdamW(unet.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        opt_seg = torch.optim.AdamW(segnet.parameters(), lr=p.seg_lr, weight_decay=p.weight_decay)
        # The official code steps CosineAnnealingLR(T_max=10) once per batch and never resets it,
        # so the seg lr swings between seg_lr and 0 with a period of 2 * seg_lr_cycle batches.
        seg_schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt_seg, T_max=p.seg_lr_cycle, eta_min=0)
            if p.seg_lr_cycle
            else None
        )
        per_epoch = math.ceil(len(images) / p.batch_size)
        total = p.epochs * per_epoch
        every = max(1, total // 50)
        ema: dict[str, float] = {}
        unet.train()
        segnet.train()
        step = seg_steps = 0
        for epoch in range(p.epochs):
            # Warm-up: the seg net waits until the U-Net's reconstructions mean something.
            train_seg = epoch >= p.seg_warmup_epochs
            order = torch.randperm(len(images), generator=g_order)
            for b in range(per_epoch):
                clean = images[order[b * p.batch_size : (b + 1) * p.batch_size]]
                augmented, masks = synthesize(clean, g_synth, p.anomaly_probability)
                losses = self._losses(
                    clean.to(dev) * 2 - 1,
                    augmented.to(dev) * 2 - 1,
                    masks.to(dev),
                    g_noise,
                    train_seg,
                )
                opt_unet.zero_grad(set_to_none=True)
                opt_seg.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt_unet.step()
                if train_seg:
                    opt_seg.step()
                    if seg_schedule is not None:
                        seg_schedule.step()
                    seg_steps += 1
                step += 1
                for key in ("loss", "noise", "seg") if train_seg else ("noise",):
                    value = float(losses[key].detach())  # a moving average over ~50 steps
                    ema[key] = 0.98 * ema[key] + 0.02 * value if key in ema else value
                if step % every == 0 or step == total:
                    loss = ema.get("loss", ema["noise"])
                    ctx.progress(f"diffusionad: step {step}/{total}, loss {loss:.4f}", step / total)
        unet.eval()
        segnet.eval()
        return {**ema, "steps": step, "seg_steps": seg_steps}

    def _losses(
        self,
        normal: Tensor,
        augmented: Tensor,
        masks: Tensor,
        g: torch.Generator,
        train_seg: bool = True,
    ) -> dict[str, Tensor]:
        """One training step's losses; images in [-1, 1], masks (N, H, W) bool.

        Without ``train_seg`` (warm-up) only the noise loss is computed.
        """
        p = self.params
        scheduler, n, dev = self.scheduler_, normal.shape[0], normal.device
        T = p.num_train_timesteps
        t_d = torch.randint(0, p.t_split, (n,), generator=g, device=dev)
        t_s = torch.randint(p.t_split, T, (n,), generator=g, device=dev)
        noise_d = torch.randn(normal.shape, generator=g, device=dev)
        noise_s = torch.randn(normal.shape, generator=g, device=dev)
        x_d = add_noise(scheduler, augmented, noise_d, t_d)
        x_s = add_noise(scheduler, augmented, noise_s, t_s)
        eps_d = self.unet_(x_d, t_d).sample
        eps_s = self.unet_(x_s, t_s).sample

        is_normal = ~masks.flatten(1).any(1)
        per_image_d = (eps_d - noise_d).square().flatten(1).mean(1)
        if p.anomalous_noise_loss == "large_step":
            target_s = eps_toward(scheduler, x_s, normal, t_s)
            per_image_s = (eps_s - target_s).square().flatten(1).mean(1)
            noise_loss = (per_image_d * is_normal).sum() / n + per_image_s.mean()
        else:  # the official code: normal images only (0 for an all-anomalous batch)
            noise_loss = (
                (per_image_d + (eps_s - noise_s).square().flatten(1).mean(1)) * is_normal
            ).sum() / is_normal.sum().clamp(min=1)

        if not train_seg:
            return {"loss": noise_loss, "noise": noise_loss, "seg": torch.zeros(())}
        recon = norm_guided_x0(scheduler, x_d, t_d, eps_d, x_s, t_s, eps_s, p.condition_w)
        logits = self.segnet_(torch.cat([augmented, recon], dim=1))
        seg_loss = segmentation_loss(logits, masks, p.focal_weight, p.focal_gamma)
        return {"loss": noise_loss + seg_loss, "noise": noise_loss, "seg": seg_loss}

    # -- predict -------------------------------------------------------------------------------

    @torch.no_grad()
    def reconstruct(self, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        """[-1, 1] images on the model's device -> their normal reconstructions.

        ``generators``: one per image (:func:`bench.util.seeding.image_generators`); each image's
        noise comes from its own, so its reconstruction does not depend on the batch.
        """
        p = self.params
        unet, scheduler = self.unet_, self.scheduler_
        noise_s = per_image_randn(generators, x.shape, x.device)
        x_s = add_noise(scheduler, x, noise_s, p.t_s)
        if p.steps:
            timesteps = reverse_timesteps(p.t_s, p.steps)
            x_s = add_noise(scheduler, x, noise_s, timesteps[0])
            return reverse_sample(unet, self.sampler_, x_s, timesteps).clamp(-1, 1)
        noise_d = per_image_randn(generators, x.shape, x.device)
        x_d = add_noise(scheduler, x, noise_d, p.t_d)
        t_d = torch.full((x.shape[0],), p.t_d, device=x.device)
        t_s = torch.full((x.shape[0],), p.t_s, device=x.device)
        eps_d, eps_s = unet(x_d, t_d).sample, unet(x_s, t_s).sample
        return norm_guided_x0(scheduler, x_d, t_d, eps_d, x_s, t_s, eps_s, p.condition_w)

    @torch.no_grad()
    def _maps(self, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        """[-1, 1] images and one generator per image -> (N, S, S) anomaly probabilities."""
        recon = self.reconstruct(x, generators)
        return self.segnet_(torch.cat([x, recon], dim=1)).sigmoid()[:, 0]

    def predict(self, test: ImageSet) -> Prediction:
        if not hasattr(self, "segnet_"):
            raise RuntimeError("DiffusionAD.predict called before fit")
        p = self.params
        # Per image, from the job's seed and the image's name: a score depends on that image,
        # the fitted model and nothing else (not the set, its order or the batch size).
        gens = image_generators(self.noise_seed_, list(test.names), self.device_)
        x = self.prepare(test.images) * 2 - 1
        b = p.infer_batch
        maps = torch.cat(
            [
                self._maps(x[i : i + b].to(self.device_), gens[i : i + b]).float().cpu()
                for i in range(0, len(x), b)
            ]
        )
        scores = top_k_mean(maps, p.top_k)
        if maps.shape[-2:] != test.image_size:
            maps = F.interpolate(maps[:, None], size=test.image_size, mode="bilinear")[:, 0]
        return Prediction(scores=scores, maps=maps)

    # -- cost ----------------------------------------------------------------------------------

    @property
    def inference_info(self) -> dict[str, object]:
        p = self.params
        mode = "multi_step" if p.steps else "one_step_norm_guided"
        info: dict[str, object] = {
            "mode": mode,
            "unet_forward_passes": p.steps or 2,
            "segnet_forward_passes": 1,
        }
        if p.steps:
            info.update(sampler="ddim", t_start=reverse_timesteps(p.t_s, p.steps)[0])
        else:
            info.update(t_d=p.t_d, t_s=p.t_s, condition_w=p.condition_w)
        return info

    def train_gflops_per_image(self) -> tuple[float, float]:
        """Training GFLOPs of one image, forward + backward: the U-Net's two noise levels, and
        the segmentation net on (image, reconstruction). The seg loss's gradient that reaches
        the U-Net through the reconstruction is not counted (at most one more U-Net backward
        pass)."""
        p, c = self.params, self.channels
        unet = unet_train_gflops(self.unet_, c, p.image_size, passes=2)

        def seg_step(meta: nn.Module) -> Tensor:
            x = torch.zeros(1, 2 * c, p.image_size, p.image_size, device="meta")
            return meta(x).float().square().mean()

        return unet, count_train_gflops(seg_step, self.segnet_)

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float:
        """GFLOPs of one test image: every U-Net evaluation plus the segmentation net."""
        s = self.params.image_size
        x = torch.zeros(1, self.channels, s, s, device=self.device_)
        return count_gflops(self._maps, x, image_generators(0, ["flops"], self.device_))


def method_entries() -> list[MethodEntry]:
    return [
        MethodEntry(
            name="diffusionad",
            params_cls=DiffusionADParams,
            build=DiffusionAD,
            summary="DiffusionAD: norm-guided one-step DDPM reconstruction + segmentation "
            "net trained on Perlin synthetic anomalies",
            presets=PRESETS,
        )
    ]
