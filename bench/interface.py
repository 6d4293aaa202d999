"""The one interface every dataset and method of the suite speaks.

A dataset yields two :class:`ImageSet` (train: normal images only; test: normal and anomalous),
already loaded and resized. A method is a :class:`Detector`: ``fit`` on the train set, then
``predict`` on the test set returns a :class:`Prediction`. The runner does everything else
(seeding, timing, metrics, storage), so adding a method is one module under ``bench/methods``
and one line in ``bench.methods.registry.BUILTIN_MODULES``.

Every method derives from :class:`Method`, which declares each hook the suite reads (record
flags, fit and inference information, GFLOP/image, pretrained weights) with its default, so a
method overrides only what it has; its module lists a :class:`MethodEntry` per method name.

>>> import torch
>>> s = ImageSet(images=torch.zeros(2, 1, 8, 8), labels=torch.tensor([0, 1]), masks=None,
...              names=["good/000.png", "crack/000.png"])
>>> len(s), s.image_size, s.channels
(2, (8, 8), 1)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

import torch
import torch.nn.functional as F
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
    """A method seen from outside: parameters in ``__init__``, learned state after ``fit``
    (scikit-learn style). Methods derive from :class:`Method`, which also declares the hooks."""

    name: str

    @property
    def input_spec(self) -> InputSpec: ...

    def fit(self, train: ImageSet, ctx: RunContext) -> Detector: ...

    def predict(self, test: ImageSet) -> Prediction: ...


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file a method loads: what it is, where it would be, whether it is there."""

    what: str  # e.g. "timm resnet18 (timm/resnet18.a1_in1k)"
    path: str  # the cache path looked at (or the folder expected)
    present: bool


#: How colour images become gray: ITU-R 601 luminance (kornia), or the plain channel mean.
GrayFromRgb = Literal["luminance", "mean"]


def to_channels(images: Tensor, channels: int, gray_from_rgb: GrayFromRgb = "luminance") -> Tensor:
    """(N, C, H, W) float images -> ``channels`` (1 or 3) channels; other counts are averaged
    first (a 3-channel target repeats the gray channel)."""
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 3 and gray_from_rgb == "luminance":
        # Imported here: kornia costs a quarter of a second, and most importers never convert.
        from kornia.color import rgb_to_grayscale

        gray = rgb_to_grayscale(images)
    else:
        gray = images.mean(1, keepdim=True)
    return gray.expand(-1, 3, -1, -1) if channels == 3 else gray


def conform(images: Tensor, spec: InputSpec, gray_from_rgb: GrayFromRgb = "luminance") -> Tensor:
    """[0, 1] images of any size and colour -> ``spec``'s size and colour, still in [0, 1].

    Datasets already deliver that (they obey the method's ``input_spec``); this covers callers
    that hand a method other images (``bench speed``, the Python API).
    """
    x = to_channels(images.float(), 1 if spec.grayscale else 3, gray_from_rgb)
    if x.shape[-2:] != spec.image_size:
        x = F.interpolate(
            x, size=spec.image_size, mode="bilinear", antialias=True, align_corners=False
        )
    return x.contiguous()


P = TypeVar("P")


class Method(ABC, Generic[P]):
    """The base of every method: the shared constructor and input handling, and every hook the
    suite reads, each with the default a method without it gets. A method overrides ``fit``,
    ``predict`` and only the hooks it has.

    Hooks (what the runner, ``bench speed`` and ``bench prepare`` read):

    * :attr:`flags`: marks every record and table row of this configuration carries
      (``weights:random``, ``train:cut``); default none;
    * :attr:`fit_info_`: what ``fit`` reports into the record's ``fit_info`` (training steps,
      loss, seconds); set by ``fit``, empty until then;
    * :attr:`inference_info`: how inference runs (the record's ``inference``: mode, network
      passes per image); default empty;
    * :meth:`gflops_per_image`: the inference cost of one test image; default None (not
      counted);
    * :meth:`required_weights`: the pretrained files ``fit`` loads, for ``bench prepare`` and
      the up-front check of ``bench run``; default none (trained from scratch);
      :meth:`weights_hint` ends that check's error (default: try random initialisation).

    The constructor takes the parameter dataclass (:attr:`params_cls` with its defaults when
    omitted); :attr:`input_spec` asks for square ``params.image_size`` images, gray unless
    :attr:`grayscale` says otherwise, and :meth:`prepare` brings any images there.
    """

    #: The method's registry name: records, tables and ``--methods`` use it.
    name: str
    #: The parameter dataclass; ``Method()`` builds it with its defaults (the ``paper`` preset).
    params_cls: ClassVar[type]
    #: How :meth:`prepare` turns colour into gray.
    gray_from_rgb: ClassVar[GrayFromRgb] = "luminance"

    def __init__(self, params: P | None = None) -> None:
        self.params: P = params if params is not None else self.params_cls()
        #: What ``fit`` reports into the record's ``fit_info``; ``fit`` replaces it.
        self.fit_info_: dict[str, object] = {}

    # -- input ---------------------------------------------------------------------------------

    @property
    def grayscale(self) -> bool:
        """Whether the method works on gray images (most of the suite's do)."""
        return True

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def input_spec(self) -> InputSpec:
        s = self.params.image_size  # type: ignore[attr-defined]
        return InputSpec((s, s), grayscale=self.grayscale)

    def prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images of any size and colour -> :attr:`input_spec`'s, still in [0, 1]."""
        return conform(images, self.input_spec, self.gray_from_rgb)

    # -- the method ----------------------------------------------------------------------------

    @abstractmethod
    def fit(self, train: ImageSet, ctx: RunContext) -> Method[P]:
        """Learn from the normal training images; returns ``self``."""

    @abstractmethod
    def predict(self, test: ImageSet) -> Prediction:
        """Score the test images (after ``fit``)."""

    # -- hooks, with their defaults ------------------------------------------------------------

    @property
    def flags(self) -> list[str]:
        """Marks every record and table row of this configuration carries; default none."""
        return []

    @property
    def inference_info(self) -> dict[str, object]:
        """How inference runs and what it costs besides time; default nothing to say."""
        return {}

    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float | None:
        """GFLOPs of one test image (``image_size``: the evaluation size); None: not counted."""
        return None

    def required_weights(self) -> list[WeightFile] | None:
        """The pretrained files ``fit`` loads ([] none, None cannot tell); default none."""
        return []

    def weights_hint(self) -> str:
        """How to run when the pretrained weights are missing, appended to that error."""
        return f"; or run with random initialisation: --set {self.name}.weights=random"


@dataclass(frozen=True)
class MethodEntry:
    """One method as the registry knows it: its name, parameter dataclass, how to build it
    from parameters, a one-line summary and named presets (parameter overrides)."""

    name: str
    params_cls: type
    build: Callable[[Any], Method[Any]]
    summary: str
    presets: dict[str, dict[str, object]] = field(default_factory=dict)
    # Never uses a GPU (scikit-learn): Ray asks no GPU for its jobs.
    cpu_only: bool = False
