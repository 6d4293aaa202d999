"""Tables as GitHub-flavoured Markdown, for READMEs and CI logs.

Cells read ``0.67 ± 0.02``; the best per column is **bold** and the second best *italic*
(Markdown has no underline). Column groups (datasets) are folded into the header
(``AUROC · grass``) when there is more than one. A pipe table is a few lines of joining, which
``DataFrame.to_markdown`` would do through the extra ``tabulate`` dependency.

>>> cell_markup("0.67 ± 0.02", "*")
'0.67 ± 0.02<sup>*</sup>'
"""

from __future__ import annotations

from pathlib import Path

from bench.reports.table_model import DAGGER, FLAGGED, REFERENCE, SUBSTITUTE, Table
from bench.store.schema import Field
from bench.util.formatting import UNDEFINED

MARKERS = {DAGGER: "†", SUBSTITUTE: "§", REFERENCE: "‡", FLAGGED: "¶", "dash": UNDEFINED}


def cell_markup(text: str, marker: str) -> str:
    """A cell's number (:meth:`Table.cell_texts`) with its marker as a superscript."""
    return text + (f"<sup>{marker}</sup>" if marker else "")


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(table: Table, heading_level: int = 3) -> str:
    ranks = table.ranks()
    texts = table.cell_texts(cell_markup)
    groups = list(dict.fromkeys(c[0] for c in table.mean.columns))
    headers = [c[-1] if len(groups) == 1 else f"{c[-1]} · {c[0]}" for c in table.mean.columns]
    corner = "Method" if table.mean.index.name in (None, Field.METHOD) else table.mean.index.name
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
        for j, text in enumerate(texts[i]):
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
