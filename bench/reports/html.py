"""``index.html``: one self-contained page with every table, figure and the run manifest.

Figures are embedded as base64 PNG (the page works when mailed or opened from an archive) with
links to the PDFs beside it; tables are rendered by pandas ``Styler.to_html`` with the same
bold / underline ranks as the LaTeX ones, each linked to its .tex, .md and .csv.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.reports.markdown import MARKERS, cell_markup
from bench.reports.table_model import Table
from bench.store.schema import Field, Manifest

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { padding: .25em .6em; border-bottom: 1px solid #ddd; text-align: right; }
th.row_heading, th.blank { text-align: left; }
caption { caption-side: top; text-align: left; font-size: .9em; color: #444;
          max-width: 900px; padding-bottom: .4em; }
.notes { font-size: .8em; color: #444; }
.links a { margin-right: 1em; font-size: .85em; }
figure { display: inline-block; margin: .5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .8em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
.scroll { overflow-x: auto; }
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
    notes = "".join(
        f"<div>{html.escape(MARKERS.get(n.marker, ''))} {html.escape(n.text)}</div>"
        for n in table.notes
    )
    return f'<div class="scroll">{styler.to_html()}</div><div class="notes">{notes}</div>'


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _manifest_summary(manifests: list[dict[str, Any]]) -> str:
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
    if not rows:
        return "<p>No manifest.json found beside the records.</p>"
    summary = pd.DataFrame(rows).style.hide(axis="index").to_html()
    full = html.escape(json.dumps(manifests, indent=2, sort_keys=True, default=str))
    return f"{summary}<details><summary>full manifests</summary><pre>{full}</pre></details>"


def render_index(
    title: str,
    tables: list[tuple[Table, dict[str, Path]]],
    figures: list[tuple[str, dict[str, Path]]],
    manifests: list[dict[str, Any]],
    failed: pd.DataFrame,
    out_dir: Path,
    notes: list[str] | None = None,
) -> str:
    """The page. ``tables``: (table, {"tex"|"md"|"csv": path}); ``figures``: (caption,
    {"png"|"pdf": path}); paths are linked relative to ``out_dir``."""

    def link(path: Path) -> str:
        rel = Path(path).resolve().relative_to(Path(out_dir).resolve()).as_posix()
        return f'<a href="{html.escape(rel)}">{html.escape(rel)}</a>'

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run</h2>",
        _manifest_summary(manifests),
    ]
    if notes:
        parts += [f'<p class="notes">{html.escape(n)}</p>' for n in notes]
    if not failed.empty:
        cols = [c for c in (Field.METHOD, Field.DATASET, Field.SEED, Field.ERROR) if c in failed]
        parts += [
            f"<h3>{len(failed)} failed job(s), left out of every table</h3>",
            failed[cols].style.hide(axis="index").to_html(),
        ]
    parts.append("<h2>Tables</h2>")
    for table, files in tables:
        links = " ".join(link(p) for p in files.values())
        parts += [f"<h3>{html.escape(table.name)}</h3>", table_html(table)]
        parts.append(f'<p class="links">{links}</p>')
    parts.append("<h2>Figures</h2>")
    for caption, files in figures:
        links = " ".join(link(p) for p in files.values())
        parts.append(
            f"<figure>{_img(files['png'])}<figcaption>{html.escape(caption)}<br>"
            f'<span class="links">{links}</span></figcaption></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
