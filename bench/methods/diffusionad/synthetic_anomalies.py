"""Perlin-noise synthetic anomalies for training anomaly segmenters (DRAEM / DiffusionAD style).

Zavrtanik et al. (DRAEM, ICCV 2021) and Zhang et al. (DiffusionAD, 2023) train on normal images
with planted fake defects: a Perlin noise field, rotated and thresholded, gives an irregular mask
``M``; inside it the image is blended with an *anomaly source* ``A`` (a texture image):

    x_aug = (1 - M) * x + M * ((1 - beta) * A + beta * x),      beta ~ U[beta_min, beta_max)

(DRAEM: ``beta ~ U[0, 0.8)``; DiffusionAD's code: ``U[0.2, 0.8)``). The Perlin field is
anomalib's (:func:`anomalib.data.utils.generators.perlin.generate_perlin_noise`), its grid scale
drawn from ``2**0 .. max_scale`` per axis (both papers: 1..32 at 256 px, so the finest blobs are
about 8 px across; at smaller images a smaller ``max_scale`` keeps that size in pixels).
The papers take ``A`` from the DTD texture set, which cannot be downloaded here, so the source is
selectable:

``self``
    another training image of the batch (or the image itself), rolled, flipped and
    colour/intensity-jittered (contrast, brightness, gamma, inversion, posterisation); with
    ``self_strips = n > 0`` it is also cut into ``n`` row strips and ``n`` column strips that are
    shuffled, as in DiffusionAD's self-augmentation (``n = 8``), which breaks its structure;
``textures``
    a random crop of one of the texture photos of the synthetic generator
    (:func:`bench.util.textures.texture`), jittered the same way;
``mixed``
    ``self`` or ``textures`` with equal probability, per anomaly;
a folder path
    images read from that folder (e.g. DTD's ``images/``), resized and jittered.

Every draw comes from one ``torch.Generator``; anomalib's Perlin function reads the global torch
RNG, so it runs inside :func:`torch.random.fork_rng` seeded from that generator.

>>> import torch
>>> maker = AnomalySynthesizer("self")
>>> x = torch.rand(4, 1, 32, 32)
>>> aug, mask = maker(x, torch.Generator().manual_seed(0), probability=1.0)
>>> aug.shape, mask.shape, bool(mask.flatten(1).any(1).all())
(torch.Size([4, 1, 32, 32]), torch.Size([4, 32, 32]), True)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.data.utils.generators.perlin import generate_perlin_noise
from torch import Tensor

from bench.util.errors import ConfigError

SOURCES = ("self", "textures", "mixed")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PERLIN_THRESHOLD = 0.5  # DRAEM's threshold on the (about [-1, 1]) Perlin field
PERLIN_MAX_SCALE = 32  # Perlin grid scales 2**0 .. 2**5 per axis, as in DRAEM and DiffusionAD


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def perlin_mask(
    size: tuple[int, int],
    g: torch.Generator,
    threshold: float = PERLIN_THRESHOLD,
    max_scale: int = PERLIN_MAX_SCALE,
) -> Tensor:
    """A non-empty (H, W) bool mask: a rotated Perlin field above ``threshold``.

    The grid scale per axis is a power of two from 1 to ``max_scale`` (at most the field side).
    """
    h, w = size
    side = 2 ** math.ceil(math.log2(max(h, w)))
    n_scales = int(math.log2(min(max_scale, side))) + 1
    for _ in range(20):
        scale = tuple(2 ** int(torch.randint(0, n_scales, (), generator=g)) for _ in range(2))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (), generator=g)))
            field = generate_perlin_noise(side, side, scale=scale, device=torch.device("cpu"))
        # DRAEM rotates the field by -90..90 degrees; a quarter turn and a flip give the same
        # variety of orientations (the two axis scales differ) at a fraction of the cost.
        field = _random_view(field, g, roll=False)[:h, :w]
        mask = field > threshold
        if mask.any():
            return mask
    # A flat field 20 times in a row is vanishingly rare; fall back to a centred square.
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    return mask


def jitter(image: Tensor, g: torch.Generator) -> Tensor:
    """Random colour/intensity changes of a (C, H, W) [0, 1] image (DRAEM-like augmenters)."""
    x = image
    mean = x.mean()
    x = (x - mean) * _uniform(g, 0.5, 2.0) + mean  # contrast
    x = x + _uniform(g, -0.3, 0.3)  # brightness
    x = x.clamp(0, 1) ** _uniform(g, 0.5, 2.0)  # gamma
    if _uniform(g) < 0.3:
        x = 1.0 - x
    if _uniform(g) < 0.3:
        x = torch.floor(x * 16) / 16  # posterise to 4 bits
    if x.shape[0] == 3:
        x = x[torch.randperm(3, generator=g)]  # a hue-like change for colour images
    return x.clamp(0, 1)


def _random_view(x: Tensor, g: torch.Generator, roll: bool = True) -> Tensor:
    x = torch.rot90(x, int(torch.randint(0, 4, (), generator=g)), dims=(-2, -1))
    if _uniform(g) < 0.5:
        x = x.flip(-1)
    if not roll:
        return x
    shift = [int(torch.randint(0, s, (), generator=g)) for s in x.shape[-2:]]
    return torch.roll(x, shifts=shift, dims=(-2, -1))


def strip_shuffle(image: Tensor, g: torch.Generator, strips: int = 8) -> Tensor:
    """Cut a (C, H, W) image into ``strips`` column strips, permute them, then the same for rows.

    DiffusionAD's self-augmentation (its ``perlin_synthetic``) re-orders an 8 x 8 grid of strips
    this way; the last strip holds the remainder when the side is not divisible by ``strips``.
    """
    for dim in (-1, -2):
        pieces = torch.split(image, max(1, image.shape[dim] // strips), dim=dim)
        order = torch.randperm(len(pieces), generator=g).tolist()
        image = torch.cat([pieces[i] for i in order], dim=dim)
    return image


def _fit(image: Tensor, size: tuple[int, int], channels: int) -> Tensor:
    """(C, H, W) -> (channels, *size), resized and converted between gray and RGB."""
    if image.shape[0] != channels:
        image = image.mean(0, keepdim=True).expand(channels, -1, -1)
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    return image.contiguous()


class AnomalySynthesizer:
    """Plants Perlin-shaped anomalies into batches of [0, 1] images.

    ``source`` is ``self``, ``textures``, ``mixed`` or a folder of images; ``beta_min`` and
    ``beta_max`` bound the share of the original image kept inside the mask (DRAEM: 0 and 0.8;
    DiffusionAD: 0.2 and 0.8); ``max_scale`` is the largest Perlin grid scale
    (:func:`perlin_mask`); ``self_strips > 0`` strip-shuffles ``self`` sources
    (:func:`strip_shuffle`).
    """

    def __init__(
        self,
        source: str = "mixed",
        beta_max: float = 0.8,
        beta_min: float = 0.0,
        max_scale: int = PERLIN_MAX_SCALE,
        self_strips: int = 0,
    ):
        self.source = source
        self.beta_min, self.beta_max = beta_min, beta_max
        self.max_scale = max_scale
        self.self_strips = self_strips
        self.files: list[Path] = []
        if source not in SOURCES:
            folder = Path(source)
            if not folder.is_dir():
                raise ConfigError(
                    f"anomaly_source must be one of {', '.join(SOURCES)} or a folder of images, "
                    f"got {source!r} (not a folder)"
                )
            self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ConfigError(f"anomaly_source folder {source!r} holds no images")

    def _source_image(self, batch: Tensor, g: torch.Generator) -> Tensor:
        _, c, h, w = batch.shape
        kind = self.source
        if kind == "mixed":
            kind = "self" if _uniform(g) < 0.5 else "textures"
        if kind == "self":
            image = batch[int(torch.randint(0, batch.shape[0], (), generator=g))]
            if self.self_strips:
                image = strip_shuffle(image, g, self.self_strips)
        elif kind == "textures":
            from bench.util.textures import TEXTURES, texture

            photo = torch.from_numpy(
                texture(TEXTURES[int(torch.randint(0, len(TEXTURES), (), generator=g))]).copy()
            )
            side = int(torch.randint(min(h, w) // 2, min(photo.shape) // 2, (), generator=g))
            r0 = int(torch.randint(0, photo.shape[0] - side + 1, (), generator=g))
            c0 = int(torch.randint(0, photo.shape[1] - side + 1, (), generator=g))
            image = photo[r0 : r0 + side, c0 : c0 + side][None]
        else:
            from torchvision.io import ImageReadMode, decode_image

            path = self.files[int(torch.randint(0, len(self.files), (), generator=g))]
            image = decode_image(str(path), mode=ImageReadMode.RGB).float() / 255.0
        return jitter(_random_view(_fit(image, (h, w), c), g), g)

    def __call__(
        self, batch: Tensor, g: torch.Generator, probability: float = 0.5
    ) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) [0, 1] -> (augmented images, (N, H, W) bool masks).

        Each image receives an anomaly with ``probability``; the others are returned unchanged
        with an empty mask.
        """
        batch = batch.detach().float().cpu()
        out, masks = batch.clone(), torch.zeros(batch.shape[0], *batch.shape[-2:], dtype=torch.bool)
        for i in range(batch.shape[0]):
            if _uniform(g) >= probability:
                continue
            mask = perlin_mask(tuple(batch.shape[-2:]), g, max_scale=self.max_scale)
            source = self._source_image(batch, g)
            beta = _uniform(g, self.beta_min, self.beta_max)
            m = mask[None].float()
            out[i] = (1 - m) * batch[i] + m * ((1 - beta) * source + beta * batch[i])
            masks[i] = mask
        return out, masks
