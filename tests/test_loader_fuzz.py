"""Fuzzing the image and mask loaders (issue #9, point 6): whatever the file, it either loads
to the right numbers or raises the suite's own one-line :class:`~bench.util.errors.DataError`.

tests/test_datasets.py already fuzzes :func:`read_image` for "never anything but DataError"
(random modes x formats x truncation, random bytes behind real magic numbers). This file adds
what that does not check: that lossless files of every mode (16-bit, palette, alpha, 1-bit, odd
sizes) load to exactly the expected values, that masks in every encoding come back as exactly
the drawn mask, that broken or mismatched masks are DataErrors, and that a folder dataset with
one broken file fails naming that file.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.datasets.base import read_image, read_mask
from bench.datasets.folder import FolderDataset, clear_cache
from bench.interface import InputSpec
from bench.util.errors import DataError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.integers(1, 33)  # odd sizes and 1-pixel images included
seeds = st.integers(0, 2**32 - 1)


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes | None:
    """The encoded file, or None when ``fmt`` cannot store ``img``'s mode."""
    buf = io.BytesIO()
    try:
        img.save(buf, fmt, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buf.getvalue()


def _load(payload: bytes, suffix: str, size: tuple[int, int], grayscale: bool) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        path.write_bytes(payload)
        arr, source = read_image(path, size, grayscale)
    assert source == size
    return arr


def _source(mode: str, h: int, w: int, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """A random image of ``mode`` and the (3, h, w) RGB values in [0, 1] it stands for."""
    if mode == "I;16":
        raw = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        img = Image.fromarray(raw)
        return img, np.repeat(raw[None].astype(np.float32) / 65535.0, 3, axis=0)
    if mode == "1":
        bits = rng.integers(0, 2, (h, w), dtype=np.uint8).astype(bool)
        img = Image.fromarray(bits.astype(np.uint8) * 255).convert("1")
        return img, np.repeat(bits[None].astype(np.float32), 3, axis=0)
    if mode == "P":
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        index = rng.integers(0, 256, (h, w), dtype=np.uint8)
        img = Image.fromarray(index, mode="P")
        img.putpalette(palette.tobytes())
        img.info["transparency"] = 0  # a transparent palette entry: colour kept, alpha dropped
        return img, palette[index].transpose(2, 0, 1).astype(np.float32) / 255.0
    bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    raw = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    img = Image.fromarray(raw[..., 0] if bands == 1 else raw, mode=mode)
    colour = raw[..., :1] if bands <= 2 else raw[..., :3]  # alpha is dropped, not composited
    rgb = np.broadcast_to(colour, (h, w, 3)).transpose(2, 0, 1).astype(np.float32) / 255.0
    return img, rgb


@FUZZ
@given(
    mode=st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP"]),
    h=sizes,
    w=sizes,
    seed=seeds,
)
def test_lossless_files_load_to_the_exact_values(mode, fmt, h, w, seed):
    img, rgb = _source(mode, h, w, np.random.default_rng(seed))
    payload = _save(img, fmt)
    assume(payload is not None)
    colour = _load(payload, f".{fmt.lower()}", (h, w), grayscale=False)
    assert colour.shape == (3, h, w) and colour.dtype == np.float32
    np.testing.assert_allclose(colour, rgb, atol=1e-6)
    gray = _load(payload, f".{fmt.lower()}", (h, w), grayscale=True)
    assert gray.shape == (1, h, w)
    if mode in ("1", "L", "LA", "I;16"):  # a gray source is read as it is
        np.testing.assert_allclose(gray[0], rgb[0], atol=1e-6)
    else:  # colour -> ITU-R 601 luma, rounded to 8 bits as PIL's "L" does
        luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        np.testing.assert_allclose(gray[0], luma, atol=1.01 / 255)


@FUZZ
@given(
    mode=st.sampled_from(["1", "L", "P", "RGB", "RGBA", "I;16"]),
    fmt=st.sampled_from(["PNG", "JPEG", "TIFF", "WEBP"]),
    h=sizes,
    w=sizes,
    target=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=seeds,
    grayscale=st.booleans(),
)
def test_any_size_any_target_stays_in_range(mode, fmt, h, w, target, seed, grayscale):
    img, _ = _source(mode, h, w, np.random.default_rng(seed))
    payload = _save(img, fmt)
    assume(payload is not None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{fmt.lower()}"
        path.write_bytes(payload)
        arr, source = read_image(path, target, grayscale)
    assert arr.shape == (1 if grayscale else 3, *target) and arr.dtype == np.float32
    assert np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0
    assert source == (h, w)


@FUZZ
@given(
    encoding=st.sampled_from(["0/255 L", "0/1 L", "1-bit", "palette", "RGBA", "16-bit", "RGB"]),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP"]),
    h=sizes,
    w=sizes,
    seed=seeds,
)
def test_masks_in_any_encoding_come_back_exactly(encoding, fmt, h, w, seed):
    mask = np.random.default_rng(seed).random((h, w)) < 0.3
    u8 = mask.astype(np.uint8)
    img = {
        "0/255 L": lambda: Image.fromarray(u8 * 255),
        "0/1 L": lambda: Image.fromarray(u8),
        "1-bit": lambda: Image.fromarray(u8 * 255).convert("1"),
        "palette": lambda: Image.fromarray(u8 * 255).convert("P"),
        "RGBA": lambda: Image.fromarray(u8 * 255).convert("RGBA"),
        "RGB": lambda: Image.fromarray(u8 * 255).convert("RGB"),
        "16-bit": lambda: Image.fromarray(u8.astype(np.uint16) * 65535),
    }[encoding]()
    payload = _save(img, fmt)
    assume(payload is not None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m_mask.{fmt.lower()}"
        path.write_bytes(payload)
        got = read_mask(path, (h, w), expected_source=(h, w))
    assert got.dtype == bool and got.shape == (h, w)
    np.testing.assert_array_equal(got, mask)


@FUZZ
@given(
    payload=st.binary(max_size=200),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"\xff\xd8\xff"]),
    cut_of_real=st.one_of(st.none(), st.integers(0, 120)),
    h=sizes,
    w=sizes,
)
def test_broken_masks_are_data_errors(payload, prefix, cut_of_real, h, w):
    if cut_of_real is not None:  # a real mask PNG, truncated
        real = _save(Image.fromarray(np.zeros((h, w), np.uint8)), "PNG")
        assert real is not None
        data = real[:cut_of_real]
    else:
        data = prefix + payload
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x_mask.png"
        path.write_bytes(data)
        try:
            got = read_mask(path, (8, 8), expected_source=(h, w), image_path=Path("x.png"))
        except DataError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
    # It decoded: then it had the image's size (a checked property) and is a proper mask.
    assert got.shape == (8, 8) and got.dtype == bool


@FUZZ
@given(mh=sizes, mw=sizes, h=sizes, w=sizes)
def test_a_mask_of_another_size_names_both_sizes(mh, mw, h, w):
    assume((mh, mw) != (h, w))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "000_mask.png"
        Image.fromarray(np.zeros((mh, mw), np.uint8)).save(path)
        with pytest.raises(DataError) as info:
            read_mask(path, (8, 8), expected_source=(h, w), image_path=Path("img/000.png"))
    message = str(info.value)
    assert f"mask is {mw}x{mh}" in message and f"img/000.png is {w}x{h}" in message


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    victim=st.sampled_from(["train/good/001.png", "test/good/000.png", "test/crack/000.png"]),
    damage=st.sampled_from(["truncate", "random", "empty", "text"]),
    cut=st.integers(0, 100),
    junk=st.binary(min_size=1, max_size=100),
)
def test_a_dataset_with_one_broken_file_names_it(victim, damage, cut, junk):
    clear_cache()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        for rel in ("train/good/000.png", "train/good/001.png", "test/good/000.png"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(root / rel)
        (root / "test/crack").mkdir()
        Image.fromarray(rng.integers(0, 256, (9, 11), dtype=np.uint8)).save(
            root / "test/crack/000.png"
        )
        path = root / victim
        data = path.read_bytes()
        path.write_bytes(
            {
                "truncate": data[:cut],
                "random": junk,
                "empty": b"",
                "text": b"not an image\n",
            }[damage]
        )
        ds = FolderDataset(root)  # the layout scan does not decode: broken files pass it
        split = "train" if victim.startswith("train") else "test"
        with pytest.raises(DataError) as info:
            ds.load(split, InputSpec((8, 8), grayscale=False))
        assert str(path) in str(info.value) and "\n" not in str(info.value)
