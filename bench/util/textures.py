"""The three texture photos that skimage ships (no download): the synthetic dataset's normals and
the synthetic-anomaly source of DRAEM-style training (DTD cannot be downloaded here)."""

from __future__ import annotations

import functools

import numpy as np
from skimage import data as skdata

from bench.util.errors import unknown_name

TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")


@functools.cache
def texture(name: str) -> np.ndarray:
    """The 512x512 source photo as read-only float32 in [0, 1]."""
    if name not in TEXTURES:
        raise unknown_name("texture", name, TEXTURES)
    img = np.asarray(getattr(skdata, name)(), dtype=np.float32)
    if img.ndim == 3:  # not the case for these three, but keep the contract if skimage changes
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = img / 255.0
    img.setflags(write=False)
    return img
