"""``bench data download mvtec [--category tile]``: fetch MVTec AD, verify it, unpack it.

The URL and SHA-256 are anomalib's (``anomalib.data.datamodules.image.mvtecad.DOWNLOAD_INFO``)
so that both tools agree on what "MVTec AD" is. anomalib knows only the full archive (about
4.9 GB, all 15 categories), so one category still downloads all of it; only that category is
unpacked, and the archive is kept (``keep_archive``) so that the next category does not
download it again.

Layout produced, the one anomalib and the MVTec loader read::

    <data_root>/tile/train/good/000.png
    <data_root>/tile/test/{good,crack,...}/000.png
    <data_root>/tile/ground_truth/crack/000_mask.png

Each category is unpacked into a scratch folder beside it and moved into place whole, so a
``<data_root>/<category>`` folder exists only when it is complete; an interrupted run leaves
at most a ``.part`` download or a scratch folder, never a half category that would load.
Extraction reuses anomalib's ``safe_extract`` (no absolute paths, no ``..``, no links).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from bench.util.errors import ConfigError, DataError, unknown_name

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_EXTRA_FILES = ("license.txt", "readme.txt")  # the archive's licence (CC BY-NC-SA 4.0) and notes


def _official() -> tuple[str, str, tuple[str, ...]]:
    """anomalib's MVTec AD URL, SHA-256 and category list (imported lazily: ~10 s)."""
    from anomalib.data.datamodules.image.mvtecad import DOWNLOAD_INFO
    from anomalib.data.datasets.image.mvtecad import CATEGORIES

    return DOWNLOAD_INFO.url, DOWNLOAD_INFO.hashsum, tuple(CATEGORIES)


def mvtec_categories() -> tuple[str, ...]:
    """The 15 MVTec AD categories, as anomalib lists them."""
    return _official()[2]


def _is_complete(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(
    url: str,
    dest: Path,
    checksum: str,
    progress: Callable[[int, int | None], None] | None,
    timeout_s: float,
) -> None:
    """Stream ``url`` into ``dest`` via ``dest.part``, hashing on the way; the final name
    appears only for a complete file with the right hash."""
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, part.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise DataError(f"download of {url} stopped after {done} of {total} bytes; retry")
    except urllib.error.HTTPError as err:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {err.reason}") from err
    except (OSError, ValueError) as err:  # reset connection, timeout, disk full, bad URL
        part.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {err}") from err
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = h.hexdigest()
    if actual != checksum:
        part.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {dest.name} from {url}: expected sha256 {checksum}, "
            f"got {actual}; the download was removed"
        )
    os.replace(part, dest)


def _relative_parts(name: str, categories: tuple[str, ...]) -> tuple[str, ...] | None:
    """Path of an archive member relative to the MVTec root, whether the archive holds the
    categories at its top (the official one) or inside one wrapping folder (some mirrors)."""
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if not parts:
        return None
    if parts[0] in categories or parts[0] in _EXTRA_FILES:
        return parts
    if len(parts) > 1 and (parts[1] in categories or parts[1] in _EXTRA_FILES):
        return parts[1:]
    return None


def _extract(
    archive: Path, data_root: Path, wanted: list[str], categories: tuple[str, ...]
) -> None:
    """Unpack the ``wanted`` categories (one pass over the archive) into a scratch folder,
    then move each into ``data_root``."""
    from anomalib.data.utils.download import safe_extract

    scratch = Path(tempfile.mkdtemp(prefix=".mvtec-extract-", dir=data_root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    rel = _relative_parts(member.name, categories)
                    if rel is None or (rel[0] not in wanted and rel[0] not in _EXTRA_FILES):
                        continue
                    member.name = "/".join(rel)
                    safe_extract(tar, scratch, [member])
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(f"cannot unpack {archive}: {err}") from err
        for category in wanted:
            if not _is_complete(scratch / category):
                raise DataError(
                    f"{archive.name} holds no complete '{category}' folder (train/ and test/); "
                    "is it the MVTec AD archive?"
                )
        for category in wanted:
            os.replace(scratch / category, data_root / category)
        for extra in _EXTRA_FILES:
            if (scratch / extra).is_file() and not (data_root / extra).exists():
                os.replace(scratch / extra, data_root / extra)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def download_mvtec(
    data_root: Path,
    category: str | None,
    url: str | None = None,
    checksum: str | None = None,
    *,
    keep_archive: bool | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Download MVTec AD (anomalib's URL and SHA-256 unless ``url``/``checksum`` say otherwise,
    e.g. for a mirror), verify it and unpack ``category`` (all 15 when None) into
    ``data_root``. Returns ``data_root / category``, or ``data_root`` for all.

    Categories already present are not downloaded again. An archive already in ``data_root``
    with the right hash is reused. ``keep_archive`` (default: keep only when a single category
    was asked for) leaves ``<data_root>/mvtec_anomaly_detection.tar.xz`` in place for the
    next category. ``progress(bytes_done, bytes_total_or_None)`` is called per MB.

    Raises DataError for a network failure (naming the URL), a checksum mismatch (naming the
    file and both hashes; the download is removed) or an archive that is not MVTec AD;
    ConfigError for an unknown category, a non-http(s) URL or a malformed checksum.
    """
    official_url, official_sha, categories = _official()
    if category is not None and category not in categories:
        raise unknown_name("MVTec AD category", category, categories)
    url = url or official_url
    checksum = (checksum or official_sha).strip().lower()
    if urlparse(url).scheme not in ("http", "https"):
        raise ConfigError(f"download URL must be http:// or https://, got '{url}'")
    if not re.fullmatch(r"[0-9a-f]{64}", checksum):
        raise ConfigError(f"checksum must be a SHA-256 (64 hex digits), got '{checksum}'")

    data_root = Path(data_root).expanduser()
    target = data_root / category if category else data_root
    asked = [category] if category else list(categories)
    wanted = [c for c in asked if not _is_complete(data_root / c)]
    if not wanted:
        logger.info("MVTec AD %s already in %s", category or "(all)", data_root)
        return target
    for c in wanted:
        if (data_root / c).exists():
            raise DataError(
                f"{data_root / c} exists but is incomplete (no train/ or test/); "
                "move it away and run the download again"
            )
    data_root.mkdir(parents=True, exist_ok=True)

    filename = PurePosixPath(urlparse(url).path).name or "mvtec_anomaly_detection.tar.xz"
    archive = data_root / filename
    if archive.exists():
        actual = sha256_of(archive)
        if actual == checksum:
            logger.info("reusing %s (checksum ok)", archive)
        else:
            logger.warning(
                "%s has sha256 %s, expected %s: downloading again", archive, actual, checksum
            )
            archive.unlink()
    if not archive.exists():
        logger.info("downloading %s to %s", url, archive)
        _fetch(url, archive, checksum, progress, timeout_s)

    _extract(archive, data_root, wanted, categories)
    if keep_archive is None:
        keep_archive = category is not None
    if keep_archive:
        logger.info("kept %s for other categories; delete it to free the space", archive)
    else:
        archive.unlink(missing_ok=True)
    return target
