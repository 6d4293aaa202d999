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
from bench.reports.html import PageFigure, Section, render_index
from bench.reports.load import (
    MAIN_TABLE_SETTING,
    ablations,
    grid_long,
    latency_long,
    load_run,
    preset_variants,
    reference_rows,
    reference_variants,
    scores_long,
)
from bench.reports.speed import speed_figures, speed_table
from bench.reports.table_model import Table
from bench.reports.tables import (
    ABLATION_METRICS,
    ablation_table,
    device_slug,
    devices,
    main_table,
    timing_tables,
)
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
    presets = preset_variants(ok, data.manifests)
    rows = reference_rows(ok, refs)
    sweeps = ablations(ok, refs)
    main = main_table(data, digits, interval=interval)
    timing = timing_tables(data)
    speed = speed_table(data)
    sweep_tables = [ablation_table(a, digits) for a in sweeps]
    tables = [t for t in (main, *timing, speed, *sweep_tables) if t is not None]
    result = ReportOutput(out_dir, out_dir / "index.html", tables)

    table_files: dict[str, tuple[Table, dict[str, Path]]] = {}
    for table in tables:
        files = {
            "tex": latex.write_latex(table, tables_dir),
            "md": markdown.write_markdown(table, tables_dir),
            "csv": write_csv(table, tables_dir),
        }
        table_files[table.name] = (table, files)
        for kind, path in files.items():
            result.files.setdefault(kind, []).append(path)
    (out_dir / "tables.md").write_text(
        "\n".join(markdown.to_markdown(t) for t in tables), encoding="utf-8"
    )

    def save(section: Section, fig: Figure, name: str, caption: str, size: str = "half") -> None:
        pdf, png = charts.save_figure(fig, figures_dir / name)
        section.figures.append(PageFigure(name, caption, {"png": png, "pdf": pdf}, size))
        result.files.setdefault("pdf", []).append(pdf)
        result.files.setdefault("png", []).append(png)

    def save_unless_empty(
        section: Section, frame: pd.DataFrame, why_not: str,
        draw: Callable[[pd.DataFrame], Figure], name: str, caption: str, size: str = "half",
    ) -> None:  # fmt: skip
        """Draw ``frame``, or say why the figure is left out when there is nothing to draw."""
        if frame.empty:
            result.skipped.append(why_not)
        else:
            save(section, draw(frame), name, caption, size)

    def tables_of(*names: str) -> list[tuple[Table, dict[str, Path]]]:
        return [table_files[n] for n in names if n in table_files]

    overview = Section(
        "results",
        "Results",
        "Image-level detection quality of every method on every dataset (mean ± std over "
        "seeds, or the bootstrap interval where asked); best per column in bold, second best "
        "underlined; markers are explained under each table.",
        tables_of("main"),
    )
    cost = Section(
        "cost",
        "Cost: time, memory and compute",
        "Times are per device: a CPU time and a GPU time never share a table or a chart.",
    )
    device_names = devices(ok)
    timing_names = [t.name for t in timing]
    for k, device in enumerate(device_names or [""]):
        part = rows if len(device_names) <= 1 else rows[rows[Field.DEVICE_NAME] == device]
        suffix = "" if len(device_names) <= 1 else f"_{device_slug(device)}"
        target = cost
        if len(device_names) > 1:
            target = Section(f"cost-{device_slug(device)}", f"On {device}")
            cost.children.append(target)
        target.tables += tables_of(timing_names[k]) if k < len(timing_names) else []
        _cost_figures(part, suffix, target, save, save_unless_empty)
    cost.tables += tables_of("speed")
    for name, fig, caption in speed_figures(ok):  # bench speed: every variant, batch sweep
        save(cost, fig, name, caption)
    for measure, name, caption in (
        (
            flat(Field.FIT_INFO, FitInfo.TRAIN_GFLOPS),
            "compute_train",
            "Quality against training compute",
        ),
        (Field.GFLOPS_PER_IMAGE, "compute_inference", "Quality against inference compute"),
    ):
        save_unless_empty(
            cost,
            charts.compute_points(ok, measure, "auroc"),
            f"{name}: no record with {measure} and an image AUROC",
            lambda _, measure=measure: charts.compute_figure(ok, measure, presets),
            name,
            f"{caption}: every variant of every method, one line per ablation axis, mean ± std "
            "over seeds; ringed: a variant run exactly at a preset (named); † random-init "
            "backbone, § substitute (ImageNet-Lite) backbone, as in the tables.",
        )
    per_dataset = Section("datasets", "Per dataset")
    for dataset in dict.fromkeys(rows[Field.DATASET]):
        part = rows[rows[Field.DATASET] == dataset]
        section = Section(f"dataset-{slug(dataset)}", str(dataset))
        per_dataset.children.append(section)
        save_unless_empty(
            section,
            scores_long(data, part),
            f"roc {dataset}: no <job>.scores.csv beside the records",
            lambda scores, d=dataset: charts.roc_figure(scores, f"Image-level ROC, {d}"),
            f"roc_{slug(dataset)}",
            f"ROC curves on {dataset} (mean over seeds, ± std band).",
        )
        save_unless_empty(
            section,
            grid_long(data, part, dataset),
            f"qualitative {dataset}: no <job>.maps.npz (older run?)",
            lambda grid, d=dataset: qualitative.qualitative_grid(
                grid, f"{d}: input, ground truth, maps"
            ),
            f"qualitative_{slug(dataset)}",
            f"Qualitative results on {dataset}: first test images of each defect type.",
            "wide",
        )
    ablation_section = Section(
        "ablations", "Ablations", "One parameter varied at a time around the main-table setting."
    )
    for sweep, table in zip(sweeps, sweep_tables, strict=True):
        name = f"ablation_{slug(sweep.key)}"
        child = Section(
            name.replace("_", "-"),
            f"{sweep.method}.{sweep.param}"
            + ("" if sweep.fixed_at == MAIN_TABLE_SETTING else f" (at {sweep.fixed_at})"),
            tables=tables_of(table.name) if table is not None else [],
        )
        ablation_section.children.append(child)
        save(
            child,
            charts.ablation_figure(
                sweep.rows,
                sweep.param,
                ABLATION_METRICS,
                sweep.reference,
                f"{sweep.method}: {sweep.param}",
            ),
            name,
            f"Ablation of {sweep.method}.{sweep.param}, every other parameter at "
            f"{sweep.fixed_at} (dotted: the base point).",
        )

    n_jobs, methods = len(ok), ok[Field.METHOD].nunique()
    page = render_index(
        f"radar-bench report: {Path(source).name}",
        f"{n_jobs} finished job(s) of {methods} method(s) on "
        f"{ok[Field.DATASET].nunique()} dataset(s); {', '.join(device_names) or 'unknown device'}.",
        [overview, cost, per_dataset, ablation_section],
        data.manifests,
        data.failed,
        out_dir,
        notes=[f"Not drawn: {s}" for s in result.skipped],
    )
    result.index.write_text(page, encoding="utf-8")
    return result


def _cost_figures(
    rows: pd.DataFrame,
    suffix: str,
    section: Section,
    save: Callable[..., None],
    save_unless_empty: Callable[..., None],
) -> None:
    """Latency, fit time and the throughput/quality frontier of one device's records."""
    save_unless_empty(
        section, latency_long(rows), f"latency{suffix}: no timing in the records",
        charts.latency_figure, f"latency{suffix}", "Inference latency per method.",
    )  # fmt: skip
    fit_s = flat(Field.TIMING, Timing.FIT_S)
    if fit_s in rows and rows[fit_s].notna().any():
        save(
            section,
            charts.fit_time_figure(rows),
            f"fit_time{suffix}",
            "Fit (training) time per method.",
        )
    if {flat(Field.TIMING, Timing.IMAGES_PER_S)} <= set(rows) and any(
        c in rows for c in (flat(Field.METRICS, "f1"), flat(Field.METRICS, "f1_max"))
    ):
        save(
            section,
            charts.frontier_figure(rows),
            f"frontier{suffix}",
            "Throughput vs F1: the frontier.",
        )
