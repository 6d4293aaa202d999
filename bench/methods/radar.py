"""RADAR: reconstruction-free anomaly detection and segmentation with a single diffusion step.

Implements the method of M. Moradi, M. Grasso, B. M. Colosimo and K. Paynabar, "Single-Step
Reconstruction-Free Anomaly Detection and Segmentation via Diffusion Models" (arXiv:2508.04818,
2025), which names it RADAR (Reconstruction-free Anomaly Detection with Attention-based
diffusion models in Real-time).

Diffusion-reconstruction detectors noise a test image to an intermediate step and denoise it back
over many sampling steps, then compare. RADAR skips the reconstruction:

1. train a small DDPM U-Net (attention at the lowest resolution) on patches of normal images with
   the usual noise-prediction loss (:mod:`bench.methods.ddpm`);
2. at test time noise the image to a very early step ``t`` (``t = 1``), predict the noise of every
   patch in one forward pass and fold the patches back into a predicted-noise map
   (:mod:`bench.methods.patches`);
3. blur that map, take its Sobel gradient magnitude (the pixel anomaly map) and summarise each
   image by two numbers, the map's global L2 norm and its largest local L2 norm
   (:mod:`bench.methods.features`);
4. fit an IsolationForest on the two features of the normal training images; its score ranks the
   test images and its own threshold (``contamination``) decides (:mod:`bench.methods.scoring`).

The defaults of :class:`RadarParams` are the paper's settings; where the paper gives no number
(the batch size and the number of optimisation steps) the defaults are our choice of a
GPU-scale run, 10,000 steps of 512 patches. The ``quick`` preset is a CPU-sized run.

>>> from pathlib import Path
>>> import torch
>>> from bench.interface import ImageSet, RunContext
>>> params = RadarParams(image_size=32, patch_size=16, block_out_channels=(8, 16),
...                      norm_num_groups=8, train_steps=2, batch_size=4, infer_stride=8)
>>> train = ImageSet(torch.rand(6, 1, 32, 32), torch.zeros(6, dtype=torch.long), None,
...                  [f"good/{i}.png" for i in range(6)])
>>> ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
>>> prediction = Radar(params).fit(train, ctx).predict(train)
>>> prediction.scores.shape, prediction.decisions.shape, prediction.maps.shape
(torch.Size([6]), torch.Size([6]), torch.Size([6, 32, 32]))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from torch import Tensor

from bench.errors import ConfigError
from bench.flops import count_gflops
from bench.interface import ImageSet, InputSpec, Prediction, RunContext
from bench.methods.ddpm import BETA_SCHEDULES, build_unet, make_scheduler, noise_prediction_loss
from bench.methods.features import anomaly_map, blur_kernel_size, image_features
from bench.methods.patches import patch_starts, predict_noise_map, sample_patches
from bench.methods.scoring import IsolationForestScorer
from bench.registry import MethodEntry

log = logging.getLogger(__name__)

# Offsets of RunContext.generator: one independent stream per purpose.
_SEED_INIT, _SEED_TRAIN, _SEED_NOISE, _SEED_SUBSET = 11, 12, 13, 14


@dataclass(frozen=True)
class RadarParams:
    """RADAR's parameters; the defaults are the paper's settings (see the module docstring)."""

    # input
    image_size: int = 100  # images are grayscale, resized to image_size x image_size
    patch_size: int = 28
    # U-Net and noise schedule
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    attention: bool = True
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    # training
    train_stride: int = 1
    train_max_t: int = 0  # training steps drawn from 0..train_max_t-1; 0 = all T (the paper)
    train_steps: int = 10_000  # our choice: the paper does not state its step count
    batch_size: int = 512  # our choice: the paper does not state its batch size
    lr: float = 1e-4
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast, on CUDA only
    # inference
    t: int = 1
    infer_stride: int = 1
    infer_batch: int = 1024  # patches per forward pass; halved on a CUDA out-of-memory
    # features and scorer
    blur_sigma: float = 1.0  # 0 disables the blur
    window: int = 8
    contamination: float = 0.05
    n_estimators: int = 100
    scorer_images: int = 0  # training images the scorer is fitted on; 0 = all of them

    def __post_init__(self) -> None:
        # The registry passes lists for tuple fields given as Python values.
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        s = self.image_size

        def check(ok: bool, field: str, must: str) -> None:
            if not ok:
                raise ConfigError(f"radar.{field} must be {must}, got {getattr(self, field)!r}")

        check(s >= 8, "image_size", ">= 8")
        check(1 <= self.patch_size <= s, "patch_size", f"between 1 and image_size ({s})")
        levels = len(self.block_out_channels)
        check(levels >= 1, "block_out_channels", "a non-empty tuple of channel counts")
        factor = 2 ** (levels - 1)
        check(
            self.patch_size % factor == 0,
            "patch_size",
            f"divisible by {factor} (the U-Net halves it {levels - 1} times)",
        )
        check(self.norm_num_groups >= 1, "norm_num_groups", ">= 1")
        check(
            all(c >= 1 and c % self.norm_num_groups == 0 for c in self.block_out_channels),
            "block_out_channels",
            f"positive multiples of norm_num_groups ({self.norm_num_groups})",
        )
        check(self.layers_per_block >= 1, "layers_per_block", ">= 1")
        check(self.num_train_timesteps >= 1, "num_train_timesteps", ">= 1")
        check(self.beta_schedule in BETA_SCHEDULES, "beta_schedule", f"one of {BETA_SCHEDULES}")
        check(self.train_stride >= 1, "train_stride", ">= 1")
        check(
            0 <= self.train_max_t <= self.num_train_timesteps,
            "train_max_t",
            f"in 0..num_train_timesteps ({self.num_train_timesteps}); 0 means all",
        )
        check(self.train_steps >= 1, "train_steps", ">= 1")
        check(self.batch_size >= 1, "batch_size", ">= 1")
        check(self.lr > 0, "lr", "> 0")
        check(self.weight_decay >= 0, "weight_decay", ">= 0")
        check(self.precision in ("fp32", "bf16"), "precision", "fp32 or bf16")
        check(
            0 <= self.t < self.num_train_timesteps,
            "t",
            f"in 0..num_train_timesteps-1 (0..{self.num_train_timesteps - 1})",
        )
        check(
            1 <= self.infer_stride <= self.patch_size,
            "infer_stride",
            f"between 1 and patch_size ({self.patch_size}) so that patches cover every pixel",
        )
        check(self.infer_batch >= 1, "infer_batch", ">= 1")
        check(self.blur_sigma >= 0, "blur_sigma", ">= 0")
        check(
            blur_kernel_size(self.blur_sigma) // 2 < s,
            "blur_sigma",
            f"small enough for a {s}-pixel image (3 sigma < image_size)",
        )
        check(1 <= self.window <= s, "window", f"between 1 and image_size ({s})")
        check(0 < self.contamination <= 0.5, "contamination", "in (0, 0.5]")
        check(self.n_estimators >= 1, "n_estimators", ">= 1")
        check(self.scorer_images == 0 or self.scorer_images >= 2, "scorer_images", "0 or >= 2")


PRESETS: dict[str, dict[str, object]] = {
    # CPU-sized: ~2-3 minutes on 2 cores for 60 train + 60 test images of the synthetic set.
    "quick": {
        "block_out_channels": (16, 32, 32),
        "norm_num_groups": 8,
        "train_steps": 150,
        "batch_size": 64,
        "lr": 1e-3,
        "infer_stride": 6,
        "infer_batch": 256,
        "scorer_images": 30,
    },
}


def _device_generator(ctx: RunContext, offset: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(ctx.generator(offset).initial_seed())


class Radar:
    """RADAR as a :class:`~bench.interface.Detector`: ``fit`` on normal images, ``predict``.

    Fitted state (after ``fit``): ``unet_``, ``scheduler_``, ``scorer_``, ``train_loss_`` (final
    moving average of the training loss) and ``fit_info_`` (a dict for the result record).
    """

    name = "radar"

    def __init__(self, params: RadarParams | None = None):
        self.params = params if params is not None else RadarParams()

    @property
    def input_spec(self) -> InputSpec:
        s = self.params.image_size
        return InputSpec((s, s), grayscale=True)

    # -- glue ----------------------------------------------------------------------------------

    def _prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images of any size and colour -> grayscale, image_size, scaled to [-1, 1]."""
        x = images.float()
        if x.shape[1] == 3:
            x = rgb_to_grayscale(x)
        elif x.shape[1] != 1:
            x = x.mean(1, keepdim=True)
        s = self.params.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return x * 2.0 - 1.0

    def _autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        if self.params.precision == "bf16" and device.type == "cuda":
            return torch.bfloat16
        return None

    def _processed_maps(self, x: Tensor) -> Tensor:
        """Prepared images on the model's device -> (N, 1, S, S) pixel anomaly maps."""
        p = self.params
        # Re-seeded at every call: the maps are a function of the fitted model and the input only.
        generator = torch.Generator(device=self.device_).manual_seed(self.noise_seed_)
        noise_map, self.infer_batch_ = predict_noise_map(
            self.unet_,
            self.scheduler_,
            x,
            p.t,
            p.patch_size,
            p.infer_stride,
            self.infer_batch_,
            generator,
            self._autocast_dtype(self.device_),
        )
        return anomaly_map(noise_map, p.blur_sigma)

    # -- Detector ------------------------------------------------------------------------------

    def fit(self, train: ImageSet, ctx: RunContext) -> Radar:
        p = self.params
        dev = ctx.device
        x = self._prepare(train.images).to(dev)
        self.device_ = dev
        self.noise_seed_ = ctx.generator(_SEED_NOISE).initial_seed()
        self.infer_batch_ = p.infer_batch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.generator(_SEED_INIT).initial_seed())
            unet = build_unet(
                p.patch_size,
                1,
                p.block_out_channels,
                p.layers_per_block,
                p.norm_num_groups,
                p.attention,
            )
        self.unet_ = unet.to(dev)
        self.scheduler_ = make_scheduler(p.num_train_timesteps, p.beta_schedule)

        n_scorer = len(train) if p.scorer_images == 0 else min(p.scorer_images, len(train))
        ys = patch_starts(p.image_size, p.patch_size, p.infer_stride)
        # Progress share of training: a backward pass costs about two forward passes.
        train_cost = 3 * p.train_steps * p.batch_size
        train_share = train_cost / (train_cost + n_scorer * len(ys) ** 2)

        start = time.perf_counter()
        loss = self._train(x, ctx, train_share)
        train_s = time.perf_counter() - start

        ctx.progress("radar: features of the training images", train_share)
        start = time.perf_counter()
        if n_scorer < len(train):
            pick = torch.randperm(len(train), generator=ctx.generator(_SEED_SUBSET))[:n_scorer]
            x = x[pick.sort().values.to(dev)]
        features = image_features(self._processed_maps(x), p.window)
        self.scorer_ = IsolationForestScorer(p.contamination, p.n_estimators, ctx.seed).fit(
            features
        )
        ctx.progress("radar: fitted", 1.0)

        self.train_loss_ = loss
        self.fit_info_ = {
            "steps": p.train_steps,
            "patches_seen": p.train_steps * p.batch_size,
            "final_loss": loss,
            "train_seconds": round(train_s, 3),
            "scorer_seconds": round(time.perf_counter() - start, 3),
            "scorer_images": n_scorer,
            "unet_parameters": sum(q.numel() for q in self.unet_.parameters()),
            "precision": "bf16" if self._autocast_dtype(dev) else "fp32",
            "infer_batch": self.infer_batch_,
        }
        return self

    def _train(self, x: Tensor, ctx: RunContext, share: float) -> float:
        """The noise-prediction loss on random patches; returns the final moving-average loss."""
        p = self.params
        dev = x.device
        unet, scheduler = self.unet_, self.scheduler_
        generator = _device_generator(ctx, _SEED_TRAIN, dev)
        ys = patch_starts(p.image_size, p.patch_size, p.train_stride)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        autocast = self._autocast_dtype(dev)
        every = max(1, p.train_steps // 50)
        ema = torch.zeros((), device=dev)
        unet.train()
        for step in range(1, p.train_steps + 1):
            patches = sample_patches(x, p.patch_size, ys, ys, p.batch_size, generator)
            with torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=bool(autocast)):
                loss = noise_prediction_loss(unet, scheduler, patches, generator, p.train_max_t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # A moving average over ~50 steps, kept on the device to avoid a sync per step.
            ema = loss.detach() if step == 1 else 0.98 * ema + 0.02 * loss.detach()
            if step % every == 0 or step == p.train_steps:
                ctx.progress(
                    f"radar: step {step}/{p.train_steps}, loss {ema.item():.4f}",
                    share * step / p.train_steps,
                )
        unet.eval()
        return float(ema.item())

    @property
    def inference_info(self) -> dict[str, object]:
        p = self.params
        n = len(patch_starts(p.image_size, p.patch_size, p.infer_stride)) ** 2
        return {"mode": "patches", "unet_forward_passes": 1, "patches_per_image": n, "t": p.t}

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float:
        """U-Net GFLOPs of one test image: one patch forward times the patches per image.

        ``image_size`` is the evaluation size; RADAR always works at ``image_size`` itself.
        """
        p = self.params
        patch = torch.zeros(1, 1, p.patch_size, p.patch_size, device=self.device_)
        timestep = torch.tensor([p.t], device=self.device_)
        per_patch = count_gflops(self.unet_, patch, timestep)
        return per_patch * len(patch_starts(p.image_size, p.patch_size, p.infer_stride)) ** 2

    def predict(self, test: ImageSet) -> Prediction:
        if not hasattr(self, "scorer_"):
            raise RuntimeError("Radar.predict called before fit")
        processed = self._processed_maps(self._prepare(test.images).to(self.device_))
        features = image_features(processed, self.params.window)
        maps = F.interpolate(processed, size=test.image_size, mode="bilinear", align_corners=False)
        return Prediction(
            scores=self.scorer_.score(features),
            decisions=self.scorer_.decide(features),
            maps=maps[:, 0].float().cpu(),
        )


def method_entries() -> list[MethodEntry]:
    return [
        MethodEntry(
            name="radar",
            params_cls=RadarParams,
            build=Radar,
            summary="RADAR: single-step DDPM noise prediction on patches, "
            "blur/Sobel features, IsolationForest",
            presets=PRESETS,
        )
    ]
