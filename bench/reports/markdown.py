"""Tables as GitHub-flavoured Markdown, for READMEs and CI logs.

Cells read ``0.67 ± 0.02``; the best per column is **bold** and the second best *italic*
(Markdown has no underline). Column groups (datasets) are folded into the header
(``AUROC · grass``) when there is more than one. A pipe table is a few lines of joining, which
``DataFrame.to_markdown`` would do through the extra ``tabulate`` dependency.

>>> cell_text(0.6666, 0.0212, 2, 2)
'0.67 ± 0.02'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.reports.table_model import DAGGER, REFERENCE, SUBSTITUTE, Table

MARKERS = {DAGGER: "†", SUBSTITUTE: "§", REFERENCE: "‡", "dash": "--"}


def cell_text(
    mean: float,
    std: float,
    n: int,
    digits: int,
    marker: str = "",
    interval: tuple[float, float] | None = None,
) -> str:
    if mean is None or not np.isfinite(mean):
        return "--"
    text = f"{mean:.{digits}f}"
    if interval is not None and np.isfinite(interval).all():
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    elif n > 1 and std is not None and np.isfinite(std):
        text += f" ± {std:.{digits}f}"
    return text + (f"<sup>{marker}</sup>" if marker else "")


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(table: Table, heading_level: int = 3) -> str:
    ranks = table.ranks()
    groups = list(dict.fromkeys(c[0] for c in table.mean.columns))
    headers = [c[-1] if len(groups) == 1 else f"{c[-1]} · {c[0]}" for c in table.mean.columns]
    corner = "Method" if table.mean.index.name in (None, "method") else table.mean.index.name
    lines = [
        f"{'#' * heading_level} {table.name}" + (f" ({groups[0]})" if len(groups) == 1 else ""),
        "",
        f"{table.caption} Best per column in bold, second best in italics.",
        "",
        "| " + " | ".join(_escape(h) for h in [corner, *headers]) + " |",
        "|" + "---|" + "---:|" * len(headers),
    ]
    for i, row in enumerate(table.mean.index):
        label = _escape(row) + "".join(MARKERS.get(m, "") for m in table.row_markers.get(row, []))
        cells = []
        for j, col in enumerate(table.mean.columns):
            marker = "" if table.cell_markers is None else str(table.cell_markers.iat[i, j] or "")
            text = cell_text(
                table.mean.iat[i, j],
                table.std.iat[i, j],
                int(table.n.iat[i, j]),
                table.digits_of(col[-1]),
                marker,
                table.interval_of(i, j),
            )
            rank = ranks.iat[i, j]
            cells.append(f"**{text}**" if rank == 1 else f"*{text}*" if rank == 2 else text)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    if table.notes:
        lines.append("")
        lines += [
            (MARKERS.get(n.marker, "") + " " if n.marker else "") + n.text for n in table.notes
        ]
    return "\n".join(lines) + "\n"


def write_markdown(table: Table, folder: Path) -> Path:
    path = Path(folder) / f"{table.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_markdown(table), encoding="utf-8")
    return path
