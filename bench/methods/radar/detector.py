"""RADAR: reconstruction-free anomaly detection and segmentation with a single diffusion step.

Implements the method of M. Moradi, M. Grasso, B. M. Colosimo and K. Paynabar, "Single-Step
Reconstruction-Free Anomaly Detection and Segmentation via Diffusion Models" (arXiv:2508.04818,
2025), which names it RADAR (Reconstruction-free Anomaly Detection with Attention-based
diffusion models in Real-time).

Diffusion-reconstruction detectors noise a test image to an intermediate step and denoise it back
over many sampling steps, then compare. RADAR skips the reconstruction:

1. train a small DDPM U-Net (attention at the lowest resolution) on patches of normal images with
   the usual noise-prediction loss (:mod:`bench.methods.diffusion.ddpm`);
2. at test time noise the image to a very early step ``t`` (``t = 1``), predict the noise of every
   patch in one forward pass and fold the patches back into a predicted-noise map
   (:mod:`bench.methods.radar.patches`);
3. blur that map, take its Sobel gradient magnitude (the pixel anomaly map) and summarise each
   image by two numbers, the map's global L2 norm and its largest local L2 norm
   (:mod:`bench.methods.radar.features`);
4. fit an IsolationForest on the two features of the normal training images; its score ranks the
   test images and its own threshold (``contamination``) decides
   (:mod:`bench.methods.radar.scoring`).

The last stage is a parameter, ``scorer`` (:mod:`bench.methods.radar.scoring`): ``iforest`` (the
paper), ``gaussian`` (a Gaussian on the same two features), ``raw`` (the global L2 norm itself, the
ablation floor) or ``irf`` (OSD-IRF-style, arXiv:2604.18393, in our reading: the summary we work
from gives no formula, so we read the inverse residual field as ``x0 - x0_hat`` of the same
single step, blur it by ``irf_blur_sigma`` (our addition) and fit a per-pixel Gaussian on it; its
negative log-density is then the pixel map and its maximum or top-k mean the image score, in
place of steps 3-4).

Inference has fast paths, each a parameter whose default is the plain path (see
:class:`Radar`): mixed precision, channels_last, automatic batch size, ``torch.compile`` /
CUDA graphs, and ``inference=full``, the patch-trained U-Net over the whole image in one pass
(about 420x fewer FLOPs than 5,329 patches of a 100 x 100 image; ``bench speed`` measures them).

Trained U-Nets are cached in ``RunContext.cache_dir`` under a hash of what training depends on
(:data:`TRAINING_FIELDS`, the training images, the seed and the device type), so that jobs that
differ only in ``t``, the scorer or other inference settings train once (``bench ablate``).

The defaults of :class:`RadarParams` (the ``paper`` preset) are the paper's settings where it
gives them (100 px gray images, 28 px patches at stride 1, ``t = 1``, the two features, an
IsolationForest with contamination 0.05); what it leaves open (the U-Net architecture, the
noise schedule, the optimiser, the blur sigma, the local window, the training length: 10,000
steps of 512 patches) is our choice, and each field says which (``bench list``,
:mod:`bench.util.sources`). The ``quick`` preset is a CPU-sized run.

Any patch size works: a patch the U-Net cannot halve evenly (14 or 42 px for 3 levels) is
reflect-padded up to the next multiple of ``2 ** (levels - 1)`` and the predicted noise of the
padding cropped away (:func:`bench.methods.diffusion.ddpm.padded_unet`), in training and at test
time alike; records say so (``inference.unet_input``, ``inference.patch_padding``).

Inference noise is drawn per image, from a generator on the device seeded by the job's seed and
the image's name (:mod:`bench.util.seeding`): an image's score depends on that image only, not on
the set, its order or the batch it is predicted in.

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

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import Tensor

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext
from bench.methods.diffusion.ddpm import (
    add_noise,
    make_scheduler,
    noise_prediction_loss,
    padding_to_multiple,
    unet_train_gflops,
    x0_from_eps,
)
from bench.methods.diffusion.unet_params import check_unet, unet_from, unet_levels
from bench.methods.radar.features import anomaly_map, blur, blur_kernel_size, image_features
from bench.methods.radar.patches import (
    chunk_for_memory,
    patch_starts,
    predict_noise_map,
    sample_patches,
    unet_forward,
)
from bench.methods.radar.scoring import (
    GaussianScorer,
    IrfScorer,
    IsolationForestScorer,
    RawScorer,
    Scorer,
)
from bench.util.errors import ConfigError
from bench.util.flops import count_gflops
from bench.util.hashing import stable_hash
from bench.util.seeding import image_generators, per_image_randn
from bench.util.sources import ours, paper, suite
from bench.util.timing import PeakMemory
from bench.util.validation import field_check

log = logging.getLogger(__name__)

# Offsets of RunContext.generator: one independent stream per purpose.
_SEED_INIT, _SEED_TRAIN, _SEED_NOISE, _SEED_SUBSET = 11, 12, 13, 14

TrainPrecision = Literal["fp32", "bf16"]
InferPrecision = Literal["train", "fp32", "tf32", "bf16", "fp16"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]
InferenceMode = Literal["patches", "full"]
ScorerName = Literal["iforest", "gaussian", "irf", "raw"]
GaussianCovariance = Literal["full", "diagonal", "ledoitwolf"]
IrfFeatures = Literal["pixel", "patch"]
IrfReduce = Literal["max", "topk"]
SCORERS: tuple[str, ...] = get_args(ScorerName)
PRECISIONS: tuple[str, ...] = get_args(InferPrecision)
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
# torch.compile modes that replay CUDA graphs (on a CUDA device).
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# infer_batch=0 on a CPU: patches per pass (full mode: the same number of pixels). 256, the quick
# preset's; on the 2-core CPU 128 and 256 were within 15% of each other (results/perf/README.md).
CPU_AUTO_PATCHES = 256
# Training: "converged" = the loss moving average first within this share of its final value.
_CONVERGED_WITHIN = 0.05
_CURVE_FIELDS = (
    "loss_curve",
    "train_steps_per_s",
    "train_patches_per_s",
    "converged_step",
    "converged_seconds",
)

# The parameters the trained U-Net depends on; any other parameter can change without retraining.
TRAINING_FIELDS: tuple[str, ...] = (
    "image_size",
    "patch_size",
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "attention",
    "num_train_timesteps",
    "beta_schedule",
    "train_stride",
    "train_max_t",
    "train_steps",
    "batch_size",
    "lr",
    "weight_decay",
    "precision",
)


@dataclass(frozen=True)
class RadarParams:
    """RADAR's parameters. Each default says where it comes from (:mod:`bench.util.sources`, shown
    by ``bench list``): the paper gives the input size, the patch size and stride, the step
    ``t``, the two features and the IsolationForest with contamination 0.05; it leaves the U-Net
    architecture, the noise schedule, the optimiser, the blur, the local window and the amount of
    training open, and those values are ours.

    The step ``t`` is a diffusers index (:mod:`bench.methods.diffusion.ddpm`): index 0 is the first
    noising step (DDPM's ``t = 1``), so the default ``t=1`` reads the paper's "t = 1" as an
    index and ``t=0`` is the smallest step there is (the other reading; ``bench ablate --grid
    t=0,1,...`` has both).
    """

    # input
    image_size: int = paper(100, "experimental setup: images resized to 100 x 100, grayscale")
    patch_size: int = paper(28, "experimental setup: 28 x 28 patches")
    # U-Net and noise schedule
    block_out_channels: tuple[int, ...] = ours((32, 64, 64), "U-Net architecture not reported")
    layers_per_block: int = ours(2, "U-Net architecture not reported (diffusers default)")
    norm_num_groups: int = ours(32, "U-Net architecture not reported (diffusers default)")
    attention: bool = ours(
        True, "the paper names an attention U-Net; where the attention sits is ours (lowest "
        "resolution)"
    )  # fmt: skip
    num_train_timesteps: int = ours(1000, "schedule not reported: DDPM's T (Ho et al. 2020)")
    beta_schedule: str = ours("linear", "schedule not reported: DDPM's linear 1e-4..0.02")
    # training
    train_stride: int = paper(1, "experimental setup: overlapping patches at stride 1")
    train_max_t: int = ours(0, "training steps drawn from 0..train_max_t-1; 0 = all T (DDPM)")
    train_steps: int = ours(10_000, "training length not reported: a GPU-scale run")
    batch_size: int = ours(512, "batch size not reported")
    lr: float = ours(1e-4, "optimiser not reported: AdamW at the usual DDPM rate")
    weight_decay: float = ours(0.0, "optimiser not reported")
    precision: TrainPrecision = suite("fp32", "bf16 autocast, on CUDA only")
    # inference
    t: int = paper(1, "t = 1 (a diffusers index: 0 is the first noising step, see above)")
    infer_stride: int = paper(1, "experimental setup: stride 1 at test time too")
    # Patches per forward pass (full mode: as many tiles/images as hold the same number of
    # pixels); halved on a CUDA out-of-memory. 0 = automatic: what fits the GPU, a fixed CPU size.
    infer_batch: int = suite(1024, "patches per U-Net pass; the scores do not depend on it")
    # Inference fast paths (the defaults are the plain path; see the class docstring).
    infer_precision: InferPrecision = suite("train", "fast path: autocast precision")
    channels_last: bool = suite(False, "fast path")
    compile: CompileMode = suite("none", "fast path: torch.compile")
    inference: InferenceMode = suite("patches", "full: our fast path, the U-Net on the whole image")
    full_tile: int = suite(0, "full mode: 0 = one pass per image, else tiles, half overlap")
    # features and scorer
    blur_sigma: float = ours(1.0, "the paper blurs the noise map; sigma not reported; 0 = off")
    window: int = ours(8, "the paper takes a max local L2 norm; window size not reported")
    scorer: ScorerName = paper(
        "iforest", "IsolationForest on the two features; the others are our variants"
    )
    contamination: float = paper(0.05, "IsolationForest contamination 0.05")
    n_estimators: int = ours(100, "not reported: scikit-learn's default")
    quantile: float = suite(0.95, "gaussian, irf, raw: own threshold = this training quantile")
    gaussian_covariance: GaussianCovariance = suite("full", "scorer=gaussian (our variant)")
    irf_features: IrfFeatures = suite(
        "pixel", "scorer=irf, our reading of OSD-IRF: per-position Gaussian, or pooled patches"
    )
    irf_patch: int = suite(3, "scorer=irf, irf_features=patch: neighbourhood size")
    irf_covariance: Literal["diagonal", "ledoitwolf"] = suite(
        "diagonal", "scorer=irf (ledoitwolf: irf_features=patch only)"
    )
    irf_reduce: IrfReduce = suite("max", "scorer=irf: image score from the map")
    irf_topk: int = suite(10, "scorer=irf, irf_reduce=topk: pixels averaged")
    irf_blur_sigma: float = suite(
        1.0, "scorer=irf: Gaussian blur of the field x0 - x0_hat, our addition; 0 = off"
    )
    scorer_images: int = suite(0, "training images the scorer is fitted on; 0 = all of them")

    def __post_init__(self) -> None:
        s = self.image_size
        check = field_check("radar", self)
        check(s >= 8, "image_size", ">= 8")
        check(1 <= self.patch_size <= s, "patch_size", f"between 1 and image_size ({s})")
        factor = 2 ** (unet_levels(check, self) - 1)
        # Any size: a patch the U-Net cannot halve evenly is reflect-padded up to a multiple of
        # `factor` (Radar.unet_multiple); reflection needs the padding smaller than the patch.
        check(
            padding_to_multiple(self.patch_size, factor)[1] < self.patch_size,
            "patch_size",
            f"large enough to reflect-pad up to a multiple of {factor}",
        )
        check_unet(check, self, min_timesteps=1)
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
        precisions = get_args(TrainPrecision)
        check(self.precision in precisions, "precision", " or ".join(precisions))
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
        check(self.infer_batch >= 0, "infer_batch", ">= 0 (0 = automatic)")
        check(self.infer_precision in PRECISIONS, "infer_precision", f"one of {PRECISIONS}")
        check(self.compile in COMPILE_MODES, "compile", f"one of {COMPILE_MODES}")
        modes = get_args(InferenceMode)
        check(self.inference in modes, "inference", " or ".join(modes))
        if self.full_tile:  # any size: reflect-padded like the patches
            check(
                self.patch_size <= self.full_tile <= s,
                "full_tile",
                f"0 (whole image) or between patch_size ({self.patch_size}) and image_size ({s})",
            )
        for blur_field in ("blur_sigma", "irf_blur_sigma"):
            sigma = getattr(self, blur_field)
            check(sigma >= 0, blur_field, ">= 0")
            check(
                blur_kernel_size(sigma) // 2 < s,
                blur_field,
                f"small enough for a {s}-pixel image (3 sigma < image_size)",
            )
        check(1 <= self.window <= s, "window", f"between 1 and image_size ({s})")
        check(self.scorer in SCORERS, "scorer", f"one of {', '.join(SCORERS)}")
        check(0 < self.contamination <= 0.5, "contamination", "in (0, 0.5]")
        check(self.n_estimators >= 1, "n_estimators", ">= 1")
        check(0 < self.quantile < 1, "quantile", "in (0, 1)")
        covs = get_args(GaussianCovariance)
        check(self.gaussian_covariance in covs, "gaussian_covariance", f"one of {covs}")
        features = get_args(IrfFeatures)
        check(self.irf_features in features, "irf_features", " or ".join(features))
        check(1 <= self.irf_patch <= s, "irf_patch", f"between 1 and image_size ({s})")
        check(
            self.irf_covariance == "diagonal"
            or (self.irf_covariance == "ledoitwolf" and self.irf_features == "patch"),
            "irf_covariance",
            "diagonal, or ledoitwolf with irf_features=patch",
        )
        reduces = get_args(IrfReduce)
        check(self.irf_reduce in reduces, "irf_reduce", " or ".join(reduces))
        check(1 <= self.irf_topk <= s * s, "irf_topk", f"between 1 and image_size^2 ({s * s})")
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
    # Real data on a laptop (issue #21), chosen from the magnetic_tile sweep
    # (results/reference/cpu/sweep/radar-mtd-*, README "Presets"): image AUROC is flat in
    # training length (150 steps 0.589, 500 0.588, 1,500 0.588, 5,000 0.568), so 500 steps,
    # where the training loss stops falling (converged_step 470); whole-image inference scores
    # like patches at stride 6 and 2 (0.589 vs 0.580, 0.565) for a 13th and a 107th of the
    # FLOPs; 200 px bought +0.018 at
    # 4x the inference FLOPs, inside the bootstrap interval (+-0.05). The scorer sees every
    # training image, as in the paper. About 4 minutes a job on 2 cores.
    "cpu": {
        "block_out_channels": (16, 32, 32),
        "norm_num_groups": 8,
        "train_steps": 500,
        "batch_size": 64,
        "lr": 1e-3,
        "inference": "full",
        "infer_stride": 6,
        "infer_batch": 256,
    },
}


def _device_generator(ctx: RunContext, offset: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(ctx.generator(offset).initial_seed())


class Radar(Method[RadarParams]):
    """RADAR as a :class:`~bench.interface.Method`: ``fit`` on normal images, ``predict``.

    Fitted state (after ``fit``): ``unet_``, ``scheduler_``, ``scorer_``, ``train_loss_`` (final
    moving average of the training loss) and ``fit_info_`` (a dict for the result record);
    ``infer_unet_`` (the U-Net as inference calls it: compiled with ``compile``) and
    ``infer_batch_`` (inputs per U-Net pass, after the automatic choice and any halving).

    Inference fast paths (issue #8; the defaults are the plain path, bit for bit):
    ``infer_precision`` (autocast; ``tf32`` and ``fp16`` need CUDA), ``channels_last``,
    ``infer_batch=0`` (as many patches per pass as fit the GPU), ``compile`` (``torch.compile``;
    ``reduce-overhead`` replays CUDA graphs) and ``inference=full`` (the patch-trained U-Net on
    the whole image, or on ``full_tile`` tiles, in one pass).
    """

    name = "radar"
    params_cls = RadarParams

    @property
    def flags(self) -> list[str]:
        """``train:cut`` on every table row of the paper U-Net trained on fewer patches than
        the paper preset's 10,000 x 512 (a GPU window's budget; ``fit_info.patches_seen`` says
        how many). A smaller U-Net is marked by its preset (``preset:quick``) instead."""
        p, paper = self.params, RadarParams()
        short = p.train_steps * p.batch_size < paper.train_steps * paper.batch_size
        return ["train:cut"] if short and p.block_out_channels == paper.block_out_channels else []

    # -- glue ----------------------------------------------------------------------------------

    def _prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images of any size and colour -> grayscale, image_size, scaled to [-1, 1]."""
        return self.prepare(images) * 2.0 - 1.0

    def _autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """Training's autocast dtype (``precision``)."""
        if self.params.precision == "bf16" and device.type == "cuda":
            return torch.bfloat16
        return None

    # -- inference fast paths ------------------------------------------------------------------

    def inference_precision(self, device: torch.device) -> str:
        """``infer_precision`` resolved: ``train`` is inference as trained (bf16 autocast where
        ``precision=bf16`` trains on CUDA, else fp32)."""
        if self.params.infer_precision == "train":
            return "bf16" if self._autocast_dtype(device) else "fp32"
        return self.params.infer_precision

    def _check_device(self, device: torch.device) -> None:
        precision = self.params.infer_precision
        if precision in ("fp16", "tf32") and device.type != "cuda":
            raise ConfigError(
                f"radar.infer_precision={precision} needs a CUDA device, got {device.type} "
                "(use bf16 or fp32 there)"
            )

    @property
    def unet_multiple(self) -> int:
        """The U-Net halves its input ``levels - 1`` times: its input sides must be multiples
        of this; other patch (tile, image) sizes are reflect-padded up to one, the predicted
        noise cropped back (:func:`~bench.methods.diffusion.ddpm.padded_unet`), in training and
        test."""
        return 2 ** (len(self.params.block_out_channels) - 1)

    def unet_input_size(self, size: int) -> int:
        """The side of what the U-Net sees for a ``size``-pixel patch (tile, image)."""
        return size + sum(padding_to_multiple(size, self.unet_multiple))

    def inference_geometry(self) -> tuple[int, int]:
        """(patch, stride) of inference: RADAR's patches, or whole images / half-overlapping
        tiles in full mode (a patch as large as the image is one pass over it)."""
        p = self.params
        if p.inference == "patches":
            return p.patch_size, p.infer_stride
        if p.full_tile:
            return p.full_tile, max(1, p.full_tile // 2)
        return p.image_size, 1

    def _resolve_infer_batch(self, device: torch.device) -> int:
        """Inputs per U-Net pass: ``infer_batch`` patches' worth of pixels, or, with
        ``infer_batch=0``, what fits in half the free GPU memory (a fixed size on a CPU)."""
        p = self.params
        patch, _ = self.inference_geometry()
        if p.infer_batch or device.type != "cuda":
            patches = p.infer_batch or CPU_AUTO_PATCHES
            return max(1, patches * p.patch_size**2 // patch**2)
        item = torch.randn(1, 1, patch, patch, device=device)
        forward = unet_forward(
            self.unet_,
            self.params.t,
            device,
            self._infer_autocast(device),
            p.channels_last,
            multiple=self.unet_multiple,
        )
        with self._matmul_precision(device):
            return chunk_for_memory(forward, item, device)

    def _infer_autocast(self, device: torch.device) -> torch.dtype | None:
        return _AUTOCAST.get(self.inference_precision(device))

    @contextlib.contextmanager
    def _matmul_precision(self, device: torch.device) -> Iterator[None]:
        """``tf32``: TensorFloat-32 for the float32 matrix products too (cuDNN convolutions use
        it by default), restored afterwards."""
        if self.inference_precision(device) != "tf32":
            yield
            return
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)

    def _setup_inference(self, device: torch.device) -> None:
        """The trained U-Net made ready for inference: memory format, compilation, batch size."""
        p = self.params
        if p.channels_last:
            self.unet_.to(memory_format=torch.channels_last)
        self.infer_unet_ = self.unet_
        if p.compile != "none":
            mode = None if p.compile == "default" else p.compile
            self.infer_unet_ = torch.compile(self.unet_, mode=mode)
        self.infer_batch_ = self._resolve_infer_batch(device)

    def injected_noise(self, x: Tensor, names: list[str]) -> Tensor:
        """The noise that takes prepared images to step ``t``: each image's own draw, from a
        generator on the device seeded by the job's seed and the image's name
        (:func:`bench.util.seeding.image_seed`). An image's noise, and so its score, does not depend
        on the other images of the set, their order or the batch size."""
        generators = image_generators(self.noise_seed_, names, self.device_)
        return per_image_randn(generators, x.shape, x.device, x.dtype)

    def _single_step(self, x: Tensor, names: list[str]) -> tuple[Tensor, Tensor]:
        """Prepared images on the model's device and their names -> (predicted noise, injected
        noise) maps."""
        p = self.params
        patch, stride = self.inference_geometry()
        cuda_graphs = p.compile in _CUDA_GRAPH_MODES and self.device_.type == "cuda"
        eps = self.injected_noise(x, names)
        with self._matmul_precision(self.device_):
            noise_map, self.infer_batch_ = predict_noise_map(
                self.infer_unet_,
                self.scheduler_,
                x,
                p.t,
                patch,
                stride,
                self.infer_batch_,
                eps,
                self._infer_autocast(self.device_),
                channels_last=p.channels_last,
                # CUDA graphs: one shape for every pass; automatic batch: fewer ragged passes.
                pad=cuda_graphs,
                group_chunks=1 if p.infer_batch else 4,
                cuda_graphs=cuda_graphs,
                multiple=self.unet_multiple,
            )
        return noise_map, eps

    def inverse_residual_field(self, x: Tensor, noise_map: Tensor, eps: Tensor) -> Tensor:
        """Our reading of OSD-IRF's field: ``x0 - x0_hat`` of prepared images, blurred by
        ``irf_blur_sigma`` (the blur is our addition; the summary we work from gives no
        formula, see :class:`~bench.methods.radar.scoring.IrfScorer`).

        ``x0_hat`` is the one-step clean estimate from ``x_t`` and the predicted noise, which
        makes the field ``sqrt((1 - abar_t) / abar_t) (eps_hat - eps)``.
        """
        t = self.params.t
        x_t = add_noise(self.scheduler_, x.float(), eps.float(), t)
        field = x.float() - x0_from_eps(self.scheduler_, x_t, noise_map.float(), t)
        return blur(field, self.params.irf_blur_sigma)

    def _scorer_inputs(self, x: Tensor, names: list[str]) -> tuple[Tensor, Tensor]:
        """Prepared images and their names -> (what the scorer takes, (N, 1, S, S) pixel
        anomaly maps).

        ``irf``: the inverse residual fields, and the maps come from the fitted scorer (the
        caller); every other scorer: the two image features of the Sobel map, and that map.
        """
        noise_map, eps = self._single_step(x, names)
        if self.params.scorer == "irf":
            field = self.inverse_residual_field(x, noise_map, eps).cpu()
            return field, field
        processed = anomaly_map(noise_map, self.params.blur_sigma)
        return image_features(processed, self.params.window), processed

    def _make_scorer(self, seed: int) -> Scorer:
        p = self.params
        if p.scorer == "iforest":
            return IsolationForestScorer(p.contamination, p.n_estimators, seed)
        if p.scorer == "gaussian":
            return GaussianScorer(p.quantile, p.gaussian_covariance)
        if p.scorer == "raw":
            return RawScorer(p.quantile)
        return IrfScorer(
            p.irf_features, p.irf_patch, p.irf_covariance, p.irf_reduce, p.irf_topk, p.quantile
        )

    # -- the trained U-Net, cached per training configuration ------------------------------------

    def training_key(self, x: Tensor, ctx: RunContext) -> str:
        """Hash of everything the trained U-Net depends on: training params, data, seed, device."""
        data = hashlib.sha256(x.detach().float().cpu().contiguous().numpy().tobytes())
        return stable_hash(
            {
                "method": self.name,
                "training": {f: getattr(self.params, f) for f in TRAINING_FIELDS},
                "train_images": data.hexdigest(),
                "seed": ctx.seed,
                "device_type": ctx.device.type,
            }
        )

    @staticmethod
    def _cache_path(ctx: RunContext, key: str) -> Path | None:
        return None if ctx.cache_dir is None else Path(ctx.cache_dir) / f"radar-unet-{key}.pt"

    def _load_cached(self, path: Path | None) -> dict[str, object] | None:
        if path is None or not path.exists():
            return None
        try:
            entry = torch.load(path, map_location=self.device_, weights_only=True)
            self.unet_.load_state_dict(entry.pop("state_dict"))
        except Exception as exc:  # a damaged or foreign file, whatever the error: retrain
            log.warning("ignoring the cached U-Net %s: %s", path, exc)
            return None
        return entry

    def _save_cached(self, path: Path | None, info: dict[str, object]) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.unet_.state_dict().items()}
        # Temp file + rename: a job killed mid-write never leaves a half file for the next one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"state_dict": state, **info}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- Detector ------------------------------------------------------------------------------

    def fit(self, train: ImageSet, ctx: RunContext) -> Radar:
        p = self.params
        dev = ctx.device
        self._check_device(dev)
        x = self._prepare(train.images.to(dev))
        self.device_ = dev
        self.noise_seed_ = ctx.generator(_SEED_NOISE).initial_seed()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.generator(_SEED_INIT).initial_seed())
            unet = self._build_unet()
        self.unet_ = unet.to(dev)
        self.scheduler_ = make_scheduler(p.num_train_timesteps, p.beta_schedule)

        n_scorer = len(train) if p.scorer_images == 0 else min(p.scorer_images, len(train))
        ys = patch_starts(p.image_size, p.patch_size, p.infer_stride)
        # Progress share of training: a backward pass costs about two forward passes.
        train_cost = 3 * p.train_steps * p.batch_size
        train_share = train_cost / (train_cost + n_scorer * len(ys) ** 2)

        key = self.training_key(x, ctx)
        cache_path = self._cache_path(ctx, key)
        cached = self._load_cached(cache_path)
        if cached is None:
            with PeakMemory(dev) as train_mem:
                start = time.perf_counter()
                curve = self._train(x, ctx, train_share)
                train_s = time.perf_counter() - start
            trained = {
                **curve,
                "train_seconds": round(train_s, 3),
                "train_peak_mem_mb": round(train_mem.peak_mb, 1),
                "train_peak_mem_kind": train_mem.kind,
            }
            self._save_cached(cache_path, trained)
        else:
            # The reused job's own fit time is small; the record keeps the original training's.
            trained = cached
            ctx.progress("radar: U-Net reused from the run cache", train_share)
        self.unet_.eval()
        self._setup_inference(dev)
        loss = float(trained["final_loss"])

        ctx.progress("radar: scorer on the training images", train_share)
        start = time.perf_counter()
        names = list(train.names)
        if n_scorer < len(train):
            pick = torch.randperm(len(train), generator=ctx.generator(_SEED_SUBSET))[:n_scorer]
            pick = pick.sort().values
            x, names = x[pick.to(dev)], [names[i] for i in pick.tolist()]
        inputs, _ = self._scorer_inputs(x, names)
        self.scorer_ = self._make_scorer(ctx.seed).fit(inputs)
        ctx.progress("radar: fitted", 1.0)

        self.train_loss_ = loss
        # The U-Net computes on the padded patch (patch sizes it cannot halve are reflect-padded).
        per_patch = unet_train_gflops(self.unet_, 1, self.unet_input_size(p.patch_size))
        self.fit_info_ = {
            "steps": p.train_steps,
            "patches_seen": p.train_steps * p.batch_size,
            # Training compute: a patch's forward + backward, times the patches seen.
            "train_gflops_per_sample": per_patch,
            "train_gflops": per_patch * p.train_steps * p.batch_size,
            "final_loss": loss,
            "unet_from_cache": cached is not None,
            "unet_key": key,
            "train_seconds": float(trained["train_seconds"]),
            "train_peak_mem_mb": trained["train_peak_mem_mb"],
            "train_peak_mem_kind": trained["train_peak_mem_kind"],
            "scorer": p.scorer,
            "scorer_seconds": round(time.perf_counter() - start, 3),
            "scorer_images": n_scorer,
            "unet_parameters": sum(q.numel() for q in self.unet_.parameters()),
            "precision": "bf16" if self._autocast_dtype(dev) else "fp32",
            "infer_precision": self.inference_precision(dev),
            "infer_batch": self.infer_batch_,
            # What the U-Net sees in training: patch_size, reflect-padded to unet_multiple.
            "train_unet_input": self.unet_input_size(p.patch_size),
            # Training throughput and the loss curve ("time to convergence"; see _train).
            **{k: trained[k] for k in _CURVE_FIELDS if k in trained},
        }
        return self

    def _build_unet(self) -> UNet2DModel:
        return unet_from(self.params, self.params.patch_size, 1)

    def _train(self, x: Tensor, ctx: RunContext, share: float) -> dict[str, object]:
        """The noise-prediction loss on random patches.

        The training fast path: every step draws its (image, position) patches on the device
        (:func:`~bench.methods.radar.patches.sample_patches`: no materialised patch set, no
        DataLoader), optionally under bf16 autocast (``precision``), with the fused AdamW
        kernel on CUDA. Returns the final moving-average loss and the loss curve: the moving
        average at <= 51 checkpoints (``loss_curve``: [step, loss, seconds]), steps/s and
        patches/s, and the first checkpoint within 5% of the final loss (``converged_step``,
        ``converged_seconds``: time to convergence).
        """
        p = self.params
        dev = x.device
        unet, scheduler = self.unet_, self.scheduler_
        generator = _device_generator(ctx, _SEED_TRAIN, dev)
        # On the device once: sample_patches then needs no host-to-device copy per step.
        ys = patch_starts(p.image_size, p.patch_size, p.train_stride).to(dev)
        optimizer = torch.optim.AdamW(
            unet.parameters(),
            lr=p.lr,
            weight_decay=p.weight_decay,
            **({"fused": True} if dev.type == "cuda" else {}),
        )
        autocast = self._autocast_dtype(dev)
        every = max(1, p.train_steps // 50)
        ema = torch.zeros((), device=dev)
        curve: list[list[float]] = []
        unet.train()
        start = time.perf_counter()
        for step in range(1, p.train_steps + 1):
            patches = sample_patches(x, p.patch_size, ys, ys, p.batch_size, generator)
            with torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=bool(autocast)):
                loss = noise_prediction_loss(
                    unet, scheduler, patches, generator, p.train_max_t, self.unet_multiple
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # A moving average over ~50 steps, kept on the device to avoid a sync per step.
            ema = loss.detach() if step == 1 else 0.98 * ema + 0.02 * loss.detach()
            if step % every == 0 or step == p.train_steps:
                value = float(ema.item())  # synchronises: the clock below is honest on CUDA
                curve.append([step, value, round(time.perf_counter() - start, 4)])
                ctx.progress(
                    f"radar: step {step}/{p.train_steps}, loss {value:.4f}",
                    share * step / p.train_steps,
                )
        seconds = max(time.perf_counter() - start, 1e-9)
        unet.eval()
        final = float(ema.item())
        converged = next(c for c in curve if c[1] <= final * (1 + _CONVERGED_WITHIN))
        return {
            "final_loss": final,
            "loss_curve": curve,
            "train_steps_per_s": round(p.train_steps / seconds, 3),
            "train_patches_per_s": round(p.train_steps * p.batch_size / seconds, 1),
            "converged_step": int(converged[0]),
            "converged_seconds": converged[2],
        }

    @property
    def inference_info(self) -> dict[str, object]:
        """How inference runs: mode, precision, U-Net passes, patches (or tiles) per image."""
        p = self.params
        patch, stride = self.inference_geometry()
        n = len(patch_starts(p.image_size, patch, stride)) ** 2
        device = getattr(self, "device_", None)
        batch = getattr(self, "infer_batch_", p.infer_batch)
        return {
            "mode": p.inference,
            "unet_forward_passes": 1,  # one diffusion step: every pixel through the U-Net once
            "patches_per_image": n,  # full mode: tiles per image (1 = the whole image)
            "patch_size": patch,
            "stride": stride,
            # The U-Net's input side: patch_size reflect-padded up to a multiple it can halve
            # (the predicted noise of the padding is cropped away), as in training.
            "unet_input": self.unet_input_size(patch),
            "patch_padding": "reflect" if self.unet_input_size(patch) != patch else "none",
            "t": p.t,
            "precision": p.infer_precision if device is None else self.inference_precision(device),
            "channels_last": p.channels_last,
            "compile": p.compile,
            "infer_batch": batch,
            "unet_calls_per_image": round(n / batch, 4) if batch else None,
        }

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float:
        """U-Net GFLOPs of one test image: one patch (tile, image) forward times their number.

        ``image_size`` is the evaluation size; RADAR always works at ``image_size`` itself. The
        count does not depend on the weights, so an unfitted detector counts a fresh U-Net.
        """
        p = self.params
        patch, stride = self.inference_geometry()
        unet, device = getattr(self, "unet_", None), getattr(self, "device_", torch.device("cpu"))
        if unet is None:
            with torch.random.fork_rng(devices=[]):
                unet = self._build_unet()
        side = self.unet_input_size(patch)  # the padded input the U-Net really computes on
        x = torch.zeros(1, 1, side, side, device=device)
        per_pass = count_gflops(unet, x, torch.tensor([p.t], device=device))
        return per_pass * len(patch_starts(p.image_size, patch, stride)) ** 2

    def predict(self, test: ImageSet) -> Prediction:
        if not hasattr(self, "scorer_"):
            raise RuntimeError("Radar.predict called before fit")
        x = self._prepare(test.images.to(self.device_))
        inputs, processed = self._scorer_inputs(x, list(test.names))
        if isinstance(self.scorer_, IrfScorer):
            processed = self.scorer_.pixel_map(inputs)
            scores = self.scorer_.reduce_map(processed)
        else:
            scores = self.scorer_.score(inputs)
        decisions = self.scorer_.decide_scores(scores)  # no second pass over the features
        maps = F.interpolate(
            processed.float(), size=test.image_size, mode="bilinear", align_corners=False
        )
        return Prediction(scores=scores, decisions=decisions, maps=maps[:, 0].float().cpu())


def method_entries() -> list[MethodEntry]:
    return [
        MethodEntry(
            name="radar",
            params_cls=RadarParams,
            build=Radar,
            summary="RADAR: single-step DDPM noise prediction on patches, "
            "blur/Sobel features, IsolationForest (or radar.scorer= gaussian, raw, or irf: "
            "OSD-IRF-style, our reading: IRF read as x0 - x0_hat, per-pixel Gaussian)",
            presets=PRESETS,
        )
    ]
