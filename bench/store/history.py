"""Results history: the runs stored under ``results/``, oldest first, with headline metrics.

One row per (run, method variant, dataset): the run's name (``bench run --name``) or id, when
it started, the git commit it ran at (``-dirty`` when the checkout had uncommitted changes),
the seeds that finished, and the mean over those seeds of a few headline numbers. Runs are
found as folders holding ``jobs/`` up to two levels below the folder given, so both
``results/runs/<id>`` and ``results/reference/<name>`` show up.

:func:`resolve_run` lets other commands take a run's name or id where a path is expected
(``bench compare nightly-0412 my-change``).

>>> from pathlib import Path
>>> history_frame(Path("no-such-folder")).empty
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.store.runs import RunStore
from bench.store.schema import Field, Manifest, Status, Timing
from bench.util.errors import DataError

DEFAULT_METRICS = ("auroc", "pixel_auroc", "f1", Timing.MS_PER_IMAGE)
_PATTERNS = ("jobs", "*/jobs", "*/*/jobs")


def run_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (or ``root`` itself) that hold job records."""
    root = Path(root)
    found = {p.parent for pattern in _PATTERNS for p in root.glob(pattern) if p.is_dir()}
    return sorted(found)


def _value(record: dict[str, Any], metric: str) -> float | None:
    for section in (Field.METRICS, Field.TIMING):
        value = (record.get(section) or {}).get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _variant(record: dict[str, Any]) -> str:
    preset = record.get(Field.PRESET)
    suffix = f" ({preset})" if preset and preset != "paper" else ""
    return f"{record.get(Field.METHOD, '?')}{suffix} #{str(record.get(Field.PARAMS_HASH, ''))[:6]}"


def run_rows(folder: Path, metrics: tuple[str, ...] = DEFAULT_METRICS) -> list[dict[str, Any]]:
    """Rows of one run folder: one per method variant and dataset."""
    store = RunStore(folder)
    manifest = store.read_manifest() or {}
    records = store.records()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((_variant(rec), str(rec.get(Field.DATASET, "?"))), []).append(rec)
    started = manifest.get(Manifest.CREATED_AT) or min(
        (str(r.get(Field.STARTED_AT)) for r in records if r.get(Field.STARTED_AT)), default=None
    )
    commit = manifest.get(Manifest.GIT_COMMIT) or next(
        (r.get(Field.GIT_COMMIT) for r in records if r.get(Field.GIT_COMMIT)), None
    )
    rows = []
    for (variant, dataset), recs in sorted(groups.items()):
        ok = [r for r in recs if r.get(Field.STATUS) == Status.OK]
        row: dict[str, Any] = {
            "run": manifest.get(Manifest.NAME) or manifest.get(Manifest.RUN_ID) or folder.name,
            Field.RUN_ID: manifest.get(Manifest.RUN_ID) or folder.name,
            "path": str(folder),
            "started": started,
            "finished": manifest.get(Manifest.FINISHED_AT),
            "commit": commit,
            Field.METHOD: variant,
            Field.DATASET: dataset,
            Manifest.SEEDS: ",".join(str(s) for s in sorted(r.get(Field.SEED, -1) for r in ok)),
            "ok": f"{len(ok)}/{len(recs)}",
        }
        for metric in metrics:
            values = [v for v in (_value(r, metric) for r in ok) if v is not None]
            row[metric] = sum(values) / len(values) if values else None
        rows.append(row)
    return rows


def history_frame(
    root: Path,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    name: str | None = None,
    method: str | None = None,
    last: int | None = None,
) -> pd.DataFrame:
    """Every run under ``root`` (filtered by run name or id, method), oldest first; ``last``
    keeps the rows of the newest ``last`` runs."""
    rows = [row for folder in run_folders(root) for row in run_rows(folder, metrics)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    if name is not None:
        frame = frame[(frame["run"] == name) | (frame[Field.RUN_ID] == name)]
    if method is not None:
        frame = frame[frame[Field.METHOD].str.split(" ").str[0] == method]
    order = ["started", "finished", Field.RUN_ID, Field.METHOD, Field.DATASET]
    frame = frame.sort_values(order, na_position="first")
    if last is not None:
        keep = list(dict.fromkeys(frame[Field.RUN_ID]))[-last:] if last > 0 else []
        frame = frame[frame[Field.RUN_ID].isin(keep)]
    return frame.reset_index(drop=True)


def resolve_run(ref: str | Path, root: Path) -> Path:
    """``ref`` as a path if it exists, else the newest run under ``root`` named or with id
    ``ref``. A DataError says what was looked for when neither exists."""
    path = Path(ref)
    if path.exists():
        return path
    matches = []
    for folder in run_folders(root):
        manifest = RunStore(folder).read_manifest() or {}
        if str(ref) in (manifest.get(Manifest.NAME), manifest.get(Manifest.RUN_ID), folder.name):
            matches.append((str(manifest.get(Manifest.CREATED_AT) or ""), folder))
    if not matches:
        raise DataError(
            f"{ref}: no such results folder or file, and no run of that name or id under {root}"
        )
    return max(matches)[1]
