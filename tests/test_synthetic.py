"""The seeded synthetic dataset: determinism, defects and their masks, the MVTec round trip."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch

from bench.datasets import DEFECT_KINDS, MVTecDataset, SyntheticDataset, clear_cache
from bench.datasets.synthetic import TEST_ROWS, TRAIN_ROWS, plant_defect, texture
from bench.interface import InputSpec
from bench.util.errors import ConfigError, DataError

SPEC = InputSpec((100, 100), grayscale=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def small(texture_name: str = "gravel", **kw) -> SyntheticDataset:
    args = {"n_train": 6, "n_test_good": 4, "n_test_anomalous": 8, "size": 64, **kw}
    return SyntheticDataset(texture_name, **args)


@pytest.mark.benchmark
def test_default_set_generates_within_5_seconds():
    ds = SyntheticDataset()
    start = time.perf_counter()  # the split cache is empty (_fresh_cache): images are generated
    ds.load("train", SPEC, seed=0)
    ds.load("test", SPEC, seed=0)
    assert time.perf_counter() - start < 5


def test_default_set_counts_names_and_range():
    ds = SyntheticDataset()
    assert (ds.family, ds.category, ds.has_masks) == ("synthetic", "brick", True)
    train = ds.load("train", SPEC, seed=0)
    test = ds.load("test", SPEC, seed=0)
    assert train.images.shape == (60, 1, 100, 100) and test.images.shape == (60, 1, 100, 100)
    assert train.labels.sum() == 0 and train.masks is not None and not train.masks.any()
    assert int(test.labels.sum()) == 40
    assert {k: test.defect_types.count(k) for k in (*DEFECT_KINDS, "good")} == {
        "scratch": 10,
        "blob": 10,
        "hole": 10,
        "texture_swap": 10,
        "good": 20,
    }
    assert test.names == sorted(test.names)
    for name, kind in zip(test.names, test.defect_types, strict=True):
        assert re.fullmatch(rf"test/{kind}/\d{{3}}\.png", name)
    assert "test/scratch/003.png" in test.names
    for s in (train, test):
        assert s.images.dtype == torch.float32
        assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
        assert float(s.images.std()) > 0.05  # real texture, not a flat image
    d = ds.describe()
    assert d["test"] == {"good": 20, "scratch": 10, "blob": 10, "hole": 10, "texture_swap": 10}
    assert d["n_train"] == 60 and d["family"] == "synthetic"


def test_same_seed_bit_identical_other_seed_differs():
    ds = small()
    a = ds.load("test", SPEC, seed=3)
    clear_cache()  # regenerate rather than copy
    b = ds.load("test", SPEC, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.names == b.names
    c = ds.load("test", SPEC, seed=4)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.masks, c.masks)
    assert not torch.equal(ds.load("train", SPEC, 3).images, ds.load("train", SPEC, 4).images)
    # A fresh object with the same parameters and another texture.
    assert torch.equal(small().load("train", SPEC, 3).images, ds.load("train", SPEC, 3).images)
    assert not torch.equal(
        small("brick").load("train", SPEC, 3).images, ds.load("train", SPEC, 3).images
    )


def test_changing_a_count_keeps_the_other_images():
    a = small(n_test_anomalous=8).generate("test", 1)
    b = small(n_test_anomalous=12).generate("test", 1)
    for name in a.names:
        np.testing.assert_array_equal(a.images[a.names.index(name)], b.images[b.names.index(name)])


def test_masks_exactly_where_the_defect_is():
    gen = SyntheticDataset(n_test_good=8, n_test_anomalous=24, size=96).generate("test", seed=7)
    size = 96
    assert set(gen.defect_types) == {"good", *DEFECT_KINDS}
    for image, clean, mask, label, kind in zip(
        gen.images, gen.clean, gen.masks, gen.labels, gen.defect_types, strict=True
    ):
        diff = np.abs(image - clean)
        if label == 0:
            assert not mask.any() and not diff.any()
            continue
        assert mask.any()
        assert not diff[~mask].any(), f"{kind}: pixels outside the mask changed"
        assert diff[mask].mean() > 0.08, f"{kind}: the defect is too faint"
        area = mask.mean()
        if kind == "scratch":
            rows, cols = np.nonzero(mask)
            extent = np.hypot(np.ptp(rows), np.ptp(cols))
            assert extent >= 0.35 * size and area < 0.05
        else:
            assert 0.03 <= area <= 0.16, f"{kind}: area {area:.3f}"
        if kind == "blob":
            assert (diff[mask] > 0.04).mean() > 0.9
        if kind == "hole":
            assert image[mask].mean() < 0.16 and image[mask].std() < 0.03


def test_rgb_spec_repeats_gray_and_masks_follow_resize():
    ds = small()
    gray = ds.load("test", InputSpec((48, 40), grayscale=True), 0)
    rgb = ds.load("test", InputSpec((48, 40), grayscale=False), 0)
    assert gray.images.shape == (12, 1, 48, 40) and rgb.images.shape == (12, 3, 48, 40)
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2]) and torch.equal(
        rgb.images[:, :1], gray.images
    )
    assert gray.masks.shape == (12, 48, 40)
    assert torch.equal(gray.masks.flatten(1).any(1), gray.labels.bool())
    rgb.images.zero_()  # callers get their own copy
    assert float(ds.load("test", InputSpec((48, 40), grayscale=False), 0).images.max()) > 0


def _found(patch: np.ndarray, region: np.ndarray) -> bool:
    """Whether ``patch``, in any of its 8 orientations, occurs verbatim inside ``region``."""
    for k in range(4):
        for flip in (False, True):
            p = np.rot90(patch, k)
            p = p[:, ::-1] if flip else p
            ph, pw = p.shape
            corners = region[: region.shape[0] - ph + 1, : region.shape[1] - pw + 1]
            for r, c in np.argwhere(corners == p[0, 0]):
                if np.array_equal(region[r : r + ph, c : c + pw], p):
                    return True
    return False


def test_train_and_test_crops_come_from_disjoint_regions():
    src = texture("gravel")
    train_region, test_region = src[slice(*TRAIN_ROWS)], src[slice(*TEST_ROWS)]
    ds = small(size=96)  # no resizing below MAX_WINDOW: crops are verbatim
    for split, own, other in (
        ("train", train_region, test_region),
        ("test", test_region, train_region),
    ):
        gen = ds.generate(split, seed=11)
        for clean in gen.clean[:3]:
            patch = clean[40:52, 30:42]
            assert _found(patch, own)
            assert not _found(patch, other), f"a {split} crop overlaps the other split's region"


def test_plant_defect_is_seeded_and_checks_kind():
    clean = np.ascontiguousarray(texture("grass")[:64, :64])
    a = plant_defect(clean, "texture_swap", np.random.default_rng(5), "grass")
    b = plant_defect(clean, "texture_swap", np.random.default_rng(5), "grass")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ConfigError, match="unknown defect kind 'dent'"):
        plant_defect(clean, "dent", np.random.default_rng(0))


def test_uneven_kind_counts_and_parameter_checks():
    assert small(n_test_anomalous=6).kind_counts() == {
        "scratch": 2,
        "blob": 2,
        "hole": 1,
        "texture_swap": 1,
    }
    test = small(n_test_good=0, n_test_anomalous=3).load("test", SPEC, 0)
    assert test.labels.tolist() == [1, 1, 1]
    with pytest.raises(ConfigError, match="unknown texture 'marble'"):
        SyntheticDataset("marble")
    with pytest.raises(ConfigError, match="n_train"):
        SyntheticDataset(n_train=0)
    with pytest.raises(ConfigError, match="size"):
        SyntheticDataset(size=8)
    with pytest.raises(ConfigError, match="image_size"):
        small().load("test", InputSpec((0, 10), grayscale=True), 0)


def test_round_trip_through_the_mvtec_loader(tmp_path):
    ds = small("brick", size=80)
    root = ds.write_mvtec_layout(tmp_path, seed=2)
    assert root == tmp_path / "brick"
    assert (root / "ground_truth" / "hole").is_dir()
    mv = MVTecDataset(tmp_path, "brick")
    assert mv.has_masks
    for spec, tol in ((InputSpec((80, 80), True), 0.5 / 255 + 1e-6), (SPEC, 1.0 / 255)):
        for split in ("train", "test"):
            mine, disk = ds.load(split, spec, seed=2), mv.load(split, spec, seed=0)
            assert disk.names == mine.names and disk.defect_types == mine.defect_types
            assert torch.equal(disk.labels, mine.labels)
            assert torch.equal(disk.masks, mine.masks)
            assert float((disk.images - mine.images).abs().max()) <= tol
    # Writing again into the same folder is refused instead of mixing two sets.
    with pytest.raises(DataError, match="not empty"):
        ds.write_mvtec_layout(tmp_path, seed=3)
