"""``bench report``: every table, figure and the index page of a results folder, in one go.

Layout of the output folder::

    index.html                  everything on one page (figures embedded), links to the files
    tables/<name>.tex|.md|.csv  main, timing, ablation_<method>_<param>
    tables.md                   all Markdown tables in one file (READMEs, CI logs)
    figures/<name>.pdf|.png     latency, fit_time, frontier, compute_train, compute_inference,
                                roc_<dataset>,
                                qualitative_<dataset>, ablation_<method>_<param>

Reads only the stored records and their side files; never reruns a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bench.reports import charts, latex, markdown, qualitative
from bench.reports.csv_out import write_csv
from bench.reports.html import render_index
from bench.reports.load import (
    ablations,
    grid_long,
    latency_long,
    load_run,
    reference_rows,
    reference_variants,
    scores_long,
)
from bench.reports.speed import speed_figures
from bench.reports.tables import ABLATION_METRICS, Table, all_tables
from bench.store.schema import Field, FitInfo, Timing, flat
from bench.util.errors import DataError


@dataclass
class ReportOutput:
    out_dir: Path
    index: Path
    tables: list[Table]
    files: dict[str, list[Path]] = field(default_factory=dict)  # "tex", "md", "csv", "pdf", "png"
    skipped: list[str] = field(default_factory=list)  # figures left out, and why


def slug(text: str) -> str:
    """A file-name-safe form of a method, dataset or parameter name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def write_report(
    source: Path, out_dir: Path, digits: int = 2, interval: str = "std"
) -> ReportOutput:
    """Write tables, figures and ``index.html`` for the records under ``source``."""
    data = load_run(source)
    ok = data.ok
    if ok.empty:
        raise DataError(f"{source}: no finished job records (status ok) to report on")
    out_dir = Path(out_dir)
    tables_dir, figures_dir = out_dir / "tables", out_dir / "figures"
    refs = reference_variants(ok, data.manifests)
    rows = reference_rows(ok, refs)
    sweeps = ablations(ok, refs)
    tables = all_tables(data, sweeps, digits, interval)
    result = ReportOutput(out_dir, out_dir / "index.html", tables)

    table_files = []
    for table in tables:
        files = {
            "tex": latex.write_latex(table, tables_dir),
            "md": markdown.write_markdown(table, tables_dir),
            "csv": write_csv(table, tables_dir),
        }
        table_files.append((table, files))
        for kind, path in files.items():
            result.files.setdefault(kind, []).append(path)
    (out_dir / "tables.md").write_text(
        "\n".join(markdown.to_markdown(t) for t in tables), encoding="utf-8"
    )

    figures: list[tuple[str, dict[str, Path]]] = []

    def save(fig: Figure, name: str, caption: str) -> None:
        pdf, png = charts.save_figure(fig, figures_dir / name)
        figures.append((caption, {"png": png, "pdf": pdf}))
        result.files.setdefault("pdf", []).append(pdf)
        result.files.setdefault("png", []).append(png)

    def save_unless_empty(
        frame: pd.DataFrame, why_not: str, draw: Callable[[pd.DataFrame], Figure], name: str,
        caption: str,
    ) -> None:  # fmt: skip
        """Draw ``frame``, or say why the figure is left out when there is nothing to draw."""
        if frame.empty:
            result.skipped.append(why_not)
        else:
            save(draw(frame), name, caption)

    latency = latency_long(rows)
    save_unless_empty(
        latency, "latency: no timing in the records", charts.latency_figure, "latency",
        "Inference latency per method.",
    )  # fmt: skip
    for name, fig, caption in speed_figures(ok):  # bench speed: every variant, batch sweep
        save(fig, name, caption)
    if (
        flat(Field.TIMING, Timing.FIT_S) in rows
        and rows[flat(Field.TIMING, Timing.FIT_S)].notna().any()
    ):
        save(charts.fit_time_figure(rows), "fit_time", "Fit (training) time per method.")
    if {flat(Field.TIMING, Timing.IMAGES_PER_S)} <= set(rows) and any(
        c in rows for c in (flat(Field.METRICS, "f1"), flat(Field.METRICS, "f1_max"))
    ):
        save(charts.frontier_figure(rows), "frontier", "Throughput vs F1: the frontier.")
    for cost, name, caption in (
        (
            flat(Field.FIT_INFO, FitInfo.TRAIN_GFLOPS),
            "compute_train",
            "Quality against training compute",
        ),
        (Field.GFLOPS_PER_IMAGE, "compute_inference", "Quality against inference compute"),
    ):
        save_unless_empty(
            charts.compute_points(ok, cost, "auroc"),
            f"{name}: no record with {cost} and an image AUROC",
            lambda _, cost=cost: charts.compute_figure(ok, cost, refs),
            name,
            f"{caption}: every variant of every method, mean ± std over seeds; ringed: the "
            "main-table setting.",
        )
    for dataset in dict.fromkeys(rows[Field.DATASET]):
        part = rows[rows[Field.DATASET] == dataset]
        save_unless_empty(
            scores_long(data, part),
            f"roc {dataset}: no <job>.scores.csv beside the records",
            lambda scores, d=dataset: charts.roc_figure(scores, f"Image-level ROC, {d}"),
            f"roc_{slug(dataset)}",
            f"ROC curves on {dataset} (mean over seeds, ± std band).",
        )
        save_unless_empty(
            grid_long(data, part, dataset),
            f"qualitative {dataset}: no <job>.maps.npz (older run?)",
            lambda grid, d=dataset: qualitative.qualitative_grid(
                grid, f"{d}: input, ground truth, maps"
            ),
            f"qualitative_{slug(dataset)}",
            f"Qualitative results on {dataset}: first test images of each defect type.",
        )
    for sweep in sweeps:
        save(
            charts.ablation_figure(
                sweep.rows,
                sweep.param,
                ABLATION_METRICS,
                sweep.reference,
                f"{sweep.method}: {sweep.param}",
            ),
            f"ablation_{slug(sweep.method)}_{slug(sweep.param)}",
            f"Ablation of {sweep.method}.{sweep.param} (dotted: main-table setting).",
        )

    page = render_index(
        f"radar-bench report: {Path(source).name}",
        table_files,
        figures,
        data.manifests,
        data.failed,
        out_dir,
        notes=[f"Not drawn: {s}" for s in result.skipped],
    )
    result.index.write_text(page, encoding="utf-8")
    return result
