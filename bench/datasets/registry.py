"""Name -> dataset factory: ``synthetic[:<texture>]``, ``mvtec:<category>``, ``prints3d[:<name>]``.

A dataset family registers once (:func:`register_dataset`) with a one-line summary (what
``bench list`` shows) and a builder that turns the text after ``family:`` into a
:class:`~bench.datasets.base.Dataset`. ``bench run``, ``bench speed``, ``bench prepare`` and
the Python API all go through :func:`make_dataset`, so a spec means the same thing everywhere,
as the method registry (``bench.methods.registry``) does for methods.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.datasets.base import Dataset
from bench.util.errors import ConfigError, unknown_name

DATA_ENV = "BENCH_DATA"


def resolve_data_root(data_root: Path | str | None) -> Path | None:
    """``--data-root`` if given, else ``$BENCH_DATA`` if set and non-empty, else None."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else None


@dataclass(frozen=True)
class DatasetRequest:
    """What a builder gets: the spec as written (for messages), the text after ``family:``
    (empty when there is none) and ``--data-root`` as given."""

    spec: str
    arg: str
    data_root: Path | str | None

    @property
    def root(self) -> Path | None:
        # Looked up only by the families that read files: ``synthetic`` never consults it.
        return resolve_data_root(self.data_root)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    summary: str
    build: Callable[[DatasetRequest], Dataset]


_DATASETS: dict[str, DatasetEntry] = {}
_BUILTINS_LOADED = False

# Each module defines ``dataset_entries() -> list[DatasetEntry]``, listed in `bench list` order.
BUILTIN_MODULES: tuple[str, ...] = ("bench.datasets.synthetic", "bench.datasets.folder")


def register_dataset(entry: DatasetEntry) -> None:
    _DATASETS[entry.name] = entry


def _load_builtins() -> None:
    # By name, not imported at the top: the dataset modules import this one for its entry type.
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    for module_name in BUILTIN_MODULES:
        for entry in importlib.import_module(module_name).dataset_entries():
            register_dataset(entry)
    _BUILTINS_LOADED = True


def datasets() -> dict[str, DatasetEntry]:
    _load_builtins()
    return dict(_DATASETS)


def get_dataset(name: str) -> DatasetEntry:
    known = datasets()
    if name not in known:
        raise unknown_name("dataset", name, known)
    return known[name]


class DatasetSummaries(Mapping[str, str]):
    """Family name -> summary of every registered dataset, read at each use (a family
    registered later shows up too)."""

    def __getitem__(self, name: str) -> str:
        return datasets()[name].summary

    def __iter__(self) -> Iterator[str]:
        return iter(datasets())

    def __len__(self) -> int:
        return len(datasets())


def make_dataset(spec: str, data_root: Path | str | None = None) -> Dataset:
    """Build a dataset from a spec string such as ``mvtec:bottle``.

    Folder datasets are checked here (root, category, train/test folders, masks), so a broken
    layout fails before any training starts.
    """
    text = spec.strip()
    family, sep, arg = text.partition(":")
    family, arg = family.strip().lower(), arg.strip()
    entry = get_dataset(family or text)
    if sep and not arg:
        raise ConfigError(f"dataset '{text}': nothing after ':'; expected e.g. {family}:<name>")
    return entry.build(DatasetRequest(text, arg, data_root))
