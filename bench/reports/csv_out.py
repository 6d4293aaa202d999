"""Tables as CSV: the numbers behind every table in long form, for reanalysis.

(Not named ``csv.py``: run from this folder, that name would shadow the standard library.)

One row per (row, column group, column) cell: ``row, group, column, mean, std, n, rank``
(``rank`` 1 = bold in the LaTeX table, 2 = underlined, 0 = neither), full precision.
"""

from __future__ import annotations

from pathlib import Path

from bench.reports.table_model import Table


def write_csv(table: Table, folder: Path) -> Path:
    path = Path(folder) / f"{table.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.tidy().to_csv(path, index=False)
    return path
