"""``index.html``: one self-contained page with every table, figure and the run manifest.

Figures are embedded as base64 PNG (the page works when mailed or opened from an archive) with
links to the PDFs beside it; tables are rendered by pandas ``Styler.to_html`` with the same
bold / underline ranks as the LaTeX ones, each linked to its .tex, .md and .csv.
"""

from __future__ import annotations

import base64
import functools
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import pandas as pd

from bench.reports.markdown import MARKERS, cell_markup
from bench.reports.table_model import Table
from bench.store.schema import Field, Manifest

CSS = """
:root { --ink: #1f2328; --muted: #57606a; --rule: #d0d7de; --band: #f6f8fa; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       max-width: 1180px; margin: 0 auto; padding: 1.5em 1.2em 4em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.3em; border-bottom: 2px solid var(--rule); padding-bottom: .2em;
     margin-top: 2.2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
.lede, .intro { color: var(--muted); max-width: 60em; }
nav.toc { background: var(--band); border: 1px solid var(--rule); border-radius: 6px;
          padding: .6em 1.2em; margin: 1em 0 1.5em; font-size: .92em; }
nav.toc ol { margin: .3em 0; padding-left: 1.4em; }
nav.toc a { text-decoration: none; }
.scroll { overflow: auto; max-height: 80vh; border: 1px solid var(--rule); border-radius: 6px; }
table { border-collapse: separate; border-spacing: 0; font-size: .88em; width: max-content;
        min-width: 100%; }
th, td { padding: .3em .7em; border-bottom: 1px solid var(--rule); text-align: right;
         font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th { position: sticky; top: 0; background: var(--band); z-index: 1; }
thead tr:nth-child(2) th { top: 1.9em; }
th.row_heading, th.blank, th.index_name { text-align: left; position: sticky; left: 0;
                                          background: #fff; }
thead th.blank { background: var(--band); z-index: 2; }
tbody tr:hover td, tbody tr:hover th { background: #fff8c5; }
caption { caption-side: top; text-align: left; font-size: .92em; color: var(--muted);
          padding: .5em .7em; white-space: normal; }
.table-block { margin: 1em 0 1.8em; }
ul.notes { font-size: .85em; color: var(--muted); margin: .4em 0; padding-left: 1.2em; }
.marker { font-weight: 600; color: var(--ink); }
p.notes { font-size: .85em; color: var(--muted); }
.links a, a.filelink { margin-right: .8em; font-size: .82em; color: var(--muted); }
.figures { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; flex: 1 1 100%; }
figure.half { flex: 0 1 calc(50% - .6em); min-width: 320px; }
figure.wide img { max-width: 1000px; }
figure img { width: 100%; height: auto; border: 1px solid var(--rule); border-radius: 4px; }
figcaption { font-size: .85em; color: var(--muted); margin-top: .3em; }
details { margin: .8em 0; } summary { cursor: pointer; color: var(--muted); }
pre { background: var(--band); padding: .8em; overflow-x: auto; font-size: .8em; }
@media print {
  nav.toc, .links, a.filelink, details { display: none; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  .scroll { max-height: none; overflow: visible; border: none; }
  thead th { position: static; }
  .table-block, figure { break-inside: avoid; }
  figure.half { flex-basis: calc(50% - .6em); }
  h2 { break-after: avoid; }
}
"""


def table_html(table: Table) -> str:
    """The table with Styler: '0.67 ± 0.02' cells, best bold, second underlined, notes under."""
    cells = table.cell_texts(cell_markup)
    index = [
        r + "".join(MARKERS.get(m, "") for m in table.row_markers.get(r, []))
        for r in table.mean.index
    ]
    display = pd.DataFrame(cells, index=index, columns=table.mean.columns)
    ranks = table.ranks().to_numpy()
    css = np.where(
        ranks == 1, "font-weight: bold;", np.where(ranks == 2, "text-decoration: underline;", "")
    )
    styler = (
        display.style.apply(lambda _: css, axis=None)
        .set_caption(
            html.escape(f"{table.caption} Best per column in bold, second best underlined.")
        )
        .format_index(escape="html", axis=0)
        .format_index(escape="html", axis=1)
    )
    return styler.to_html()


@dataclass
class PageFigure:
    name: str
    caption: str
    files: dict[str, Path]  # "png" (embedded), "pdf" (linked)
    size: Literal["half", "wide"] = "wide"


@dataclass
class Section:
    """A part of the page: tables, then figures, then sub-sections (a dataset, a device)."""

    id: str
    title: str
    intro: str = ""
    tables: list[tuple[Table, dict[str, Path]]] = field(default_factory=list)
    figures: list[PageFigure] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.tables or self.figures or any(not c.is_empty() for c in self.children))


def _manifest_rows(manifests: list[dict[str, Any]]) -> str:
    rows = []
    for m in manifests:
        env = m.get(Manifest.ENVIRONMENT) or {}
        packages = env.get("packages") or {}
        rows.append(
            {
                "run": m.get(Manifest.RUN_ID),
                "created": m.get(Manifest.CREATED_AT),
                "finished": m.get(Manifest.FINISHED_AT),
                "commit": m.get(Manifest.GIT_COMMIT),
                "device": m.get(Manifest.DEVICE_NAME) or m.get(Manifest.DEVICE),
                "preset": m.get(Manifest.PRESET),
                "seeds": ", ".join(map(str, m.get(Manifest.SEEDS) or [])),
                "python": env.get("python"),
                "torch": packages.get("torch"),
                "bench": packages.get("bench"),
            }
        )
    return pd.DataFrame(rows).style.hide(axis="index").to_html() if rows else ""


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("index.html.j2")


def render_index(
    title: str,
    lede: str,
    sections: list[Section],
    manifests: list[dict[str, Any]],
    failed: pd.DataFrame,
    out_dir: Path,
    notes: list[str] | None = None,
) -> str:
    """The page: a table of contents, the sections, then the run manifest folded away. Figures
    are embedded (the page opens from disk or a mail); files are linked relative to
    ``out_dir``."""

    def rel(path: Path) -> str:
        return Path(path).resolve().relative_to(Path(out_dir).resolve()).as_posix()

    def view(section: Section) -> dict[str, Any]:
        return {
            "id": section.id,
            "title": section.title,
            "intro": section.intro,
            "tables": [
                {
                    "table": table,
                    "html": table_html(table),
                    "notes": [(MARKERS.get(n.marker, ""), n.text) for n in table.notes],
                    "links": [(f".{kind}", rel(path)) for kind, path in files.items()],
                }
                for table, files in section.tables
            ],
            "figures": [
                {
                    "name": fig.name,
                    "caption": fig.caption,
                    "size": fig.size,
                    "png_base64": base64.b64encode(fig.files["png"].read_bytes()).decode("ascii"),
                    "links": [(f".{k}", rel(p)) for k, p in fig.files.items() if k != "png"],
                }
                for fig in section.figures
            ],
            "children": [view(c) for c in section.children if not c.is_empty()],
        }

    cols = [c for c in (Field.METHOD, Field.DATASET, Field.SEED, Field.ERROR) if c in failed]
    return _template().render(
        title=title,
        lede=lede,
        css=CSS,
        sections=[view(s) for s in sections if not s.is_empty()],
        notes=notes or [],
        failed_count=len(failed),
        failed_html=failed[cols].style.hide(axis="index").to_html() if not failed.empty else "",
        manifest_html=_manifest_rows(manifests),
        manifest_json=json.dumps(manifests, indent=2, sort_keys=True, default=str),
    )
