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

Reading goes through one validating reader (:func:`read_record_file`,
:meth:`RunStore.read_manifest`; the schemas are in :mod:`bench.store.schema`): a damaged or
foreign file is moved aside as ``<name>.damaged-<UTC time>`` with one warning and counts as
absent, so a rerun recomputes the job (or rebuilds the manifest) and nothing is deleted. Runs
are written only into folders named by :func:`check_run_id` that are bench run folders or new
(:func:`open_run_folder`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from bench.store.schema import Field, Status, is_bench_manifest, manifest_problem, record_problem
from bench.util.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) so that ``path`` appears whole or not at all: a temp file
    beside it, flushed to disk, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    binary = isinstance(data, bytes)
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, text)


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


def _read_json(path: Path) -> Any:
    """A JSON file that no schema covers (e.g. ``slurm/submissions.json``), or None when it is
    absent or unreadable (then it is rebuilt, not fatal)."""
    value, problem = _parse_json(path)
    if problem is not None:
        _warn_once(path, f"{problem}; ignoring it")
    return value


def _parse_json(path: Path) -> tuple[Any, str | None]:
    """``(value, None)``, ``(None, None)`` when absent, ``(None, what is wrong)`` otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    return _parse_bytes(data)


#: Damaged files already reported by this process (those that could not be moved aside).
_REPORTED: set[tuple[str, str]] = set()


def _warn_once(path: Path, message: str) -> None:
    key = (str(path), message)
    if key not in _REPORTED:
        _REPORTED.add(key)
        log.warning("%s: %s", path, message)


def set_aside(path: Path, problem: str, what: str, original: bytes | None = None) -> Path | None:
    """Move a damaged file out of the way (``<name>.damaged-<UTC time>``, never deleted) and
    say so once. ``original``: the bytes that were judged; if the file changed since (a writer
    replaced it atomically), it is left alone. Returns the new path, or None when not moved."""
    try:
        if original is not None and path.read_bytes() != original:
            return None
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = path.with_name(f"{path.name}.damaged-{stamp}")
        os.rename(path, target)
    except FileNotFoundError:
        return None  # another reader moved it first (and said so)
    except OSError as exc:  # a read-only folder: ignore the file, say so once
        _warn_once(path, f"{problem}; {what} (cannot move it aside: {exc.strerror or exc})")
        return None
    log.warning("%s: %s; moved aside to %s; %s", path, problem, target.name, what)
    return target


def read_record_file(path: Path, job_id: str | None = None) -> dict[str, Any] | None:
    """The one reader of job records: the record in ``path``, validated against the record
    schema (:mod:`bench.store.schema`), or None when there is none.

    A damaged or foreign file (unreadable, not JSON, not an object, a field of the wrong type,
    another job's id) counts as no record: it is moved aside (:func:`set_aside`) with one
    warning naming the file and the problem, so that resuming recomputes the job.
    ``job_id``: the job the file must hold (the name of a ``jobs/<job-id>.json``).
    """
    path = Path(path)
    try:
        raw: bytes | None = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raw = None
        record, problem = None, f"unreadable ({exc.strerror or exc})"
    else:
        record, problem = _parse_bytes(raw)
    if problem is None:
        problem = record_problem(record, job_id)
    if problem is None:
        return record
    what = "the job counts as not done (a rerun recomputes it)"
    if raw is not None:
        set_aside(path, problem, what, raw)
    else:
        _warn_once(path, f"{problem}; ignoring it")
    return None


def _parse_bytes(data: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(data.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text (a damaged or foreign file)"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError as exc:
        if not data.strip():
            return None, "empty file (truncated)"
        return None, f"not valid JSON ({exc})"


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
        """The job's validated record, or None (absent, or damaged and moved aside)."""
        return read_record_file(self.record_path(job_id), job_id)

    def is_done(self, job_id: str) -> bool:
        record = self.read_record(job_id)
        return record is not None and record.get(Field.STATUS) == Status.OK

    def write_record(self, record: dict[str, Any]) -> Path:
        path = self.record_path(record[Field.JOB_ID])
        write_json(path, record)
        return path

    def write_scores(self, job_id: str, frame: pd.DataFrame) -> Path:
        path = self.jobs_dir / f"{job_id}.scores.csv"
        _atomic_write_text(path, frame.to_csv(index=False))
        return path

    def maps_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.maps.npz"

    def write_maps(self, job_id: str, arrays: dict[str, Any]) -> Path:
        """Arrays for the qualitative grid (``bench.evaluation.examples``), compressed, atomic."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = self.maps_path(job_id)
        _atomic_write(path, buffer.getvalue())
        return path

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "manifest.json"

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        if self.manifest_state() == "foreign":
            raise ConfigError(
                f"{self.manifest_path}: not a bench manifest (it belongs to something else); "
                "not overwriting it: choose another --run-id or --results-dir"
            )
        write_json(self.manifest_path, manifest)

    def _judge_manifest(self, raw: bytes) -> tuple[Any, str | None, bool]:
        """``(value, problem, foreign)`` of the manifest's bytes. Foreign: a JSON object that
        is no bench manifest, in a folder without job records (another program's file). With
        ``jobs/`` beside it, the folder is a run and such a file is a damaged manifest."""
        value, problem = _parse_bytes(raw)
        foreign = isinstance(value, dict) and not is_bench_manifest(value)
        if problem is None and foreign and not self.jobs_dir.is_dir():
            return value, "not a bench manifest", True
        return value, problem or manifest_problem(value), False

    def manifest_state(self) -> str:
        """``absent``, ``ok``, ``damaged`` (a bench manifest that cannot be used) or
        ``foreign`` (see :meth:`_judge_manifest`); reads only."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return "absent"
        except OSError:
            return "damaged"
        _, problem, foreign = self._judge_manifest(raw)
        return "foreign" if foreign else ("damaged" if problem else "ok")

    def read_manifest(self) -> dict[str, Any] | None:
        """The validated manifest, or None. A damaged one is moved aside (one warning; the next
        ``bench run`` rebuilds it from its configuration and the records); a foreign one is
        ignored with one warning and left where it is."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            _warn_once(self.manifest_path, f"unreadable ({exc.strerror or exc}); ignoring it")
            return None
        value, problem, foreign = self._judge_manifest(raw)
        if foreign:
            _warn_once(self.manifest_path, f"{problem}; ignoring it")
            return None
        if problem is None:
            return value
        what = "the run's manifest is rebuilt by the next bench run of it"
        set_aside(self.manifest_path, problem, what, raw)
        return None

    def update_manifest(
        self, update: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read-modify-write the manifest under the run lock (another process may share it).
        ``update`` receives None when there is no usable manifest, and rebuilds it."""
        with self.lock():
            manifest = update(self.read_manifest())
            self.write_manifest(manifest)
        return manifest

    def records(self) -> list[dict[str, Any]]:
        """Every valid job record of the run (damaged ones are moved aside, see
        :func:`read_record_file`)."""
        if not self.jobs_dir.is_dir():
            return []
        found = (
            read_record_file(p, p.name.removesuffix(".json"))
            for p in sorted(self.jobs_dir.glob("*.json"))
        )
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
            try:
                return pd.read_csv(path)
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: unreadable records CSV ({exc})") from None
        if path.suffix == ".json":
            record, problem = _parse_json(path)
            problem = problem or record_problem(record)
            if problem is not None:
                raise DataError(f"{path}: {problem}; expected a bench job record")
            return records_frame([record])
        raise DataError(f"{path}: expected a run folder, records.csv or a job .json")
    records = [r for run_dir in run_folders(path) for r in RunStore(run_dir).records()]
    if not records:
        raise DataError(f"{path}: no job records (expected jobs/*.json or */jobs/*.json)")
    return records_frame(records)


def run_folders(path: Path) -> list[Path]:
    """The run folders at ``path``: itself when it holds ``jobs/``, else every folder below
    it at any depth that does (a study's runs grouped in sub-folders: ``cpu/sweep/<run>``,
    ``cpu/study/<run>``), in path order; a run folder's own sub-folders are not searched."""
    if (path / "jobs").is_dir():
        return [path]
    found: list[Path] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink()):
        found += run_folders(child)
    return found


#: A run folder name (``--run-id``): one path component of safe characters.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str, flag: str = "--run-id") -> str:
    """``run_id`` if it is a safe folder name, else a ConfigError (exit 2) saying why: it is
    joined to ``--results-dir``, so ``../x`` or ``/x`` would write anywhere."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ConfigError(
            f"{flag} {run_id!r}: expected one folder name of letters, digits, '.', '_' and '-' "
            "(at most 128, not starting with '.' or '-'), not a path"
        )
    return run_id


def open_run_folder(results_dir: Path, run_id: str) -> RunStore:
    """The store of ``results_dir/run_id``, created if absent. Refuses (ConfigError, exit 2)
    an unsafe ``run_id`` and an existing folder that is not a bench run folder: one with a
    foreign manifest.json, or with other files and neither a bench manifest nor ``jobs/``."""
    store = RunStore(Path(results_dir) / check_run_id(run_id))
    folder = store.run_dir
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder; choose another --run-id")
    if folder.is_dir():
        state = store.manifest_state()
        ours = state == "ok" or (state in ("absent", "damaged") and store.jobs_dir.is_dir())
        if not ours and (state != "absent" or any(folder.iterdir())):
            why = (
                "its manifest.json is not a bench manifest"
                if state == "foreign"
                else ("it has no bench manifest")
            )
            raise ConfigError(
                f"{folder}: not a bench run folder ({why}); not writing into it: choose "
                "another --run-id or --results-dir"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--results-dir {results_dir}: cannot create {folder} "
            f"({exc.strerror or exc}); expected a writable folder"
        ) from None
    return store
