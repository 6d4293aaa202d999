"""Datasets by name: ``synthetic[:<texture>]``, ``mvtec:<category>``, ``prints3d[:<name>]``.

>>> ds = make_dataset("synthetic:brick", None)
>>> ds.family, ds.category, ds.has_masks
('synthetic', 'brick', True)
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.datasets.base import Dataset
from bench.datasets.folder import FolderDataset, MVTecDataset, clear_cache
from bench.datasets.synthetic import DEFECT_KINDS, TEXTURES, SyntheticDataset
from bench.util.errors import ConfigError, DataError, unknown_name

__all__ = [
    "DATASET_FAMILIES",
    "DEFECT_KINDS",
    "MVTEC_CATEGORIES",
    "TEXTURES",
    "Dataset",
    "FolderDataset",
    "MVTecDataset",
    "SyntheticDataset",
    "clear_cache",
    "make_dataset",
    "resolve_data_root",
]

DATASET_FAMILIES: dict[str, str] = {
    "synthetic": "synthetic[:brick|grass|gravel] (default brick): real skimage texture photos "
    "with planted scratches, blobs, holes and texture swaps, exact masks; no download, seeded",
    "mvtec": "mvtec:<category>: MVTec AD layout under --data-root/<category> "
    "(train/good, test/<type>, ground_truth/<type>/<stem>_mask.*)",
    "prints3d": "prints3d[:<name>]: MVTec layout with masks optional, at --data-root "
    "(or --data-root/<name>); e.g. FDM 3D-printing photos",
}

#: The 15 categories of MVTec AD (Bergmann et al., CVPR 2019).
MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)

DATA_ENV = "BENCH_DATA"


def resolve_data_root(data_root: Path | str | None) -> Path | None:
    """``--data-root`` if given, else ``$BENCH_DATA`` if set and non-empty, else None."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else None


def make_dataset(spec: str, data_root: Path | str | None = None) -> Dataset:
    """Build a dataset from a spec string such as ``mvtec:bottle``.

    Folder datasets are checked here (root, category, train/test folders, masks), so a broken
    layout fails before any training starts.
    """
    text = spec.strip()
    family, sep, arg = text.partition(":")
    family, arg = family.strip().lower(), arg.strip()
    if family not in DATASET_FAMILIES:
        raise unknown_name("dataset", family or text, DATASET_FAMILIES)
    if sep and not arg:
        raise ConfigError(f"dataset '{text}': nothing after ':'; expected e.g. {family}:<name>")

    if family == "synthetic":
        texture = arg or "brick"
        if texture not in TEXTURES:
            raise unknown_name("synthetic texture", texture, TEXTURES)
        return SyntheticDataset(texture)

    root = resolve_data_root(data_root)
    if family == "mvtec":
        if not arg:
            raise ConfigError(
                "dataset 'mvtec' needs a category: mvtec:<category>, e.g. mvtec:bottle "
                f"(MVTec AD: {', '.join(MVTEC_CATEGORIES)})"
            )
        if root is None:
            raise ConfigError(f"--data-root (or {DATA_ENV}) is required for mvtec:{arg}")
        return MVTecDataset(root, arg)

    # prints3d: the data root is the dataset folder itself, or holds it as <name>.
    if root is None:
        raise ConfigError(f"--data-root (or {DATA_ENV}) is required for {text}")
    if arg:
        if root.is_dir() and not (root / arg).is_dir():
            found = sorted(
                d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
            )
            raise DataError(
                f"{root / arg}: dataset '{arg}' not found under --data-root {root}; "
                f"found: {', '.join(found) or 'no folders'}"
            )
        return FolderDataset(root / arg, family="prints3d", category=arg)
    return FolderDataset(root, family="prints3d")
