"""Results on disk: one JSON record per job, written atomically, read back as a DataFrame.

Layout of a run folder (``results/runs/<run-id>/``)::

    manifest.json            what was asked for, environment, git commit, device, start/end
    jobs/<job-id>.json       one self-describing record per job (status ok or failed)
    jobs/<job-id>.scores.csv per-test-image scores and decisions (ROC curves, bootstrap)
    jobs/<job-id>.maps.npz   a few test images, masks and maps, downsampled (qualitative grid)
    records.csv              flat table of all records, rewritten at the end of each run
    locks/                   lock files (run-level and per-job); safe to delete when idle

A record file appears only complete (temp file + ``os.replace``), so a run killed at any point
leaves either the whole record or none, and two processes writing different jobs into one
folder cannot corrupt each other. ``records.csv`` and the manifest's job list are derived from
what is on disk and rewritten under a run-level lock, so two ``bench run`` processes sharing a
folder (even with the same run id) never lose each other's entries. A per-job lock ("claim")
keeps two processes from computing the same job at once; the locks are ``flock`` locks
(:mod:`filelock`), which the kernel releases when a process dies, even by SIGKILL, so a killed
run never leaves a stale claim behind.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from bench.errors import DataError

log = logging.getLogger(__name__)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut could otherwise undo it); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A record or manifest, or None when it is unreadable (then it is recomputed, not fatal)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); ignoring it", path, exc)
        return None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as null so any reader can parse the record."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _json_safe(obj.item())
    return obj


def write_json(path: Path, obj: Any) -> None:
    _atomic_write_text(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n")


class RunStore:
    """The records of one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.jobs_dir = self.run_dir / "jobs"

    def record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def read_record(self, job_id: str) -> dict[str, Any] | None:
        return _read_json(self.record_path(job_id))

    def is_done(self, job_id: str) -> bool:
        record = self.read_record(job_id)
        return record is not None and record.get("status") == "ok"

    def write_record(self, record: dict[str, Any]) -> Path:
        path = self.record_path(record["job_id"])
        write_json(path, record)
        return path

    def write_scores(self, job_id: str, frame: pd.DataFrame) -> Path:
        path = self.jobs_dir / f"{job_id}.scores.csv"
        _atomic_write_text(path, frame.to_csv(index=False))
        return path

    def maps_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.maps.npz"

    def write_maps(self, job_id: str, arrays: dict[str, Any]) -> Path:
        """Arrays for the qualitative grid (``bench.reports.examples``), compressed, atomic."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = self.maps_path(job_id)
        _atomic_write_bytes(path, buffer.getvalue())
        return path

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.run_dir / "manifest.json", manifest)

    def read_manifest(self) -> dict[str, Any] | None:
        return _read_json(self.run_dir / "manifest.json")

    def update_manifest(
        self, update: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read-modify-write the manifest under the run lock (another process may share it)."""
        with self.lock():
            manifest = update(self.read_manifest())
            self.write_manifest(manifest)
        return manifest

    def records(self) -> list[dict[str, Any]]:
        if not self.jobs_dir.is_dir():
            return []
        found = (_read_json(p) for p in sorted(self.jobs_dir.glob("*.json")))
        return [r for r in found if r is not None]

    def frame(self) -> pd.DataFrame:
        return records_frame(self.records())

    def export_csv(self) -> Path:
        """Rebuild ``records.csv`` from the job files; under the run lock, so that of two
        processes the later export always sees every record either of them wrote before."""
        path = self.run_dir / "records.csv"
        with self.lock():
            _atomic_write_text(path, self.frame().to_csv(index=False))
        return path

    # -- locks ---------------------------------------------------------------------------------

    def _lock_path(self, name: str) -> Path:
        folder = self.run_dir / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.lock"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The run-level lock: held briefly around manifest and ``records.csv`` updates."""
        with FileLock(self._lock_path("run")):
            yield

    @contextmanager
    def claim(self, job_id: str, wait: bool = False) -> Iterator[bool]:
        """Hold job ``job_id`` while computing it. Yields False (at once, unless ``wait``) when
        another live process holds it; the kernel drops a claim when its process dies."""
        lock = FileLock(self._lock_path(f"job-{job_id}"), timeout=-1 if wait else 0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per job; nested dicts flattened with dots (``metrics.f1``, ``params.t``)."""
    if not records:
        return pd.DataFrame()
    return pd.json_normalize(records, sep=".")


def load_results(path: Path) -> pd.DataFrame:
    """Records from a run folder, a folder of run folders, a records.csv or one record file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such results folder or file")
    if path.is_file():
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".json":
            return records_frame([json.loads(path.read_text(encoding="utf-8"))])
        raise DataError(f"{path}: expected a run folder, records.csv or a job .json")
    job_files = sorted(path.glob("jobs/*.json")) or sorted(path.glob("*/jobs/*.json"))
    if not job_files:
        raise DataError(f"{path}: no job records (expected jobs/*.json or */jobs/*.json)")
    return records_frame([json.loads(p.read_text(encoding="utf-8")) for p in job_files])
