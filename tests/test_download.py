"""MVTec AD download against a local HTTP server on the loopback interface (never the network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.datasets.download import download_mvtec
from bench.util.errors import ConfigError, DataError

FILES = [
    "train/good/000.png",
    "train/good/001.png",
    "test/good/000.png",
    "test/crack/000.png",
    "ground_truth/crack/000_mask.png",
]


def _build_archive(tmp: Path, wrap: str = "") -> Path:
    """A tiny MVTec-layout .tar.xz with two categories (tile, bottle) and the licence file."""
    src = tmp / "src"
    for category in ("tile", "bottle"):
        for rel in FILES:
            path = src / category / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = "L" if "mask" in rel else "RGB"
            Image.fromarray(np.zeros((8, 8, 3) if mode == "RGB" else (8, 8), np.uint8)).save(path)
    (src / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    served = tmp / "served"
    served.mkdir()
    archive = served / "mvtec_anomaly_detection.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for item in sorted(src.iterdir()):
            tar.add(item, arcname=f"{wrap}{item.name}")
    return archive


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder); bound to 127.0.0.1 only, on a free port."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve_archive(tmp_path: Path, served: Path, wrap: str = "") -> tuple[str, str]:
    build = tmp_path / "build"
    build.mkdir()
    archive = _build_archive(build, wrap)
    (served / archive.name).write_bytes(archive.read_bytes())
    return archive.name, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_good_checksum_extracts_one_category(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, served = server
    name, sha = _serve_archive(tmp_path, served)
    root = tmp_path / "data"
    progress: list[int] = []

    out = download_mvtec(
        root, "tile", url=f"{base}/{name}", checksum=sha, progress=lambda d, t: progress.append(d)
    )

    assert out == root / "tile"
    for rel in FILES:
        assert (root / "tile" / rel).is_file(), rel
    assert not (root / "bottle").exists()  # only the category asked for
    assert (root / "license.txt").is_file()
    assert (root / name).is_file()  # kept for the next category
    assert not list(root.glob("*.part")) and not list(root.glob(".mvtec-extract-*"))
    assert progress and progress[-1] == (served / name).stat().st_size

    # The next category reuses the kept archive: the server no longer has it.
    (served / name).unlink()
    assert download_mvtec(root, "bottle", url=f"{base}/{name}", checksum=sha) == root / "bottle"
    assert (root / "bottle" / "ground_truth" / "crack" / "000_mask.png").is_file()
    # Already there: nothing to do, no network needed.
    assert download_mvtec(root, "tile", url=f"{base}/{name}", checksum=sha) == root / "tile"


def test_wrapped_archive_and_all_categories_missing_one_is_an_error(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    base, served = server
    name, sha = _serve_archive(tmp_path, served, wrap="mvtec_anomaly_detection/")
    root = tmp_path / "data"
    assert download_mvtec(root, "tile", url=f"{base}/{name}", checksum=sha, keep_archive=False)
    assert (root / "tile" / "train" / "good" / "000.png").is_file()
    assert not (root / name).exists()
    # All 15 categories asked for, the archive holds two: says so, leaves no half state.
    with pytest.raises(DataError, match="no complete 'cable' folder"):
        download_mvtec(root, None, url=f"{base}/{name}", checksum=sha)
    assert not (root / "bottle").exists()
    assert not list(root.glob(".mvtec-extract-*"))


def test_bad_checksum_raises_and_removes_download(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, served = server
    name, sha = _serve_archive(tmp_path, served)
    root = tmp_path / "data"
    wrong = "0" * 64
    with pytest.raises(DataError) as info:
        download_mvtec(root, "tile", url=f"{base}/{name}", checksum=wrong)
    message = str(info.value)
    assert "\n" not in message
    assert name in message and wrong in message and sha in message
    assert not list(root.iterdir())  # no archive, no .part, no category


def test_network_errors_name_the_url(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, _ = server
    url = f"{base}/missing.tar.xz"
    with pytest.raises(DataError, match=f"could not download {url}: HTTP 404"):
        download_mvtec(tmp_path / "data", "tile", url=url, checksum="0" * 64)

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mvtec_anomaly_detection.tar.xz"
    with pytest.raises(DataError, match=f"could not download {url}"):
        download_mvtec(tmp_path / "data", "tile", url=url, checksum="0" * 64, timeout_s=5)
    assert not list((tmp_path / "data").glob("*.part"))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'tile'"):
        download_mvtec(tmp_path, "tiles", url="http://127.0.0.1:9/x.tar.xz", checksum="0" * 64)
    with pytest.raises(ConfigError, match="http"):
        download_mvtec(tmp_path, "tile", url="ftp://127.0.0.1/x.tar.xz", checksum="0" * 64)
    with pytest.raises(ConfigError, match="SHA-256"):
        download_mvtec(tmp_path, "tile", url="http://127.0.0.1:9/x.tar.xz", checksum="abc")
