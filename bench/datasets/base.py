"""What every dataset provides, and the image/mask decoding and resizing all of them share.

A dataset hands the runner two :class:`~bench.interface.ImageSet` (``train``: normal images
only; ``test``: normal and anomalous) at the resolution and colour an
:class:`~bench.interface.InputSpec` asks for. Every loader goes through :func:`read_image`,
:func:`read_mask`, :func:`resize_image` and :func:`resize_mask` so that a synthetic image and
the same image written to disk and read back come out the same (up to 8-bit rounding).

Conventions:

* images are float32 in [0, 1], ``(C, H, W)`` with ``C = 1`` (grayscale) or 3 (RGB);
* any source mode is converted, never refused: palette, alpha (dropped, not composited),
  1-bit, 16-bit and float grayscale; RGB becomes gray with ITU-R 601 luma (PIL's ``"L"``);
* images are resized with PIL's antialiased bilinear filter, masks with nearest neighbour;
  non-square sources are stretched to the target (no crop), as MVTec AD practice does;
* EXIF orientation is ignored on purpose: masks are aligned with the stored pixels.
"""

from __future__ import annotations

import numbers
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from bench.interface import ImageSet, InputSpec
from bench.util.errors import ConfigError, DataError

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")

#: File name endings (lower case) the folder loaders treat as images; anything else is skipped.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La"})


@runtime_checkable
class Dataset(Protocol):
    """A named source of train/test images; ``load`` may be called many times (cache it)."""

    family: str  # "synthetic" | "mvtec" | "prints3d"
    category: str  # "gravel", "magnetic_tile", "fdm", ...
    has_masks: bool

    def load(self, split: Split, spec: InputSpec, seed: int) -> ImageSet:
        """The split at ``spec``; ``seed`` matters only where the data is generated."""
        ...

    def describe(self) -> dict[str, object]:
        """Root path, counts per defect type etc., for the run manifest (JSON-serialisable)."""
        ...


def is_image_file(path: Path) -> bool:
    """A visible regular file with an image extension (case-insensitive)."""
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def check_spec(spec: InputSpec) -> tuple[int, int]:
    """The target (H, W) of ``spec``, or a ConfigError when it is not two positive ints."""
    size = tuple(spec.image_size)
    if len(size) != 2 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ConfigError(f"image_size must be two positive ints (H, W), got {spec.image_size!r}")
    return int(size[0]), int(size[1])


