"""The closing summary of ``bench ablate``: per varied parameter, mean ± std over seeds.

Reads the records of an ablation (``record["varied"]``, see :mod:`bench.execution.ablate`) and
the ablation's manifest entry (``{"method", "mode", "grid", "base"}``), both plain data. One at
a time, a parameter's table holds the jobs whose other grid parameters are at their base
values; in a Cartesian grid it averages over the other parameters' values too.

>>> ablation_frames([], {"method": "m", "mode": "cartesian", "grid": {}, "base": {}})
{}
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.store.runs import records_frame
from bench.store.schema import AblationInfo, Field, FitInfo, Status, Timing, flat
from bench.util.formatting import UNDEFINED, spread

# (column title, record column in records_frame, digits)
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("AUROC", flat(Field.METRICS, "auroc"), 3),
    ("pixel AUROC", flat(Field.METRICS, "pixel_auroc"), 3),
    ("F1", flat(Field.METRICS, "f1"), 3),
    ("fit s", flat(Field.TIMING, Timing.FIT_S), 1),
    ("ms/image", flat(Field.TIMING, Timing.MS_PER_IMAGE), 1),
    ("train s", flat(Field.FIT_INFO, FitInfo.TRAIN_SECONDS), 1),
    ("train mem MB", flat(Field.FIT_INFO, FitInfo.TRAIN_PEAK_MEM_MB), 0),
)


def _mean_std(values: pd.Series, digits: int) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return UNDEFINED
    return spread(v.mean(), v.std(ddof=1), len(v), digits)


def value_key(value: Any) -> str:
    """A grid value as the tables name it (lists, i.e. tuples in JSON, as tuples)."""
    return str(tuple(value)) if isinstance(value, list) else str(value)


def ablation_frames(records: list[dict[str, Any]], ablation: dict[str, Any]) -> dict[str, Any]:
    """Per varied parameter, the rows of the summary: (dataset, value) -> mean ± std strings."""
    ok = [r for r in records if r.get(Field.STATUS) == Status.OK and Field.VARIED in r]
    frame = records_frame(ok)
    out: dict[str, Any] = {}
    if frame.empty:
        return out
    grid, base = ablation[AblationInfo.GRID], ablation[AblationInfo.BASE]
    one_at_a_time = ablation[AblationInfo.MODE] == AblationInfo.ONE_AT_A_TIME
    for param, values in grid.items():
        sub = frame
        if one_at_a_time:
            for other in grid:
                if other != param:
                    sub = sub[
                        sub[flat(Field.VARIED, other)].map(value_key) == value_key(base[other])
                    ]
        rows = []
        order = [value_key(v) for v in values]
        if one_at_a_time and value_key(base[param]) not in order:
            order = [value_key(base[param]), *order]
        for dataset, by_dataset in sub.groupby(Field.DATASET, sort=False):
            keys = by_dataset[flat(Field.VARIED, param)].map(value_key)
            for value in order:
                cell = by_dataset[keys == value]
                if cell.empty:
                    continue
                row = {Field.DATASET: dataset, param: value, "n": len(cell)}
                for title, column, digits in TABLE_COLUMNS:
                    row[title] = _mean_std(cell[column], digits) if column in cell else UNDEFINED
                rows.append(row)
        out[param] = pd.DataFrame(rows)
    return out
