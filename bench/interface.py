"""The one interface every dataset and method of the suite speaks.

A dataset yields two :class:`ImageSet` (train: normal images only; test: normal and anomalous),
already loaded and resized. A method is a :class:`Detector`: ``fit`` on the train set, then
``predict`` on the test set returns a :class:`Prediction`. The runner does everything else
(seeding, timing, metrics, storage), so adding a method is one module under ``bench/methods``.

>>> import torch
>>> s = ImageSet(images=torch.zeros(2, 1, 8, 8), labels=torch.tensor([0, 1]), masks=None,
...              names=["good/000.png", "crack/000.png"])
>>> len(s), s.image_size, s.channels
(2, (8, 8), 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class ImageSet:
    """Images of one split, in memory, at the resolution a method asked for.

    ``names`` are paths relative to the dataset root (``test/crack/000.png``) so that the
    defect type of each image is ``defect_types[i]``.
    """

    images: Tensor  # (N, C, H, W) float32 in [0, 1]
    labels: Tensor  # (N,) int64, 0 normal, 1 anomalous
    masks: Tensor | None  # (N, H, W) bool ground truth; None where the source has none
    names: list[str]
    defect_types: list[str] = field(default_factory=list)  # "good" for normals

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(self.images.shape)}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must be ({n},), got {tuple(self.labels.shape)}")
        if self.masks is not None and self.masks.shape != (n, *self.images.shape[-2:]):
            raise ValueError(
                f"masks must be {(n, *self.images.shape[-2:])}, got {tuple(self.masks.shape)}"
            )
        if len(self.names) != n:
            raise ValueError(f"{len(self.names)} names for {n} images")
        if not self.defect_types:
            self.defect_types = ["good" if int(y) == 0 else "anomaly" for y in self.labels]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, index: Tensor | list[int]) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            masks=None if self.masks is None else self.masks[idx],
            names=[self.names[i] for i in idx.tolist()],
            defect_types=[self.defect_types[i] for i in idx.tolist()],
        )


@dataclass
class Prediction:
    """What a detector says about each test image."""

    scores: Tensor  # (N,) float, higher = more anomalous
    decisions: Tensor | None = None  # (N,) the method's own 0/1 call, where it has one
    maps: Tensor | None = None  # (N, H, W) pixel anomaly scores at the ImageSet's resolution


@dataclass(frozen=True)
class InputSpec:
    """The resolution and colour a method wants its images in; the dataset obeys it."""

    image_size: tuple[int, int]
    grayscale: bool


@dataclass
class RunContext:
    """Everything a job gives a detector besides data: randomness, hardware, a scratch dir."""

    seed: int
    device: torch.device
    work_dir: Path
    precision: str = "fp32"
    # Shared by all jobs of a run: trained weights a later job may reuse (ablations over t/scorer).
    cache_dir: Path | None = None
    progress: Callable[[str, float], None] = field(default=lambda message, fraction: None)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator for one purpose, so that draws do not depend on call order."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)


@runtime_checkable
class Detector(Protocol):
    """A method: parameters in ``__init__``, learned state after ``fit`` (scikit-learn style)."""

    name: str

    @property
    def input_spec(self) -> InputSpec: ...

    def fit(self, train: ImageSet, ctx: RunContext) -> Detector: ...

    def predict(self, test: ImageSet) -> Prediction: ...