# ---------------------------------------------------------------------------------------------
# Resizing (shared by every loader, so that all datasets look alike to a method)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float ``(C, h, w)`` image to ``(C, H, W)`` with antialiased bilinear filtering.

    Each channel goes through PIL as a 32-bit float image, so no 8-bit rounding happens here.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got {image.shape}")
    h, w = size
    if image.shape[1:] == (h, w):
        return np.ascontiguousarray(image, dtype=np.float32)
    out = np.empty((image.shape[0], h, w), dtype=np.float32)
    for c in range(image.shape[0]):
        plane = Image.fromarray(np.ascontiguousarray(image[c], dtype=np.float32))
        out[c] = np.asarray(plane.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    # Bilinear weights are convex, but float rounding can step a hair outside [0, 1].
    np.clip(out, 0.0, 1.0, out=out)
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool ``(h, w)`` mask to ``(H, W)`` with nearest neighbour (stays binary)."""
    h, w = size
    if mask.shape == (h, w):
        return np.ascontiguousarray(mask, dtype=bool)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((w, h), Image.Resampling.NEAREST)) > 127


def to_channels(image: np.ndarray, grayscale: bool) -> np.ndarray:
    """``(1|3, H, W)`` -> the channel count ``grayscale`` asks for (luma or repeated gray)."""
    c = image.shape[0]
    if grayscale and c == 3:
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.tensordot(luma, image, axes=1)[None].astype(np.float32)
    if not grayscale and c == 1:
        return np.repeat(image, 3, axis=0)
    return image


# ---------------------------------------------------------------------------------------------
# Decoding


def _open_error(path: Path, exc: BaseException) -> DataError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DataError(f"{path}: cannot read image ({reason}); expected a readable image file")


def _pil_to_array(img: Image.Image, grayscale: bool) -> np.ndarray:
    """A decoded PIL image of any mode -> float32 ``(C, h, w)`` in [0, 1]."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit PNG/TIFF ("I;16") and older Pillow's "I" for them: full range is 0..65535.
        arr = np.asarray(img).astype(np.float32) / 65535.0
        arr = np.clip(arr, 0.0, 1.0)[None]
        return to_channels(arr, grayscale)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        top = float(arr.max(initial=0.0))
        if top > 255.0:
            arr = arr / 65535.0
        elif top > 1.0:
            arr = arr / 255.0
        return to_channels(np.clip(arr, 0.0, 1.0)[None], grayscale)
    if mode in _GRAY_MODES:
        gray = img if mode == "L" else img.convert("L")
        arr = np.asarray(gray, dtype=np.float32)[None] / 255.0
        return to_channels(arr, grayscale)
    # Palette, RGB(A/X), CMYK, YCbCr, LAB, HSV, ...: through 8-bit RGB (alpha is dropped).
    rgb = img if mode == "RGB" else img.convert("RGB")
    if grayscale:
        arr = np.asarray(rgb.convert("L"), dtype=np.float32)[None] / 255.0
    else:
        arr = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return np.ascontiguousarray(arr)


def read_image(
    path: Path, size: tuple[int, int], grayscale: bool
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` to float32 ``(C, H, W)`` at ``size``; also return its source ``(h, w)``.

    JPEGs that are much larger than ``size`` are decoded at a reduced scale (libjpeg's DCT
    scaling via ``draft``), which is several times faster and still antialiased. Anything PIL
    cannot decode (unknown format, truncated file, zero size, decompression bomb) is a
    :class:`DataError` naming the file; no other exception escapes for a bad file.
    """
    h, w = size
    try:
        with Image.open(path) as img:
            src_w, src_h = img.size
            if src_w <= 0 or src_h <= 0:
                raise DataError(
                    f"{path}: image has size {src_w}x{src_h}; expected a non-empty image"
                )
            if src_w * src_h > (Image.MAX_IMAGE_PIXELS or 2**31):
                raise DataError(
                    f"{path}: image claims {src_w}x{src_h} pixels; expected at most "
                    f"{Image.MAX_IMAGE_PIXELS} (corrupt header?)"
                )
            img.draft("L" if grayscale else None, (w, h))
            img.load()
            arr = _pil_to_array(img, grayscale)
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found; expected an image file") from exc
    except Exception as exc:  # PIL raises many types for bad files; all mean "unreadable".
        raise _open_error(path, exc) from exc
    if arr.ndim != 3 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise DataError(f"{path}: decoded to shape {arr.shape}; expected a 2-D image")
    return resize_image(arr, size), (src_h, src_w)


def read_mask(
    path: Path,
    size: tuple[int, int],
    expected_source: tuple[int, int] | None = None,
    image_path: Path | None = None,
) -> np.ndarray:
    """Decode a ground-truth mask to bool ``(H, W)`` (nearest-neighbour resize).

    Nonzero means defect for 0/1 masks; otherwise a pixel is a defect from half the range up
    (0/255 masks, and JPEG masks whose edges were blurred by compression). When
    ``expected_source`` (the image's ``(h, w)``) is given, a mask of another size is a
    :class:`DataError` naming both files and sizes.
    """
    try:
        with Image.open(path) as img:
            mw, mh = img.size
            if expected_source is not None and (mh, mw) != tuple(expected_source):
                eh, ew = expected_source
                raise DataError(
                    f"{path}: mask is {mw}x{mh} but its image {image_path} is {ew}x{eh}; "
                    "expected a mask of the same size as its image"
                )
            img.load()
            if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
                arr = np.asarray(img).astype(np.float64)
                full = 65535.0 if img.mode != "F" else 1.0
            else:
                arr = np.asarray(img.convert("L"), dtype=np.float64)
                full = 255.0
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found; expected a mask image") from exc
    except Exception as exc:
        raise _open_error(path, exc) from exc
    top = float(arr.max(initial=0.0))
    mask = arr > 0 if top <= 1.0 else arr >= full / 2
    return resize_mask(mask, size)


# ---------------------------------------------------------------------------------------------
# In-process cache of loaded splits


def clone_set(s: ImageSet) -> ImageSet:
    """A deep copy, so that a caller editing its tensors in place cannot corrupt a cache."""
    return ImageSet(
        images=s.images.clone(),
        labels=s.labels.clone(),
        masks=None if s.masks is None else s.masks.clone(),
        names=list(s.names),
        defect_types=list(s.defect_types),
    )


def _nbytes(s: ImageSet) -> int:
    n = s.images.element_size() * s.images.nelement()
    if s.masks is not None:
        n += s.masks.element_size() * s.masks.nelement()
    return n


class SplitCache:
    """A thread-safe LRU of loaded splits, bounded in bytes.

    The runner loads the same split for several seeds and methods; decoding a few thousand
    JPEGs each time would dominate a quick run. ``get``/``put`` hand out deep copies.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, ImageSet] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> ImageSet | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
        return clone_set(hit)

    def put(self, key: Hashable, value: ImageSet) -> ImageSet:
        """Store a private copy of ``value`` and return ``value`` (the caller's own copy)."""
        size = _nbytes(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            self._items[key] = clone_set(value)
            self._items.move_to_end(key)
            while sum(_nbytes(v) for v in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def stack_set(
    images: list[np.ndarray],
    labels: list[int],
    masks: list[np.ndarray] | None,
    names: list[str],
    defect_types: list[str],
    size: tuple[int, int],
    channels: int,
) -> ImageSet:
    """Assemble per-image arrays into an :class:`ImageSet` (handles the empty case)."""
    n = len(images)
    h, w = size
    arr = np.stack(images) if n else np.zeros((0, channels, h, w), dtype=np.float32)
    mask_t = None
    if masks is not None:
        mask_t = torch.from_numpy(np.stack(masks) if n else np.zeros((0, h, w), dtype=bool))
    return ImageSet(
        images=torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=mask_t,
        names=names,
        defect_types=defect_types,
    )
