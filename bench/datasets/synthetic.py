"""A seeded synthetic dataset: real texture photos with planted defects and exact masks.

The normal images are crops of one of scikit-image's real 512x512 grayscale texture photos
(``skimage.data.brick()``, ``grass()``, ``gravel()``). Training crops come from rows 0-319 and
test crops from rows 320-511, each with a random 90-degree rotation and flip, so that no test
image is a copy of (part of) a training image. Anomalous test images carry one planted defect,
the kinds spread evenly (round robin) over:

``scratch``
    a straight line 1-3 px wide, 40-80 % of the image side long, at a random angle, brighter
    or darker by 0.3-0.5; mask = the drawn line.
``blob``
    an ellipse whose intensity is shifted by 0.18-0.3 and its contrast scaled by 0.8-1.2,
    with a Gaussian-blurred edge; mask = where the image changed by more than 0.04 (holes
    filled), and nothing outside the mask changed.
``hole``
    an irregular star-shaped polygon filled with a dark, near-constant value; mask = polygon.
``texture_swap``
    a polygon or ellipse replaced by a crop of *another* texture photo, rescaled by 0.6-1.6,
    rotated, and matched to the image's mean and standard deviation (so it differs in
    structure, not brightness); mask = the region.

Blobs, holes and swaps cover 3-16 % of the image (targets drawn from 4-12 %); every pixel
outside a mask is exactly the clean crop. Everything is drawn from ``numpy`` generators seeded
with ``(seed, texture, split, kind, index)``: the same seed gives a bit-identical set, and
changing a count does not change the other images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import draw

from bench.datasets.base import (
    Split,
    SplitCache,
    check_spec,
    check_split,
    resize_image,
    resize_mask,
    stack_set,
    to_channels,
)
from bench.datasets.registry import DatasetEntry, DatasetRequest
from bench.interface import ImageSet, InputSpec
from bench.util.errors import ConfigError, DataError, unknown_name
from bench.util.textures import TEXTURES, texture

DEFECT_KINDS: tuple[str, ...] = ("scratch", "blob", "hole", "texture_swap")
TRAIN_ROWS = (0, 320)  # rows of the 512x512 source photo the training crops come from
TEST_ROWS = (320, 512)  # ... and the test crops: disjoint
MAX_WINDOW = 160  # largest crop taken from the photo; larger outputs are upsampled from it

_SOURCE_SIDE = 512
_KIND_CODE = {"good": 0, **{k: i + 1 for i, k in enumerate(DEFECT_KINDS)}}
_SPLIT_CODE = {"train": 0, "test": 1}
_CACHE = SplitCache(max_bytes=512 * 1024**2)


def _rng(seed: int, *words: int) -> np.random.Generator:
    # SeedSequence wants non-negative words; map negative seeds to distinct 64-bit values.
    return np.random.default_rng([seed & (2**64 - 1), *words])


def _random_view(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop


def _crop(
    tex: np.ndarray, rows: tuple[int, int], window: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    r0 = int(rng.integers(rows[0], rows[1] - window + 1))
    c0 = int(rng.integers(0, tex.shape[1] - window + 1))
    crop = _random_view(tex[r0 : r0 + window, c0 : c0 + window], rng)
    crop = np.ascontiguousarray(crop, dtype=np.float32)
    if window != size:
        crop = resize_image(crop[None], (size, size))[0]
    return crop


# ---------------------------------------------------------------------------------------------
# Regions and defects


def _ellipse_region(size: int, rng: np.random.Generator, frac: float) -> np.ndarray:
    aspect = rng.uniform(0.5, 2.0)
    r_radius = np.sqrt(frac * size * size / (np.pi * aspect))
    c_radius = r_radius * aspect
    reach = 0.6 * max(r_radius, c_radius)
    lo, hi = min(reach, size / 2), max(size - reach, size / 2)
    r, c = rng.uniform(lo, hi), rng.uniform(lo, hi)
    rr, cc = draw.ellipse(
        r, c, r_radius, c_radius, shape=(size, size), rotation=rng.uniform(-np.pi, np.pi)
    )
    region = np.zeros((size, size), dtype=bool)
    region[rr, cc] = True
    return region


def _polygon_region(size: int, rng: np.random.Generator, frac: float) -> np.ndarray:
    n = int(rng.integers(6, 12))
    angles = (np.arange(n) + rng.uniform(-0.35, 0.35, n)) * (2 * np.pi / n)
    radius = np.sqrt(frac * size * size / np.pi)
    radii = radius * rng.uniform(0.65, 1.35, n)
    reach = 0.6 * radius
    r0, c0 = rng.uniform(reach, size - reach, 2)
    rr, cc = draw.polygon(r0 + radii * np.sin(angles), c0 + radii * np.cos(angles), (size, size))
    region = np.zeros((size, size), dtype=bool)
    region[rr, cc] = True
    return region


def _area_region(size: int, rng: np.random.Generator, shape: str) -> np.ndarray:
    """An ellipse or polygon covering 3-16 % of the image (redrawn until it does)."""
    make = _ellipse_region if shape == "ellipse" else _polygon_region
    region = np.zeros((size, size), dtype=bool)
    for _ in range(50):
        region = make(size, rng, rng.uniform(0.04, 0.12))
        if 0.03 <= region.mean() <= 0.16:
            break
    return region


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    length = rng.uniform(0.4, 0.8) * size
    theta = rng.uniform(0, np.pi)
    center = rng.uniform(0.3 * size, 0.7 * size, 2)
    half = 0.5 * length * np.array([np.sin(theta), np.cos(theta)])
    (r0, c0), (r1, c1) = np.clip(np.round([center - half, center + half]), 1, size - 2).astype(int)
    mask = np.zeros(img.shape, dtype=bool)
    rr, cc = draw.line(r0, c0, r1, c1)
    mask[rr, cc] = True
    width = int(rng.integers(1, 4))
    if width > 1:
        mask = ndimage.binary_dilation(mask, structure=np.ones((width, width), dtype=bool))
    delta = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.5)
    out = np.where(mask, np.clip(img + delta, 0.0, 1.0), img)
    return out.astype(np.float32), mask


def _blob(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    region = _area_region(img.shape[0], rng, "ellipse")
    weight = ndimage.gaussian_filter(region.astype(np.float64), sigma=rng.uniform(1.0, 2.5))
    mean = float(img[region].mean())
    offset = rng.choice([-1.0, 1.0]) * rng.uniform(0.18, 0.3)
    target = np.clip(mean + rng.uniform(0.8, 1.2) * (img - mean) + offset, 0.0, 1.0)
    changed = img + weight * (target - img)
    mask = ndimage.binary_fill_holes(np.abs(changed - img) > 0.04)
    out = np.where(mask, changed, img)
    return out.astype(np.float32), mask


def _hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    region = _area_region(img.shape[0], rng, "polygon")
    fill = rng.uniform(0.0, 0.12) + rng.normal(0.0, 0.01, img.shape)
    out = np.where(region, np.clip(fill, 0.0, 1.0), img)
    return out.astype(np.float32), region


def _texture_swap(
    img: np.ndarray, rng: np.random.Generator, own: str
) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    region = _area_region(size, rng, "polygon" if rng.random() < 0.5 else "ellipse")
    other = texture(str(rng.choice([t for t in TEXTURES if t != own])))
    side = int(np.clip(round(size * rng.uniform(0.6, 1.6)), 8, _SOURCE_SIDE))
    r0, c0 = rng.integers(0, _SOURCE_SIDE - side + 1, 2)
    patch = np.ascontiguousarray(_random_view(other[r0 : r0 + side, c0 : c0 + side], rng))
    patch = resize_image(patch[None].astype(np.float32), (size, size))[0]
    patch = (patch - patch.mean()) / max(float(patch.std()), 1e-6)
    patch = np.clip(patch * float(img.std()) + float(img.mean()), 0.0, 1.0)
    out = np.where(region, patch, img)
    return out.astype(np.float32), region


def plant_defect(
    image: np.ndarray, kind: str, rng: np.random.Generator, texture_name: str = "gravel"
) -> tuple[np.ndarray, np.ndarray]:
    """Plant one defect of ``kind`` into a float ``(S, S)`` image: ``(defective, mask)``.

    Pixels outside ``mask`` are left exactly as they were. ``texture_name`` is the image's own
    texture, which ``texture_swap`` avoids.
    """
    if kind == "scratch":
        return _scratch(image, rng)
    if kind == "blob":
        return _blob(image, rng)
    if kind == "hole":
        return _hole(image, rng)
    if kind == "texture_swap":
        return _texture_swap(image, rng, texture_name)
    raise unknown_name("defect kind", kind, DEFECT_KINDS)


# ---------------------------------------------------------------------------------------------
# The dataset


@dataclass
class SyntheticSplit:
    """One generated split at the native ``size``: images with the clean crops they came from."""

    images: np.ndarray  # (N, S, S) float32 in [0, 1]
    clean: np.ndarray  # (N, S, S) the same crops before any defect was planted
    masks: np.ndarray  # (N, S, S) bool
    labels: list[int]
    names: list[str]
    defect_types: list[str]


class SyntheticDataset:
    """Crops of a real texture photo with planted defects; generated from ``seed`` in ``load``."""

    family = "synthetic"
    has_masks = True

    def __init__(
        self,
        texture: str = "brick",
        n_train: int = 60,
        n_test_good: int = 20,
        n_test_anomalous: int = 40,
        size: int = 128,
    ) -> None:
        if texture not in TEXTURES:
            raise unknown_name("texture", texture, TEXTURES)
        for name, value, low in (
            ("n_train", n_train, 1),
            ("n_test_good", n_test_good, 0),
            ("n_test_anomalous", n_test_anomalous, 0),
            ("size", size, 16),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"synthetic {name} must be an int >= {low}, got {value!r}")
        if n_test_good + n_test_anomalous < 1:
            raise ConfigError("synthetic n_test_good + n_test_anomalous must be >= 1, got 0")
        if size > 1024:
            raise ConfigError(f"synthetic size must be <= 1024, got {size}")
        self.texture = texture
        self.category = texture
        self.n_train = n_train
        self.n_test_good = n_test_good
        self.n_test_anomalous = n_test_anomalous
        self.size = size

    @property
    def name(self) -> str:
        return f"synthetic:{self.texture}"

    def __repr__(self) -> str:
        return (
            f"SyntheticDataset({self.texture!r}, n_train={self.n_train}, n_test_good="
            f"{self.n_test_good}, n_test_anomalous={self.n_test_anomalous}, size={self.size})"
        )

    def _params(self) -> tuple[object, ...]:
        return (self.texture, self.n_train, self.n_test_good, self.n_test_anomalous, self.size)

    def kind_counts(self) -> dict[str, int]:
        """How many test images of each defect kind (round robin over :data:`DEFECT_KINDS`)."""
        n, k = self.n_test_anomalous, len(DEFECT_KINDS)
        return {kind: n // k + (i < n % k) for i, kind in enumerate(DEFECT_KINDS)}

    def generate(self, split: Split, seed: int) -> SyntheticSplit:
        """The split at the native size, sorted by name like the folder loaders sort files."""
        check_split(split)
        tex = texture(self.texture)
        tex_code = TEXTURES.index(self.texture)
        window = min(self.size, MAX_WINDOW)
        rows = TRAIN_ROWS if split == "train" else TEST_ROWS
        if split == "train":
            plan = [("good", i) for i in range(self.n_train)]
        else:
            plan = [("good", i) for i in range(self.n_test_good)]
            plan += [(kind, i) for kind, n in self.kind_counts().items() for i in range(n)]
        width = max(3, len(str(max(self.n_train, self.n_test_good, self.n_test_anomalous))))
        records = []
        for kind, i in plan:
            rng = _rng(seed, tex_code, _SPLIT_CODE[split], _KIND_CODE[kind], i)
            clean = _crop(tex, rows, window, self.size, rng)
            if kind == "good":
                image, mask = clean, np.zeros(clean.shape, dtype=bool)
            else:
                image, mask = plant_defect(clean, kind, rng, self.texture)
            records.append((f"{split}/{kind}/{i:0{width}d}.png", kind, clean, image, mask))
        records.sort(key=lambda r: r[0])
        shape = (0, self.size, self.size)
        return SyntheticSplit(
            images=np.stack([r[3] for r in records]) if records else np.zeros(shape, np.float32),
            clean=np.stack([r[2] for r in records]) if records else np.zeros(shape, np.float32),
            masks=np.stack([r[4] for r in records]) if records else np.zeros(shape, bool),
            labels=[0 if r[1] == "good" else 1 for r in records],
            names=[r[0] for r in records],
            defect_types=[r[1] for r in records],
        )

    def load(self, split: Split, spec: InputSpec, seed: int) -> ImageSet:
        """Generate the split from ``seed`` and resize it to ``spec`` (cached; a fresh copy)."""
        check_split(split)
        size = check_spec(spec)
        key = (self._params(), split, size, bool(spec.grayscale), int(seed))
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        gen = self.generate(split, seed)
        images = [to_channels(resize_image(im[None], size), spec.grayscale) for im in gen.images]
        masks = [resize_mask(m, size) for m in gen.masks]
        result = stack_set(
            images=images,
            labels=gen.labels,
            masks=masks,
            names=gen.names,
            defect_types=gen.defect_types,
            size=size,
            channels=1 if spec.grayscale else 3,
        )
        return _CACHE.put(key, result)

    def describe(self) -> dict[str, object]:
        test = {"good": self.n_test_good}
        test.update({k: n for k, n in self.kind_counts().items() if n})
        return {
            "family": self.family,
            "category": self.category,
            "root": None,
            "source": f"skimage.data.{self.texture}() (512x512 grayscale photo)",
            "has_masks": True,
            "size": self.size,
            "train": {"good": self.n_train},
            "test": test,
            "n_train": self.n_train,
            "n_test": self.n_test_good + self.n_test_anomalous,
            "n_test_anomalous": self.n_test_anomalous,
            "train_rows": list(TRAIN_ROWS),
            "test_rows": list(TEST_ROWS),
        }

    def write_mvtec_layout(self, out_dir: Path, seed: int) -> Path:
        """Write the set generated from ``seed`` as 8-bit PNGs in the MVTec AD layout.

        Returns ``out_dir/<texture>``, so that ``MVTecDataset(out_dir, texture)`` reads it
        back (images equal up to 8-bit rounding, labels and masks equal). Refuses to write
        into a non-empty folder rather than mixing with (or deleting) files already there.
        """
        root = Path(out_dir) / self.texture
        if root.exists() and any(root.iterdir()):
            raise DataError(
                f"{root}: folder exists and is not empty; expected a new or empty folder "
                "to write the synthetic dataset into"
            )
        for split in ("train", "test"):
            gen = self.generate(split, seed)  # type: ignore[arg-type]
            for name, image, mask, label in zip(
                gen.names, gen.images, gen.masks, gen.labels, strict=True
            ):
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = np.round(image * 255.0).astype(np.uint8)
                Image.fromarray(pixels).save(path)
                if label:
                    kind, stem = path.parent.name, path.stem
                    mask_path = root / "ground_truth" / kind / f"{stem}_mask.png"
                    mask_path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        # A defect-free test set still needs ground_truth/ to say "this set has masks".
        (root / "ground_truth").mkdir(parents=True, exist_ok=True)
        return root


def _build(request: DatasetRequest) -> SyntheticDataset:
    texture_name = request.arg or "brick"
    if texture_name not in TEXTURES:
        raise unknown_name("synthetic texture", texture_name, TEXTURES)
    return SyntheticDataset(texture_name)


def dataset_entries() -> list[DatasetEntry]:
    summary = (
        "synthetic[:brick|grass|gravel] (default brick): real skimage texture photos "
        "with planted scratches, blobs, holes and texture swaps, exact masks; no download, seeded"
    )
    return [DatasetEntry("synthetic", summary, _build)]
