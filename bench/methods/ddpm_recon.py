"""Plain DDPM reconstruction: noise a test image part of the way, denoise it back, compare.

The reconstruction-based diffusion detectors RADAR is measured against: AnoDDPM (J. Wyatt,
A. Leach, S. M. Schmon and C. G. Willcocks, "AnoDDPM: Anomaly Detection with Denoising Diffusion
Probabilistic Models using Simplex Noise", CVPRW 2022) and the reconstruction part of DDAD
(A. Mousakhan, T. Brox and J. Tayyub, "Anomaly Detection with Conditioned Denoising Diffusion
Models", 2023).

1. Train a DDPM U-Net on normal images only (the noise-prediction loss,
:mod:`bench.methods.diffusion.ddpm`).
2. Test: noise the image to ``t_start`` (AnoDDPM: 250 of 1000), run the reverse process back to
   ``t = 0`` in ``steps`` steps with a diffusers scheduler (``sampler=ddpm``: ancestral sampling,
   AnoDDPM; ``ddim``: deterministic DDIM, DDAD). The normal training distribution pulls anomalous
   regions toward normal appearance; normal regions come back nearly unchanged.
3. Anomaly map: per-pixel distance between input and reconstruction, optionally on blurred
   images (``blur_sigma``): ``l1`` (mean over channels), ``ssim`` (``1 - SSIM`` map,
   kornia), or ``l1_ssim`` (their sum, SSIM term halved to [0, 1]); then smoothed by a Gaussian
   of ``map_sigma`` (DDAD: 4). Image score: the map's max, or its ``top_k`` mean.

Cost: ``steps`` U-Net evaluations per image (AnoDDPM's default: all 250), recorded beside the
timing. Noise: Gaussian only. AnoDDPM's multi-scale simplex noise needs a simplex-noise package
(``opensimplex`` 0.4.5.1 exists on PyPI, pure Python/numpy, and would also have to replace the
training noise); it is not a dependency of the suite, so ``noise=simplex`` is refused.

Defaults follow AnoDDPM (T = 1000 linear, t_start = 250, 250 DDPM steps, lr 1e-4) where it
applies; our choices: 256 px RGB, the suite's U-Net (128, 256, 256, 512), 3000 epochs of batch 16
(the DiffusionAD budget, so the two baselines train alike), the L1 + SSIM map with a sigma-4
smoothing and the max score (DDAD's map post-processing).

>>> from pathlib import Path
>>> import torch
>>> from bench.interface import ImageSet, RunContext
>>> params = DDPMReconParams(image_size=16, grayscale=True, block_out_channels=(8, 16),
...     norm_num_groups=8, epochs=1, batch_size=4, t_start=20, steps=2, map_sigma=1.0)
>>> train = ImageSet(torch.rand(4, 1, 16, 16), torch.zeros(4, dtype=torch.long), None,
...                  [f"good/{i}.png" for i in range(4)])
>>> ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
>>> detector = DDPMRecon(params).fit(train, ctx)
>>> prediction = detector.predict(train)
>>> prediction.scores.shape, prediction.maps.shape, detector.inference_info["unet_forward_passes"]
(torch.Size([4]), torch.Size([4, 16, 16]), 2)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.metrics import ssim
from torch import Tensor

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext
from bench.methods.diffusion.ddpm import (
    SAMPLERS,
    Sampler,
    add_noise,
    make_sampler,
    make_scheduler,
    noise_prediction_loss,
    reverse_sample,
    reverse_timesteps,
    unet_train_gflops,
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
from bench.methods.diffusionad.detector import top_k_mean
from bench.util.errors import ConfigError
from bench.util.flops import count_gflops
from bench.util.seeding import image_generators, per_image_randn
from bench.util.sources import ours, paper, suite
from bench.util.validation import field_check

_SEED_INIT, _SEED_TRAIN, _SEED_NOISE = 31, 32, 33
Distance = Literal["l1", "ssim", "l1_ssim"]
ImageScore = Literal["max", "topk"]
DISTANCES: tuple[str, ...] = get_args(Distance)


@dataclass(frozen=True)
class DDPMReconParams:
    """Parameters of the DDPM-reconstruction baseline; each default says where it comes from
    (:mod:`bench.util.sources`, ``bench list``; the module docstring says why)."""

    # input
    image_size: int = ours(256, "the DiffusionAD input, so the two baselines see the same")
    grayscale: bool = ours(False, "RGB, as DiffusionAD")
    # U-Net and noise schedule
    block_out_channels: tuple[int, ...] = ours((128, 256, 256, 512), "the suite's U-Net")
    layers_per_block: int = ours(2, "the suite's U-Net")
    norm_num_groups: int = ours(32, "the suite's U-Net")
    attention: bool = ours(True, "the suite's U-Net")
    num_train_timesteps: int = paper(1000, "AnoDDPM: T = 1000")
    beta_schedule: str = paper("linear", "AnoDDPM: linear betas")
    noise: Literal["gaussian", "simplex"] = ours(
        "gaussian", "AnoDDPM's simplex noise needs a package the suite does not carry"
    )
    # training
    epochs: int = ours(3000, "the DiffusionAD budget, so the two baselines train alike")
    batch_size: int = ours(16, "the DiffusionAD budget")
    lr: float = paper(1e-4, "AnoDDPM: lr 1e-4")
    weight_decay: float = ours(0.0, "none")
    # reconstruction
    t_start: int = paper(250, "AnoDDPM: noise to t = 250 of 1000")
    steps: int = paper(250, "AnoDDPM: every step back from t_start")
    sampler: Sampler = paper("ddpm", "AnoDDPM: ancestral DDPM (ddim: DDAD)")
    infer_batch: int = suite(16, "images per pass; the scores do not depend on it")
    # anomaly map and score
    distance: Distance = ours("l1_ssim", "DDAD-style map post-processing: L1 + SSIM")
    blur_sigma: float = ours(0.0, "blur input and reconstruction before comparing; 0 = off")
    ssim_window: int = ours(11, "the usual SSIM window")
    map_sigma: float = paper(4.0, "DDAD: Gaussian smoothing of the map, sigma 4")
    score: ImageScore = ours("max", "the map's maximum (DDAD-style)")
    top_k: int = ours(50, "score=topk: pixels averaged (as DiffusionAD's top 50)")

    def __post_init__(self) -> None:
        s, T = self.image_size, self.num_train_timesteps
        check = field_check("ddpm_recon", self)
        if self.noise == "simplex":
            raise ConfigError(
                "ddpm_recon.noise=simplex is not available: no maintained simplex-noise package "
                "is a dependency of the suite; use noise=gaussian"
            )
        check(self.noise == "gaussian", "noise", "gaussian (simplex is not available)")
        factor = 2 ** (unet_levels(check, self) - 1)
        check(s >= 8 and s % factor == 0, "image_size", f">= 8 and a multiple of {factor}")
        check_unet(check, self, min_timesteps=2)
        check(self.epochs >= 1, "epochs", ">= 1")
        check(self.batch_size >= 1, "batch_size", ">= 1")
        check(self.lr > 0, "lr", "> 0")
        check(self.weight_decay >= 0, "weight_decay", ">= 0")
        check(1 <= self.t_start < T, "t_start", f"in 1..num_train_timesteps-1 (1..{T - 1})")
        check(1 <= self.steps <= self.t_start, "steps", f"in 1..t_start (1..{self.t_start})")
        check(self.sampler in SAMPLERS, "sampler", f"one of {', '.join(SAMPLERS)}")
        if self.sampler == "ddim":
            stride = self.t_start // self.steps
            check(
                T % stride == 0,
                "steps",
                f"such that the DDIM stride t_start // steps divides T ({T}); stride is {stride}",
            )
        check(self.infer_batch >= 1, "infer_batch", ">= 1")
        check(self.distance in DISTANCES, "distance", f"one of {', '.join(DISTANCES)}")
        check(self.blur_sigma >= 0, "blur_sigma", ">= 0")
        check(
            self.ssim_window >= 3 and self.ssim_window % 2 == 1 and self.ssim_window <= s,
            "ssim_window",
            f"odd, >= 3 and <= image_size ({s})",
        )
        check(self.map_sigma >= 0, "map_sigma", ">= 0")
        scores = get_args(ImageScore)
        check(self.score in scores, "score", " or ".join(scores))
        check(1 <= self.top_k <= s * s, "top_k", f"in 1..image_size**2 (1..{s * s})")


# CPU-sized: about 1-2 minutes on 2 cores for 60 train + 60 test images of the synthetic set.
_QUICK: dict[str, object] = {
    **QUICK_UNET,
    "epochs": 40,
    "batch_size": 16,
    "lr": 1e-3,
    "sampler": "ddim",
    "steps": 10,
    "map_sigma": 2.0,
    "ssim_window": 7,
}
PRESETS: dict[str, dict[str, object]] = {
    "quick": _QUICK,
    # Real data on a laptop (issue #21): the quick networks; magnetic_tile image AUROC still
    # rises from 5 epochs (0.568) to 20 (0.618), so the ~10-minute budget sets the length: 20
    # epochs of the 720 training images (results/reference/cpu/sweep/ddpm_recon-mtd-epochs).
    "cpu": {**_QUICK, "epochs": 20},
}


def _blur(x: Tensor, sigma: float) -> Tensor:
    if sigma <= 0:
        return x
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def distance_map(
    x: Tensor, recon: Tensor, distance: str, blur_sigma: float = 0.0, ssim_window: int = 11
) -> Tensor:
    """(N, C, H, W) images in [-1, 1] -> (N, 1, H, W) per-pixel distance (0 = identical)."""
    a, b = _blur(x, blur_sigma), _blur(recon, blur_sigma)
    out = torch.zeros_like(a[:, :1])
    if distance in ("l1", "l1_ssim"):
        out = out + (a - b).abs().mean(1, keepdim=True)
    if distance in ("ssim", "l1_ssim"):
        similarity = ssim((a + 1) / 2, (b + 1) / 2, ssim_window, max_val=1.0)
        out = out + (1 - similarity.mean(1, keepdim=True)) / 2
    return out


class DDPMRecon(Method[DDPMReconParams]):
    """A DDPM trained on normal images; anomaly map = distance to a partial reconstruction."""

    name = "ddpm_recon"
    params_cls = DDPMReconParams
    gray_from_rgb = "mean"  # not luminance: the scores of colour inputs were measured so

    @property
    def flags(self) -> list[str]:
        return cut_training_flags(self.params, DDPMReconParams(), "epochs")

    @property
    def grayscale(self) -> bool:
        return self.params.grayscale

    def _prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images -> the model's channels and size, scaled to [-1, 1]."""
        return self.prepare(images) * 2 - 1

    def fit(self, train: ImageSet, ctx: RunContext) -> DDPMRecon:
        p = self.params
        dev = begin_fit(self, ctx, _SEED_NOISE)
        with seeded_init(ctx, _SEED_INIT):
            unet = unet_from(p, p.image_size, self.channels)
        self.unet_ = unet.to(dev)
        self.scheduler_ = make_scheduler(p.num_train_timesteps, p.beta_schedule)
        self.sampler_ = make_sampler(p.sampler, p.num_train_timesteps, p.beta_schedule)
        self.timesteps_ = reverse_timesteps(p.t_start, p.steps)

        x = self._prepare(train.images)
        g_order = ctx.generator(_SEED_TRAIN)
        g_noise = torch.Generator(device=dev).manual_seed(g_order.initial_seed() + 1)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        per_epoch = math.ceil(len(x) / p.batch_size)
        total = p.epochs * per_epoch
        every = max(1, total // 50)
        start = time.perf_counter()
        ema, step = 0.0, 0
        unet.train()
        for _ in range(p.epochs):
            order = torch.randperm(len(x), generator=g_order)
            for b in range(per_epoch):
                batch = x[order[b * p.batch_size : (b + 1) * p.batch_size]].to(dev)
                loss = noise_prediction_loss(unet, self.scheduler_, batch, g_noise)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.detach())
                ema = value if step == 1 else 0.98 * ema + 0.02 * value
                if step % every == 0 or step == total:
                    ctx.progress(f"ddpm_recon: step {step}/{total}, loss {ema:.4f}", step / total)
        unet.eval()
        per_image = unet_train_gflops(unet, self.channels, p.image_size)
        self.fit_info_ = {
            "epochs": p.epochs,
            "steps": step,
            # Training compute: an image's forward + backward, times the images seen.
            "train_gflops_per_sample": per_image,
            "train_gflops": per_image * p.epochs * len(x),
            "final_loss": ema,
            "train_seconds": round(time.perf_counter() - start, 3),
            "unet_parameters": sum(q.numel() for q in unet.parameters()),
        }
        ctx.progress("ddpm_recon: fitted", 1.0)
        return self

    @torch.no_grad()
    def reconstruct(self, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        """[-1, 1] images on the model's device -> reconstructions from ``t_start``.

        ``generators``: one per image (:func:`bench.util.seeding.image_generators`), for the initial
        noise and DDPM's posterior noise at every step alike (diffusers draws row ``i`` of a
        batch from ``generators[i]``), so a reconstruction does not depend on the batch.
        """
        noise = per_image_randn(generators, x.shape, x.device)
        x_t = add_noise(self.scheduler_, x, noise, self.timesteps_[0])
        return reverse_sample(self.unet_, self.sampler_, x_t, self.timesteps_, generators).clamp(
            -1, 1
        )

    @torch.no_grad()
    def _maps(self, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        p = self.params
        recon = self.reconstruct(x, generators)
        d = distance_map(x, recon, p.distance, p.blur_sigma, p.ssim_window)
        return _blur(d, p.map_sigma)[:, 0]

    def predict(self, test: ImageSet) -> Prediction:
        if not hasattr(self, "unet_"):
            raise RuntimeError("DDPMRecon.predict called before fit")
        p = self.params
        # Per image, from the job's seed and the image's name: a score depends on that image,
        # the fitted model and nothing else (not the set, its order or the batch size).
        gens = image_generators(self.noise_seed_, list(test.names), self.device_)
        x = self._prepare(test.images)
        b = p.infer_batch
        maps = torch.cat(
            [
                self._maps(x[i : i + b].to(self.device_), gens[i : i + b]).float().cpu()
                for i in range(0, len(x), b)
            ]
        )
        scores = maps.flatten(1).amax(1) if p.score == "max" else top_k_mean(maps, p.top_k)
        if maps.shape[-2:] != test.image_size:
            maps = F.interpolate(maps[:, None], size=test.image_size, mode="bilinear")[:, 0]
        return Prediction(scores=scores, maps=maps)

    @property
    def inference_info(self) -> dict[str, object]:
        p = self.params
        return {
            "mode": "multi_step",
            "unet_forward_passes": p.steps,
            "sampler": p.sampler,
            "t_start": reverse_timesteps(p.t_start, p.steps)[0],
            "noise": p.noise,
        }

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float:
        """GFLOPs of one test image: all ``steps`` U-Net evaluations and the distance map."""
        s = self.params.image_size
        x = torch.zeros(1, self.channels, s, s, device=self.device_)
        return count_gflops(self._maps, x, image_generators(0, ["flops"], self.device_))


def method_entries() -> list[MethodEntry]:
    return [
        MethodEntry(
            name="ddpm_recon",
            params_cls=DDPMReconParams,
            build=DDPMRecon,
            summary="DDPM reconstruction (AnoDDPM/DDAD style): noise to t_start, reverse-sample, "
            "L1/SSIM distance map",
            presets=PRESETS,
        )
    ]
