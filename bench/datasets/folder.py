"""Datasets on disk in the MVTec AD folder layout (the de-facto standard of the field)::

    <root>/train/good/*.png                      normal training images
    <root>/test/good/*.png                       normal test images
    <root>/test/<defect type>/*.png              anomalous test images
    <root>/ground_truth/<defect type>/<stem>_mask.png   optional pixel masks (0/255)

Any image extension PIL reads is accepted (case-insensitive); other files are skipped. Files
are sorted, so the order of a split never depends on the file system. When ``ground_truth/``
exists, every anomalous test image must have exactly one mask of the same size; normal images
(train and test) then get all-False masks. Without ``ground_truth/`` the dataset has image
labels only and ``ImageSet.masks`` is ``None``.

Every layout problem is a :class:`~bench.util.errors.DataError` of one line naming the path and what
was expected. Loaded splits are cached in-process (keyed by the resolved root, the split, the
:class:`~bench.interface.InputSpec` and the size and mtime of every file), and every ``load``
returns a fresh copy that the caller may modify.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets.base import (
    IMAGE_EXTENSIONS,
    Split,
    SplitCache,
    check_spec,
    check_split,
    is_image_file,
    read_image,
    read_mask,
    stack_set,
)
from bench.datasets.registry import DATA_ENV, DatasetEntry, DatasetRequest
from bench.interface import ImageSet, InputSpec
from bench.util.errors import ConfigError, DataError

GOOD = "good"
_EXTS = " ".join(sorted(IMAGE_EXTENSIONS))
_CACHE = SplitCache()


def clear_cache() -> None:
    """Forget every cached split (tests; or to free memory between datasets)."""
    _CACHE.clear()


@dataclass(frozen=True)
class _Item:
    rel: str  # path relative to the dataset root, "/"-separated: "test/crack/000.jpg"
    defect_type: str
    mask: Path | None  # ground-truth file, for anomalous test images of a set with masks

    @property
    def label(self) -> int:
        return 0 if self.defect_type == GOOD else 1


@dataclass(frozen=True)
class _Layout:
    root: Path
    train: tuple[_Item, ...]
    test: tuple[_Item, ...]
    has_masks: bool
    fingerprint: tuple[tuple[str, int, int], ...]  # (path, size, mtime_ns) of every file used


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_layout(root: Path) -> _Layout:
    """List and check the files of an MVTec-layout folder (cheap: no image is decoded)."""
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DataError(
            f"{train_dir}: folder not found; expected the normal training images in "
            f"<root>/train/good/ (MVTec AD layout)"
        )
    train_files = _images_in(train_dir)
    if not train_files:
        raise DataError(
            f"{train_dir}: no images; expected at least one normal training image ({_EXTS})"
        )
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DataError(
            f"{test_dir}: folder not found; expected test/good/ and test/<defect type>/ folders"
        )
    test_files: dict[str, list[Path]] = {d.name: _images_in(d) for d in _subdirs(test_dir)}
    if not any(test_files.values()):
        raise DataError(
            f"{test_dir}: no images in any test/<type>/ folder; expected at least one test "
            f"image ({_EXTS})"
        )

    gt_dir = root / "ground_truth"
    has_masks = gt_dir.is_dir()
    masks: dict[str, dict[str, list[Path]]] = {}
    if has_masks:
        for d in _subdirs(gt_dir):
            by_stem: dict[str, list[Path]] = {}
            for m in _images_in(d):
                if not m.stem.endswith("_mask"):
                    raise DataError(
                        f"{m}: mask file name does not end in _mask; expected "
                        "ground_truth/<type>/<image stem>_mask.<ext>"
                    )
                by_stem.setdefault(m.stem[: -len("_mask")], []).append(m)
            masks[d.name] = by_stem

    train = tuple(_Item(f"train/{GOOD}/{p.name}", GOOD, None) for p in train_files)
    test: list[_Item] = []
    for dtype, files in test_files.items():
        for p in files:
            mask = None
            if has_masks and dtype != GOOD:
                found = masks.get(dtype, {}).get(p.stem, [])
                if not found:
                    raise DataError(
                        f"{p}: anomalous test image has no mask; expected "
                        f"{gt_dir / dtype / p.stem}_mask.png (any image extension)"
                    )
                if len(found) > 1:
                    raise DataError(
                        f"{p}: {len(found)} masks ({', '.join(m.name for m in found)}); "
                        f"expected exactly one {gt_dir / dtype / p.stem}_mask.<ext>"
                    )
                mask = found[0]
            test.append(_Item(f"test/{dtype}/{p.name}", dtype, mask))

    # A mask whose image is missing usually means a renamed or deleted test image.
    for dtype, by_stem in masks.items():
        stems = {p.stem for p in test_files.get(dtype, [])}
        for stem, found in by_stem.items():
            if stem not in stems:
                raise DataError(
                    f"{found[0]}: mask without image; expected a test image "
                    f"{test_dir / dtype / stem}.<ext>"
                )

    files = [root / it.rel for it in (*train, *test)]
    files += [it.mask for it in test if it.mask is not None]
    fingerprint = []
    for f in files:
        st = f.stat()
        fingerprint.append((str(f), st.st_size, st.st_mtime_ns))
    return _Layout(root, train, tuple(test), has_masks, tuple(fingerprint))


def _workers() -> int:
    # PIL releases the GIL while decoding and resizing, so threads scale on a few cores.
    return max(1, min(8, os.cpu_count() or 1))


def load_layout(layout: _Layout, split: Split, size: tuple[int, int], grayscale: bool) -> ImageSet:
    """Decode one split of a scanned layout (no caching)."""
    items = layout.train if split == "train" else layout.test
    root = layout.root

    def work(item: _Item) -> tuple[np.ndarray, np.ndarray | None]:
        path = root / item.rel
        image, source = read_image(path, size, grayscale)
        mask = None
        if layout.has_masks:
            if item.mask is None:
                mask = np.zeros(size, dtype=bool)
            else:
                mask = read_mask(item.mask, size, expected_source=source, image_path=path)
        return image, mask

    if len(items) > 8:
        with ThreadPoolExecutor(_workers()) as pool:
            results = list(pool.map(work, items))
    else:
        results = [work(it) for it in items]
    return stack_set(
        images=[r[0] for r in results],
        labels=[it.label for it in items],
        masks=[r[1] for r in results] if layout.has_masks else None,  # type: ignore[misc]
        names=[it.rel for it in items],
        defect_types=[it.defect_type for it in items],
        size=size,
        channels=1 if grayscale else 3,
    )


class _LayoutDataset:
    """Shared code of :class:`MVTecDataset` and :class:`FolderDataset`."""

    family: str
    category: str
    has_masks: bool

    def __init__(self, root: Path, family: str, category: str) -> None:
        self.root = root
        self.family = family
        self.category = category
        # Scanning is cheap, and failing here reports a broken folder before any training.
        self.has_masks = scan_layout(root).has_masks

    @property
    def name(self) -> str:
        return f"{self.family}:{self.category}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, family={self.family!r})"

    def load(self, split: Split, spec: InputSpec, seed: int = 0) -> ImageSet:
        """The split at ``spec`` (``seed`` is unused: the files are fixed). A fresh copy."""
        check_split(split)
        size = check_spec(spec)
        layout = scan_layout(self.root)
        self.has_masks = layout.has_masks
        key = (str(self.root.resolve()), split, size, bool(spec.grayscale), layout.fingerprint)
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        return _CACHE.put(key, load_layout(layout, split, size, bool(spec.grayscale)))

    def describe(self) -> dict[str, object]:
        layout = scan_layout(self.root)
        test: dict[str, int] = {}
        for it in layout.test:
            test[it.defect_type] = test.get(it.defect_type, 0) + 1
        return {
            "family": self.family,
            "category": self.category,
            "root": str(self.root.resolve()),
            "has_masks": layout.has_masks,
            "train": {GOOD: len(layout.train)},
            "test": test,
            "n_train": len(layout.train),
            "n_test": len(layout.test),
            "n_test_anomalous": sum(it.label for it in layout.test),
        }


class MVTecDataset(_LayoutDataset):
    """One category of MVTec AD (or of any dataset in its layout): ``<data_root>/<category>``."""

    def __init__(self, data_root: Path | str, category: str) -> None:
        data_root = Path(data_root).expanduser()
        if not data_root.is_dir():
            raise DataError(
                f"--data-root {data_root}: folder not found; expected the folder that holds "
                f"the MVTec AD categories (<data-root>/{category}/train/good/)"
            )
        root = data_root / category
        if not root.is_dir():
            found = [d.name for d in _subdirs(data_root)]
            hint = ""
            if (data_root / "train").is_dir():
                hint = " (--data-root looks like a category folder itself: pass its parent)"
            raise DataError(
                f"{root}: category '{category}' not found under --data-root {data_root}; "
                f"found: {', '.join(found) or 'no folders'}{hint}"
            )
        super().__init__(root, "mvtec", category)


class FolderDataset(_LayoutDataset):
    """A dataset folder in the MVTec layout with masks optional (``prints3d`` and the like).

    ``category`` defaults to the folder's name.
    """

    def __init__(
        self, root: Path | str, family: str = "prints3d", category: str | None = None
    ) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(
                f"--data-root {root}: folder not found; expected a dataset folder with "
                "train/good/ and test/<type>/ inside"
            )
        super().__init__(root, family, category or root.resolve().name)


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


def _build_mvtec(request: DatasetRequest) -> MVTecDataset:
    category = request.arg
    if not category:
        raise ConfigError(
            "dataset 'mvtec' needs a category: mvtec:<category>, e.g. mvtec:bottle "
            f"(MVTec AD: {', '.join(MVTEC_CATEGORIES)})"
        )
    root = request.root
    if root is None:
        raise ConfigError(f"--data-root (or {DATA_ENV}) is required for mvtec:{category}")
    return MVTecDataset(root, category)


def _build_prints3d(request: DatasetRequest) -> FolderDataset:
    # The data root is the dataset folder itself, or holds it as <name>.
    root, name = request.root, request.arg
    if root is None:
        raise ConfigError(f"--data-root (or {DATA_ENV}) is required for {request.spec}")
    if not name:
        return FolderDataset(root, family="prints3d")
    if root.is_dir() and not (root / name).is_dir():
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        raise DataError(
            f"{root / name}: dataset '{name}' not found under --data-root {root}; "
            f"found: {', '.join(found) or 'no folders'}"
        )
    return FolderDataset(root / name, family="prints3d", category=name)


def dataset_entries() -> list[DatasetEntry]:
    return [
        DatasetEntry(
            "mvtec",
            "mvtec:<category>: MVTec AD layout under --data-root/<category> "
            "(train/good, test/<type>, ground_truth/<type>/<stem>_mask.*)",
            _build_mvtec,
        ),
        DatasetEntry(
            "prints3d",
            "prints3d[:<name>]: MVTec layout with masks optional, at --data-root "
            "(or --data-root/<name>); e.g. FDM 3D-printing photos",
            _build_prints3d,
        ),
    ]
