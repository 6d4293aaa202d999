"""Which pretrained weights an anomalib model needs, and whether they are in the local caches.

anomalib models load ImageNet (or DINOv2, or their own) weights from four places: timm's
Hugging Face hub cache, torchvision's torch-hub checkpoint folder, anomalib's own
``~/.cache/anomalib/pre_trained`` folder, and dataset folders (EfficientAd's ImageNette).
Everything here only looks at files; nothing downloads or touches the network, so that
``weights=auto`` and ``bench list`` answer in milliseconds on an offline machine.

>>> needs = required_weights("Ganomaly", {})
>>> needs
[]
>>> can_run_random("Padim"), can_run_random("Stfpm")
(True, False)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from bench.interface import WeightFile  # defined there: the type of every method's weights


def timm_weights(model_name: str) -> WeightFile:
    """timm's pretrained file of ``model_name``: in the HF hub cache, else torch hub's folder."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(model_name)
    except RuntimeError:  # an unknown name: timm itself will say so when the model is built
        cfg = None
    if cfg is None:
        return WeightFile(f"timm {model_name}", "(unknown timm model)", False)
    if cfg.hf_hub_id:  # timm then loads from the Hugging Face hub (never from cfg.url)
        from huggingface_hub import try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@")[0]
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
        names += ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return WeightFile(f"timm {model_name} ({repo})", hit, True)
        return WeightFile(
            f"timm {model_name} ({repo})", _hf_cache_dir(repo) + "/.../model.safetensors", False
        )
    return _url_checkpoint(f"timm {model_name}", cfg.url)


def torchvision_weights(arch: str) -> WeightFile:
    """torchvision's default ImageNet weights of ``arch`` in torch hub's checkpoint folder."""
    import torchvision

    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return _url_checkpoint(f"torchvision {arch}", url)


def anomalib_weights(relative: str) -> WeightFile:
    """A file anomalib downloads into its own pretrained-weights folder."""
    from anomalib.utils.path import get_pretrained_weights_dir

    path = get_pretrained_weights_dir() / relative
    return WeightFile(f"anomalib {relative}", str(path), path.is_file())


def folder(what: str, path: str | Path) -> WeightFile:
    """A data folder a model reads (EfficientAd's ImageNette): present when it holds files."""
    p = Path(path).expanduser()
    present = p.is_dir() and any(p.iterdir())
    return WeightFile(what, str(p), present)


def _url_checkpoint(what: str, url: str | None) -> WeightFile:
    import torch

    if not url:
        return WeightFile(what, "(no download address known)", False)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
    return WeightFile(what, str(path), path.is_file())


def _hf_cache_dir(repo: str) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}")


# Models whose anomalib code loads pretrained weights unconditionally (no ``pre_trained``
# switch): each maps its constructor arguments to the files it loads.
_HARD_CODED: dict[str, Callable[[Mapping[str, object]], list[WeightFile]]] = {
    "Stfpm": lambda kw: [timm_weights(str(kw.get("backbone", "resnet18")))],
    "Cfa": lambda kw: [torchvision_weights(str(kw.get("backbone", "wide_resnet50_2")))],
    "Csflow": lambda kw: [torchvision_weights("efficientnet_b5")],
    "Uflow": lambda kw: (
        [timm_weights("cait_m48_448"), timm_weights("cait_s24_224")]
        if kw.get("backbone", "mcait") == "mcait"
        else [timm_weights(str(kw["backbone"]))]
    ),
    "Supersimplenet": lambda kw: [timm_weights(str(kw.get("backbone", "wide_resnet50_2.tv_in1k")))],
    "Dinomaly": lambda kw: [
        timm_weights(str(kw.get("encoder_name", "vit_base_patch14_reg4_dinov2")))
    ],
    "Dsr": lambda kw: [anomalib_weights("dsr/vq_model_pretrained_128_4096.pckl")],
    "EfficientAd": lambda kw: [
        anomalib_weights(
            "efficientad_pretrained_weights/pretrained_teacher_"
            f"{_enum_value(kw.get('model_size', 'small'))}.pth"
        ),
        folder("ImageNette (EfficientAd.imagenet_dir)", str(kw.get("imagenet_dir") or "")),
    ],
}

# Models that need no pretrained weights at all.
_NO_WEIGHTS = frozenset({"Ganomaly", "Draem"})


def _enum_value(value: object) -> str:
    return str(getattr(value, "value", value))


def has_pretrained_switch(class_name: str) -> bool:
    """Whether the anomalib constructor takes ``pre_trained`` (so random init is possible)."""
    import inspect

    import anomalib.models as models

    cls = getattr(models, class_name, None)
    return cls is not None and "pre_trained" in inspect.signature(cls.__init__).parameters


def can_run_random(class_name: str) -> bool:
    """Random initialisation is possible where anomalib exposes ``pre_trained``."""
    return class_name not in _HARD_CODED and (
        class_name in _NO_WEIGHTS or has_pretrained_switch(class_name)
    )


def needs_weights(class_name: str) -> bool:
    return class_name not in _NO_WEIGHTS


def required_weights(class_name: str, kwargs: Mapping[str, object]) -> list[WeightFile] | None:
    """The files the model loads with pretrained weights; ``None`` where we do not know."""
    if class_name in _NO_WEIGHTS:
        return []
    if class_name in _HARD_CODED:
        return _HARD_CODED[class_name](kwargs)
    if has_pretrained_switch(class_name) and isinstance(kwargs.get("backbone"), str):
        return [timm_weights(str(kwargs["backbone"]))]
    return None


def availability(class_name: str, kwargs: Mapping[str, object], method: str = "<method>") -> str:
    """A short line for ``bench list``: not needed / available / missing <file> / unknown."""
    files = required_weights(class_name, kwargs)
    if files is None:
        return "unknown (not checked for this model)"
    if not files:
        return "none needed"
    missing = [f for f in files if not f.present]
    if not missing:
        return "available"
    extra = (
        f" (runs offline with {method}.weights=random)"
        if can_run_random(class_name)
        else "; random init not possible"
    )
    return "missing: " + ", ".join(f"{f.what} at {f.path}" for f in missing) + extra


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Hugging Face hub offline for the block: timm reads its cache at once instead of
    retrying an unreachable server for ~45 s before falling back to it."""
    from huggingface_hub import constants

    before_env = os.environ.get("HF_HUB_OFFLINE")
    before = constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env
