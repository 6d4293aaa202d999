r"""Tables as LaTeX that pastes into a paper unchanged: booktabs rules, caption, label, notes.

Rendering goes through pandas ``Styler.to_latex`` (the maintained path; no hand-built rows):
cells read ``$0.67\pm0.02$`` (std left out for one seed), the best per column is set with
``{\boldmath ...}`` (so that the digits *and* the ``\pm`` inside math mode turn bold, which
``\textbf`` would not do) and the second best ``\underline``. The only package needed is
``booktabs`` (see :data:`PREAMBLE`); column groups get a ``\cmidrule`` and the notes sit under
the table in ``\footnotesize``.

>>> latex_escape("mvtec:magnetic_tile 50% ±")
'mvtec:magnetic\\_tile 50\\% $\\pm$'
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.reports.table_model import DAGGER, FLAGGED, REFERENCE, SUBSTITUTE, Table
from bench.store.schema import Field
from bench.util.formatting import LATEX, UNDEFINED

#: What a document needs to \input the tables.
PREAMBLE = "\\documentclass{article}\n\\usepackage{booktabs}\n"

# Math-mode daggers: the text-mode ones need the TS1 font, which a bare TeX install would
# first have to generate with METAFONT.
MARKERS = {
    DAGGER: "$^{\\dagger}$",
    SUBSTITUTE: "$^{\\S}$",
    REFERENCE: "$^{\\ddagger}$",
    FLAGGED: "$^{\\P}$",
    "dash": UNDEFINED,
}

RANK_TEXT = "Best per column in bold, second best underlined."

_SPECIAL = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
    "±": "$\\pm$",
    "†": "$\\dagger$",
    "‡": "$\\ddagger$",
    "§": "\\S{}",
}
_SPECIAL_RE = re.compile("|".join(re.escape(k) for k in _SPECIAL))


def latex_escape(text: str) -> str:
    """Plain text (method and dataset names, captions) made safe for LaTeX."""
    return _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], str(text))


def cell_markup(text: str, marker: str) -> str:
    """A cell's number (:meth:`Table.cell_texts` in LaTeX notation) in math mode, with its
    marker as a superscript: ``$0.67\\pm0.02^{*}$``."""
    return f"${text}" + (f"^{{{marker}}}" if marker else "") + "$"


def _row_label(label: str, markers: list[str]) -> str:
    return latex_escape(label) + "".join(MARKERS[m] for m in markers if m in MARKERS)


def _display(table: Table) -> pd.DataFrame:
    cells = table.cell_texts(cell_markup, LATEX)
    index = [_row_label(r, table.row_markers.get(r, [])) for r in table.mean.index]
    columns = pd.MultiIndex.from_tuples(
        [tuple(latex_escape(c) for c in col) for col in table.mean.columns],
        # The row header sits in the corner, on the level of the column headers.
        names=[None] * (table.mean.columns.nlevels - 1) + [latex_escape(_corner(table))],
    )
    return pd.DataFrame(cells, index=index, columns=columns)


def _corner(table: Table) -> str:
    name = table.mean.index.name
    return "Method" if name in (None, Field.METHOD) else str(name)


def _styles(table: Table) -> pd.DataFrame:
    ranks = table.ranks().to_numpy()
    css = np.where(ranks == 1, "boldmath: --wrap;", np.where(ranks == 2, "underline: --rwrap;", ""))
    return css


def _group_rules(table: Table) -> str:
    r"""``\cmidrule(lr){2-8}`` under each column group's name."""
    groups = list(dict.fromkeys(c[0] for c in table.mean.columns))
    rules, start = [], 2
    for group in groups:
        width = sum(1 for c in table.mean.columns if c[0] == group)
        rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return " ".join(rules)


def _notes(table: Table) -> str:
    if not table.notes:
        return ""
    parts = [
        (MARKERS.get(n.marker, "") + "~" if n.marker else "") + latex_escape(n.text)
        for n in table.notes
    ]
    return "\\par\\smallskip\n{\\footnotesize " + " \\quad\n".join(parts) + "\\par}\n"


def to_latex(table: Table) -> str:
    """The table as one ``table`` float: caption, label, booktabs rules, notes."""
    display = _display(table)
    css = _styles(table)
    styler = display.style.apply(lambda _: css, axis=None)
    wide = display.shape[1] > 6
    tex = styler.to_latex(
        # table* spans both columns of a two-column paper; a no-op in a one-column one.
        environment="table*" if wide else "table",
        position="tbp" if wide else "htbp",
        position_float="centering",
        hrules=True,
        column_format="l" + "c" * display.shape[1],
        multicol_align="c",
        caption=latex_escape(f"{table.caption} {RANK_TEXT}"),
        label=table.label,
    )
    # Styler has no option for these three; each is one line placed at a fixed anchor.
    if wide:  # smaller type and tighter columns, core LaTeX only
        tex = tex.replace(
            "\\centering\n", "\\centering\n\\small\n\\setlength{\\tabcolsep}{3pt}\n", 1
        )
    header_end = tex.index("\\\\\n", tex.index("\\toprule")) + 3
    tex = tex[:header_end] + _group_rules(table) + "\n" + tex[header_end:]
    end = "\\end{table*}" if wide else "\\end{table}"
    return tex.replace(end, _notes(table) + end)


def write_latex(table: Table, folder: Path) -> Path:
    path = Path(folder) / f"{table.name}.tex"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_latex(table), encoding="utf-8")
    return path


def standalone_document(tex_files: list[Path]) -> str:
    """A minimal article that ``\\input``s the tables: what the compile test builds."""
    body = "\n".join(f"\\input{{{Path(p).resolve().as_posix()}}}" for p in tex_files)
    return f"{PREAMBLE}\\begin{{document}}\n{body}\n\\end{{document}}\n"
