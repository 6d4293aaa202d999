"""The MVTec-layout folder loaders, the shared image decoding, and ``make_dataset``."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.datasets import (
    DATASET_FAMILIES,
    MVTEC_CATEGORIES,
    Dataset,
    DatasetEntry,
    DatasetRequest,
    FolderDataset,
    MVTecDataset,
    SyntheticDataset,
    clear_cache,
    get_dataset,
    make_dataset,
    register_dataset,
)
from bench.datasets.base import read_image, read_mask, resize_image, resize_mask
from bench.interface import InputSpec
from bench.util.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MTD = SHARED_DATA / "mtd"
FDM = SHARED_DATA / "prints3d" / "fdm"

GRAY16 = InputSpec((16, 16), grayscale=True)
RGB16 = InputSpec((16, 16), grayscale=False)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _pixels(rng: np.random.Generator, h: int, w: int, channels: int = 0) -> np.ndarray:
    shape = (h, w) if channels == 0 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def make_layout(
    root: Path,
    *,
    n_train: int = 3,
    test: dict[str, int] | None = None,
    masks: bool = True,
    size: tuple[int, int] = (20, 30),  # (h, w): not square on purpose
    seed: int = 0,
) -> Path:
    """A tiny dataset in the MVTec layout; masks are a filled rectangle per anomalous image."""
    rng = np.random.default_rng(seed)
    test = {"good": 2, "crack": 2} if test is None else test
    h, w = size
    (root / "train" / "good").mkdir(parents=True)
    for i in range(n_train):
        Image.fromarray(_pixels(rng, h, w)).save(root / "train" / "good" / f"{i:03d}.png")
    for dtype, n in test.items():
        (root / "test" / dtype).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_pixels(rng, h, w)).save(root / "test" / dtype / f"{i:03d}.png")
            if masks and dtype != "good":
                gt = root / "ground_truth" / dtype
                gt.mkdir(parents=True, exist_ok=True)
                m = np.zeros((h, w), dtype=np.uint8)
                m[2 : 2 + 4 + i, 3 : 3 + 8] = 255
                Image.fromarray(m).save(gt / f"{i:03d}_mask.png")
    return root


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------------------
# A well-formed folder


def test_tiny_layout_loads_sorted_with_labels_and_masks(tmp_path):
    root = make_layout(tmp_path / "cat", test={"good": 2, "crack": 2, "bent": 1})
    ds = MVTecDataset(tmp_path, "cat")
    assert isinstance(ds, Dataset)
    assert (ds.family, ds.category, ds.has_masks) == ("mvtec", "cat", True)

    train = ds.load("train", GRAY16, seed=0)
    assert train.images.shape == (3, 1, 16, 16) and train.images.dtype == torch.float32
    assert train.labels.tolist() == [0, 0, 0]
    assert train.names == ["train/good/000.png", "train/good/001.png", "train/good/002.png"]
    assert train.masks is not None and not train.masks.any()

    test = ds.load("test", GRAY16, seed=0)
    assert test.names == [
        "test/bent/000.png",
        "test/crack/000.png",
        "test/crack/001.png",
        "test/good/000.png",
        "test/good/001.png",
    ]
    assert test.defect_types == ["bent", "crack", "crack", "good", "good"]
    assert test.labels.tolist() == [1, 1, 1, 0, 0]
    assert test.masks is not None and test.masks.dtype == torch.bool
    assert test.masks.shape == (5, 16, 16)
    per_image = test.masks.flatten(1).any(1)
    assert per_image.tolist() == [True, True, True, False, False]

    # The image itself: the source, as float, resized from 20x30 (not square) to 16x16.
    src = np.asarray(Image.open(root / "test/crack/001.png"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(test.images[2, 0].numpy(), resize_image(src[None], (16, 16))[0])
    # The mask: nearest-neighbour of the written rectangle.
    mask_src = np.asarray(Image.open(root / "ground_truth/crack/001_mask.png")) > 0
    assert torch.equal(test.masks[2], torch.from_numpy(resize_mask(mask_src, (16, 16))))

    d = ds.describe()
    assert d["test"] == {"bent": 1, "crack": 2, "good": 2}
    assert (d["n_train"], d["n_test"], d["n_test_anomalous"]) == (3, 5, 3)
    assert d["root"] == str(root.resolve())


def test_grayscale_and_rgb_specs(tmp_path):
    root = make_layout(tmp_path / "c", test={"good": 1})
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "test/good/001.png")
    ds = FolderDataset(root)
    gray = ds.load("test", InputSpec((20, 30), grayscale=True), 0)
    color = ds.load("test", InputSpec((20, 30), grayscale=False), 0)
    assert gray.images.shape == (2, 1, 20, 30) and color.images.shape == (2, 3, 20, 30)
    # A gray source gives 3 equal channels; an RGB source gives its own channels, and gray is
    # PIL's ITU-R 601 luma.
    assert torch.equal(color.images[0, 0], color.images[0, 1])
    np.testing.assert_allclose(color.images[1].numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    luma = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(gray.images[1, 0].numpy(), luma, atol=1e-6)


def test_folder_without_ground_truth_has_no_masks(tmp_path):
    root = make_layout(tmp_path / "fdm", test={"good": 2, "failure": 3}, masks=False)
    ds = FolderDataset(root)
    assert (ds.family, ds.category, ds.has_masks) == ("prints3d", "fdm", False)
    test = ds.load("test", GRAY16, 0)
    assert test.masks is None
    assert test.labels.tolist() == [1, 1, 1, 0, 0]
    assert ds.load("train", GRAY16, 0).masks is None


def test_mvtec_without_ground_truth_is_allowed(tmp_path):
    make_layout(tmp_path / "c", masks=False)
    ds = MVTecDataset(tmp_path, "c")
    assert not ds.has_masks
    assert ds.load("test", GRAY16, 0).masks is None


def test_mixed_modes_and_extensions_load(tmp_path):
    """16-bit, palette, RGBA, LA, 1-bit, RGB and gray files, any case of extension."""
    root = make_layout(tmp_path / "c", n_train=1, test={"good": 1}, masks=False)
    good = root / "train" / "good"
    rng = np.random.default_rng(2)
    ramp16 = np.tile(np.linspace(0, 65535, 30).astype(np.uint16), (20, 1))
    Image.fromarray(ramp16).save(good / "a16.png")
    Image.fromarray(_pixels(rng, 20, 30, 3)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        good / "b_palette.PNG"
    )
    Image.fromarray(_pixels(rng, 20, 30, 4)).save(good / "c_rgba.png")
    Image.fromarray(_pixels(rng, 20, 30, 2), mode="LA").save(good / "d_la.png")
    Image.fromarray(_pixels(rng, 20, 30) > 127).save(good / "e_bilevel.bmp")
    Image.fromarray(_pixels(rng, 25, 15, 3)).save(good / "f_rgb.JPG", quality=95)
    Image.fromarray(_pixels(rng, 20, 30)).save(good / "g_gray.tif")
    (good / "notes.txt").write_text("not an image")
    (good / ".hidden.png").write_bytes(b"junk")

    ds = FolderDataset(root)
    for spec in (GRAY16, RGB16):
        train = ds.load("train", spec, 0)
        assert len(train) == 8
        assert train.images.shape == (8, 1 if spec.grayscale else 3, 16, 16)
        assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    names = ds.load("train", GRAY16, 0).names
    assert "train/good/notes.txt" not in names and "train/good/.hidden.png" not in names

    # 16-bit values keep their full range: black at the left edge, white at the right.
    a16, _ = read_image(good / "a16.png", (20, 30), grayscale=True)
    assert a16[0, :, 0].max() == 0.0 and a16[0, :, -1].min() == 1.0
    np.testing.assert_allclose(a16[0, 0], ramp16[0] / 65535.0, atol=1e-6)
    # RGBA drops alpha; palette goes through its colours.
    rgba = np.asarray(Image.open(good / "c_rgba.png"))
    c, _ = read_image(good / "c_rgba.png", (20, 30), grayscale=False)
    np.testing.assert_allclose(c, rgba[..., :3].transpose(2, 0, 1) / 255.0, atol=1e-6)
    pal_rgb = np.asarray(Image.open(good / "b_palette.PNG").convert("RGB"))
    p, _ = read_image(good / "b_palette.PNG", (20, 30), grayscale=False)
    np.testing.assert_allclose(p, pal_rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_large_jpeg_draft_decode_stays_close_to_full_decode(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.random((24, 32)).astype(np.float32)
    big = resize_image(base[None], (480, 640))[0]
    path = tmp_path / "big.jpg"
    Image.fromarray((big * 255).round().astype(np.uint8)).save(path, quality=95)
    fast, source = read_image(path, (48, 64), grayscale=True)
    assert source == (480, 640) and fast.shape == (1, 48, 64)
    full = np.asarray(Image.open(path), dtype=np.float32)[None] / 255.0
    slow = resize_image(full, (48, 64))
    assert np.abs(fast - slow).mean() < 0.01


def test_cache_returns_independent_copies_and_sees_file_changes(tmp_path):
    root = make_layout(tmp_path / "c")
    ds = MVTecDataset(tmp_path, "c")
    first = ds.load("test", GRAY16, 0)
    reference = first.images.clone()
    first.images.zero_()
    first.masks.fill_(True)
    first.names.append("junk")
    again = ds.load("test", GRAY16, 0)
    assert torch.equal(again.images, reference)
    assert not again.masks[-1].any() and len(again.names) == 4

    # Rewriting a file (new size/mtime) invalidates the cached split.
    target = root / "test/good/000.png"
    Image.fromarray(np.full((20, 30), 255, dtype=np.uint8)).save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = ds.load("test", GRAY16, 0)
    assert float(changed.images[2].min()) == 1.0


# ---------------------------------------------------------------------------------------------
# Every broken layout is a one-line DataError naming the path


def test_missing_data_root_names_the_flag(tmp_path):
    missing = tmp_path / "nowhere"
    msg = _error(MVTecDataset, missing, "bottle")
    assert "--data-root" in msg and str(missing) in msg
    msg = _error(FolderDataset, missing)
    assert "--data-root" in msg and str(missing) in msg


def test_missing_category_lists_categories(tmp_path):
    make_layout(tmp_path / "carpet")
    make_layout(tmp_path / "grid")
    msg = _error(MVTecDataset, tmp_path, "bottle")
    assert str(tmp_path / "bottle") in msg and "carpet, grid" in msg
    # Passing the category folder itself as the root gets a hint.
    msg = _error(MVTecDataset, tmp_path / "grid", "grid")
    assert "pass its parent" in msg


def test_train_good_missing_or_empty(tmp_path):
    root = tmp_path / "c"
    (root / "test" / "good").mkdir(parents=True)
    msg = _error(FolderDataset, root)
    assert str(root / "train" / "good") in msg and "not found" in msg
    (root / "train" / "good").mkdir(parents=True)
    (root / "train" / "good" / "readme.txt").write_text("x")
    msg = _error(FolderDataset, root)
    assert str(root / "train" / "good") in msg and "no images" in msg


def test_test_missing_or_without_images(tmp_path):
    root = make_layout(tmp_path / "c", test={})  # no test/ folder at all
    msg = _error(FolderDataset, root)
    assert str(root / "test") in msg and "not found" in msg
    (root / "test" / "good").mkdir(parents=True)
    msg = _error(FolderDataset, root)
    assert str(root / "test") in msg and "no images" in msg


def test_truncated_jpeg_names_the_file(tmp_path):
    root = make_layout(tmp_path / "c", masks=False)
    buf = io.BytesIO()
    Image.fromarray(_pixels(np.random.default_rng(4), 64, 64, 3)).save(buf, "JPEG")
    bad = root / "test" / "good" / "002.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    ds = FolderDataset(root)  # the layout is fine; decoding fails
    msg = _error(ds.load, "test", GRAY16, 0)
    assert str(bad) in msg and "cannot read image" in msg
    # Garbage with an image extension too.
    junk = root / "train" / "good" / "zz.png"
    junk.write_bytes(b"not a png at all")
    assert str(junk) in _error(ds.load, "train", GRAY16, 0)


def test_mask_of_wrong_size_names_both_files_and_sizes(tmp_path):
    root = make_layout(tmp_path / "c")
    mask = root / "ground_truth" / "crack" / "001_mask.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(mask)
    ds = MVTecDataset(tmp_path, "c")
    msg = _error(ds.load, "test", GRAY16, 0)
    assert str(mask) in msg and str(root / "test" / "crack" / "001.png") in msg
    assert "12x10" in msg and "30x20" in msg


def test_missing_mask_names_image_and_expected_mask(tmp_path):
    root = make_layout(tmp_path / "c")
    os.remove(root / "ground_truth" / "crack" / "000_mask.png")
    msg = _error(MVTecDataset, tmp_path, "c")
    assert str(root / "test" / "crack" / "000.png") in msg
    assert str(root / "ground_truth" / "crack" / "000_mask") in msg
    # The same holds for a folder dataset once it has ground_truth/.
    assert str(root / "test" / "crack" / "000.png") in _error(FolderDataset, root)


def test_mask_without_image(tmp_path):
    root = make_layout(tmp_path / "c")
    os.remove(root / "test" / "crack" / "001.png")
    msg = _error(MVTecDataset, tmp_path, "c")
    assert str(root / "ground_truth" / "crack" / "001_mask.png") in msg
    assert str(root / "test" / "crack" / "001") in msg

    root2 = make_layout(tmp_path / "d")
    stray = root2 / "ground_truth" / "crack" / "000.png"
    Image.fromarray(np.zeros((20, 30), dtype=np.uint8)).save(stray)
    assert str(stray) in _error(FolderDataset, root2)


def test_masks_in_any_format(tmp_path):
    root = make_layout(tmp_path / "c", test={"good": 1, "crack": 2})
    # A 0/1 mask (not 0/255) and a JPEG mask with blurred edges are both read right.
    m = np.zeros((20, 30), dtype=np.uint8)
    m[5:15, 5:25] = 1
    os.remove(root / "ground_truth/crack/000_mask.png")
    Image.fromarray(m).save(root / "ground_truth/crack/000_mask.bmp")
    os.remove(root / "ground_truth/crack/001_mask.png")
    Image.fromarray(m * 255).save(root / "ground_truth/crack/001_mask.JPG", quality=90)
    ds = MVTecDataset(tmp_path, "c")
    test = ds.load("test", InputSpec((20, 30), grayscale=True), 0)
    assert torch.equal(test.masks[0], torch.from_numpy(m > 0))
    assert (test.masks[1] != torch.from_numpy(m > 0)).sum() <= 4
    mask = read_mask(root / "ground_truth/crack/000_mask.bmp", (20, 30))
    assert mask.dtype == bool and mask.sum() == 200


# ---------------------------------------------------------------------------------------------
# Hypothesis: the decoder never raises anything but DataError


_MODES = ["1", "L", "P", "LA", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]
_FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"]


def _random_image(mode: str, h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32))
    if mode == "F":
        return Image.fromarray(rng.random((h, w)).astype(np.float32) * 300)
    if mode == "P":
        return Image.fromarray(_pixels(rng, h, w, 3)).convert("P")
    bands = len(mode) if mode not in ("1", "L") else 1
    arr = _pixels(rng, h, w, 0 if bands == 1 else bands)
    return Image.fromarray(arr, mode="L" if mode == "1" else mode).convert(mode)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about corrupt TIFF/EXIF tags
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mode=st.sampled_from(_MODES),
    fmt=st.sampled_from(_FORMATS),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    target=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    grayscale=st.booleans(),
)
def test_image_files_load_or_raise_data_error(
    tmp_path, mode, fmt, h, w, seed, cut, target, grayscale
):
    try:
        buf = io.BytesIO()
        _random_image(mode, h, w, seed).save(buf, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return  # this format cannot store this mode: nothing to test
    payload = buf.getvalue() if cut is None else buf.getvalue()[:cut]
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(payload)
    _check_loads_or_data_error(path, target, grayscale)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about corrupt TIFF/EXIF tags
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.binary(max_size=300),
    ext=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".gif"]),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00"]),
    grayscale=st.booleans(),
)
def test_random_bytes_load_or_raise_data_error(tmp_path, payload, ext, prefix, grayscale):
    path = tmp_path / f"r{ext}"
    path.write_bytes(prefix + payload)
    _check_loads_or_data_error(path, (8, 12), grayscale)


def _check_loads_or_data_error(path: Path, target: tuple[int, int], grayscale: bool) -> None:
    try:
        arr, source = read_image(path, target, grayscale)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert arr.shape == (1 if grayscale else 3, *target) and arr.dtype == np.float32
    assert np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0
    assert source[0] > 0 and source[1] > 0


# ---------------------------------------------------------------------------------------------
# make_dataset


def test_make_dataset_specs(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA", raising=False)
    ds = make_dataset("synthetic", None)
    assert isinstance(ds, SyntheticDataset) and ds.category == "brick"
    assert make_dataset("synthetic:brick", None).category == "brick"
    assert isinstance(ds, Dataset)

    make_layout(tmp_path / "magnetic_tile")
    mv = make_dataset("mvtec:magnetic_tile", tmp_path)
    assert isinstance(mv, MVTecDataset) and (mv.family, mv.category) == ("mvtec", "magnetic_tile")

    pr = make_dataset("prints3d", tmp_path / "magnetic_tile")
    assert isinstance(pr, FolderDataset) and (pr.family, pr.category) == (
        "prints3d",
        "magnetic_tile",
    )
    named = make_dataset("prints3d:magnetic_tile", tmp_path)
    assert named.root == tmp_path / "magnetic_tile" and named.category == "magnetic_tile"
    msg = _error(make_dataset, "prints3d:fdm", tmp_path)
    assert str(tmp_path / "fdm") in msg and "magnetic_tile" in msg

    # BENCH_DATA stands in for --data-root.
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    assert make_dataset("mvtec:magnetic_tile", None).root == tmp_path / "magnetic_tile"


def test_make_dataset_errors(monkeypatch):
    monkeypatch.delenv("BENCH_DATA", raising=False)
    with pytest.raises(
        ConfigError, match=r"--data-root \(or BENCH_DATA\) is required for mvtec:bottle"
    ):
        make_dataset("mvtec:bottle", None)
    with pytest.raises(ConfigError, match="is required for prints3d"):
        make_dataset("prints3d", None)
    with pytest.raises(ConfigError, match="needs a category"):
        make_dataset("mvtec", Path("/tmp"))
    with pytest.raises(ConfigError, match=r"unknown dataset 'mvtek' \(did you mean 'mvtec'\?\)"):
        make_dataset("mvtek:bottle", None)
    with pytest.raises(ConfigError, match="unknown synthetic texture 'marble'"):
        make_dataset("synthetic:marble", None)
    with pytest.raises(ConfigError, match="nothing after ':'"):
        make_dataset("synthetic:", None)


def test_listing_constants():
    assert set(DATASET_FAMILIES) == {"synthetic", "mvtec", "prints3d"}
    assert all(isinstance(v, str) and "\n" not in v for v in DATASET_FAMILIES.values())
    assert len(MVTEC_CATEGORIES) == 15 and "metal_nut" in MVTEC_CATEGORIES
    assert list(DATASET_FAMILIES) == ["synthetic", "mvtec", "prints3d"]  # bench list's order


def test_a_registered_family_is_built_by_name_listed_and_suggested(monkeypatch, tmp_path):
    from bench.datasets import registry as datasets_registry

    # A copy of the registry: the registration is undone after the test.
    monkeypatch.setattr(datasets_registry, "_DATASETS", datasets_registry.datasets())
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    seen: list[DatasetRequest] = []

    def build(request: DatasetRequest) -> Dataset:
        seen.append(request)
        return SyntheticDataset("grass")

    register_dataset(DatasetEntry("toy", "toy[:<name>]: test only", build))
    assert DATASET_FAMILIES["toy"] == "toy[:<name>]: test only"
    assert list(DATASET_FAMILIES)[-1] == "toy" and len(DATASET_FAMILIES) == 4
    assert make_dataset(" TOY : abc ").category == "grass"
    assert (seen[0].spec, seen[0].arg, seen[0].root) == ("TOY : abc", "abc", tmp_path)
    assert get_dataset("toy").build is build
    with pytest.raises(
        ConfigError,
        match=r"^unknown dataset 'ty' \(did you mean 'toy'\?\); valid: mvtec, prints3d, synthetic, "
        r"toy$",
    ):
        make_dataset("ty:abc")
    with pytest.raises(ConfigError, match=r"^dataset 'toy:': nothing after ':'; expected e\.g"):
        make_dataset("toy:")
    assert len(seen) == 1  # neither error reached the builder


# ---------------------------------------------------------------------------------------------
# Real data (read-only, shared between sessions)


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (see shared/data/README.md)")


def test_real_magnetic_tile():
    _need(MTD / "magnetic_tile")
    ds = MVTecDataset(MTD, "magnetic_tile")
    assert ds.has_masks
    spec = InputSpec((100, 100), grayscale=True)
    train = ds.load("train", spec, 0)
    test = ds.load("test", spec, 0)
    assert train.images.shape == (800, 1, 100, 100)
    assert test.images.shape == (544, 1, 100, 100)
    assert int(test.labels.sum()) == 392
    assert test.masks is not None and test.masks.shape == (544, 100, 100)
    anomalous = test.labels == 1
    assert not test.masks[~anomalous].any()
    # A few source masks of "uneven" are empty in the dataset itself; nearly all are not.
    assert int(test.masks[anomalous].flatten(1).any(1).sum()) >= 380
    assert set(test.defect_types) == {"blowhole", "break", "crack", "fray", "good", "uneven"}
    assert ds.describe()["test"]["blowhole"] == 115

    # Sources are not square and of varying size; everything came out 100x100, masks aligned.
    i = test.names.index("test/crack/000.jpg")
    src = Image.open(MTD / "magnetic_tile" / "test/crack/000.jpg")
    assert src.size[0] != src.size[1]
    gt = np.asarray(Image.open(MTD / "magnetic_tile/ground_truth/crack/000_mask.png")) > 127
    assert torch.equal(test.masks[i], torch.from_numpy(resize_mask(gt, (100, 100))))
    rgb = ds.load("test", InputSpec((64, 48), grayscale=False), 0)
    assert rgb.images.shape == (544, 3, 64, 48) and rgb.masks.shape == (544, 64, 48)


@pytest.mark.benchmark
def test_real_magnetic_tile_loads_within_20_seconds():
    _need(MTD / "magnetic_tile")
    ds = MVTecDataset(MTD, "magnetic_tile")
    spec = InputSpec((100, 100), grayscale=True)
    start = time.perf_counter()  # the split cache is empty (_fresh_cache): files are decoded
    ds.load("train", spec, 0)
    ds.load("test", spec, 0)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"loading magnetic_tile took {elapsed:.1f}s"


def test_real_prints3d_fdm():
    _need(FDM)
    ds = make_dataset("prints3d", FDM)
    assert (ds.family, ds.category, ds.has_masks) == ("prints3d", "fdm", False)
    gray = ds.load("test", InputSpec((100, 100), grayscale=True), 0)
    assert gray.images.shape == (99, 1, 100, 100) and gray.masks is None
    assert int(gray.labels.sum()) == 52 and set(gray.defect_types) == {"good", "failure"}
    color = ds.load("test", InputSpec((100, 100), grayscale=False), 0)
    assert color.images.shape == (99, 3, 100, 100)
    # RGB photos really are in colour, and gray is their luma.
    assert float((color.images[:, 0] - color.images[:, 2]).abs().mean()) > 0.01
    luma = (torch.tensor([0.299, 0.587, 0.114])[None, :, None, None] * color.images).sum(1)
    assert float((luma - gray.images[:, 0]).abs().mean()) < 0.02
    assert len(ds.load("train", InputSpec((32, 32), grayscale=True), 0)) == 114
