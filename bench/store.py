"""Results on disk: one JSON record per job, written atomically, read back as a DataFrame.

Layout of a run folder (``results/runs/<run-id>/``)::

    manifest.json            what was asked for, environment, git commit, device, start/end
    jobs/<job-id>.json       one self-describing record per job (status ok or failed)
    jobs/<job-id>.scores.csv per-test-image scores and decisions (ROC curves, bootstrap)
    records.csv              flat table of all records, rewritten at the end of each run

A record file appears only complete (temp file + ``os.replace``), so a run killed at any point
leaves either the whole record or none, and two processes writing different jobs into one
folder cannot corrupt each other. ``records.csv`` is derived and can always be rebuilt.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import DataError


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
        path = self.record_path(job_id)
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

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

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.run_dir / "manifest.json", manifest)

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.run_dir / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def records(self) -> list[dict[str, Any]]:
        if not self.jobs_dir.is_dir():
            return []
        return [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.jobs_dir.glob("*.json"))
        ]

    def frame(self) -> pd.DataFrame:
        return records_frame(self.records())

    def export_csv(self) -> Path:
        path = self.run_dir / "records.csv"
        _atomic_write_text(path, self.frame().to_csv(index=False))
        return path


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
