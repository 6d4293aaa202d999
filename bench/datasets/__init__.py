"""Datasets by name: ``synthetic[:<texture>]``, ``mvtec:<category>``, ``prints3d[:<name>]``.

The names and their builders live in :mod:`bench.datasets.registry`; this package re-exports
what callers use.

>>> ds = make_dataset("synthetic:brick", None)
>>> ds.family, ds.category, ds.has_masks
('synthetic', 'brick', True)
"""

from __future__ import annotations

from bench.datasets.base import Dataset
from bench.datasets.folder import MVTEC_CATEGORIES, FolderDataset, MVTecDataset, clear_cache
from bench.datasets.registry import (
    DATA_ENV,
    DatasetEntry,
    DatasetRequest,
    DatasetSummaries,
    datasets,
    get_dataset,
    make_dataset,
    register_dataset,
    resolve_data_root,
)
from bench.datasets.synthetic import DEFECT_KINDS, TEXTURES, SyntheticDataset

__all__ = [
    "DATASET_FAMILIES",
    "DATA_ENV",
    "DEFECT_KINDS",
    "MVTEC_CATEGORIES",
    "TEXTURES",
    "Dataset",
    "DatasetEntry",
    "DatasetRequest",
    "FolderDataset",
    "MVTecDataset",
    "SyntheticDataset",
    "clear_cache",
    "datasets",
    "get_dataset",
    "make_dataset",
    "register_dataset",
    "resolve_data_root",
]

#: Family name -> one-line summary (``bench list``), a live view of the registry.
DATASET_FAMILIES: DatasetSummaries = DatasetSummaries()
