"""Figures of a run: latency, fit time, the speed/accuracy frontier, quality against compute,
ablations, ROC curves.

Every function takes a DataFrame (the tidy frames of :mod:`bench.reports.load`) and returns a
:class:`matplotlib.figure.Figure` (no pyplot state, so reports can run in threads or tests);
:func:`save_figure` writes it as PDF and 300-dpi PNG. Sized for one paper column (3.4 in) with
8-pt type; the palette is Okabe & Ito's colour-blind-safe set ("Color Universal Design", 2008),
and markers/line styles repeat the colour information for greyscale print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from bench.reports.load import AXES, base_method, random_init_methods, substituted_backbones
from bench.store.schema import Field, FitInfo, Timing, flat
from bench.util.formatting import general, spread

# Okabe-Ito, reordered so that the first colours are the most distinct on white (yellow last).
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
COLUMN_WIDTH_IN = 3.4
DPI = 300
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # TrueType in the PDF: editable text, accepted by publishers
    "ps.fonttype": 42,
}
MIN_SECONDS = 1e-3  # fit times below 1 ms are drawn at 1 ms so a log axis can show them


def styles(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """A fixed colour + marker + line style per name, in the given order; past the palette's
    eight colours the markers shift by one, so no two of the first 64 names look alike."""
    return {
        name: {
            "color": PALETTE[i % len(PALETTE)],
            "marker": MARKERS[(i + i // len(PALETTE)) % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
        }
        for i, name in enumerate(names)
    }


def method_styles(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """:func:`styles` for figures whose lines carry their marker and line style: a method's
    weight variants (``patchcore (random init)``, ``patchcore (efficientnet_lite0 (ImageNet))``,
    :func:`bench.reports.load.method_rows`) share the method's colour and differ in marker and
    line style, so that up to eight methods never share a colour however many variants run."""
    own = styles(names)
    colour = styles(list(dict.fromkeys(base_method(n) for n in names)))
    return {n: {**own[n], "color": colour[base_method(n)]["color"]} for n in names}


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """``stem.pdf`` and ``stem.png`` (300 dpi); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".pdf", ".png"):
        path = stem.with_suffix(suffix)
        with mpl.rc_context(STYLE):
            fig.savefig(path, dpi=DPI)
        paths.append(path)
    return paths


def _dot_plot(stats: pd.DataFrame, xlabel: str, title: str) -> Figure:
    """Horizontal dot plot: one row per method, one marker per dataset, log x, error bars.

    ``stats``: ``method, dataset, center, lo, hi`` (lo/hi are the bar ends).
    """
    methods = list(dict.fromkeys(stats[Field.METHOD]))
    datasets = list(dict.fromkeys(stats[Field.DATASET]))
    colours = styles(methods)
    marks = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(datasets)}
    with mpl.rc_context(STYLE):
        fig = _figure(COLUMN_WIDTH_IN, 0.9 + 0.32 * len(methods) * max(1, len(datasets) / 2))
        ax = fig.add_subplot()
        step = 0.7 / max(1, len(datasets))
        for _, row in stats.iterrows():
            i, j = methods.index(row[Field.METHOD]), datasets.index(row[Field.DATASET])
            y = i + (j - (len(datasets) - 1) / 2) * step
            err = [[row["center"] - row["lo"]], [row["hi"] - row["center"]]]
            ax.errorbar(
                row["center"],
                y,
                xerr=np.clip(err, 0, None),
                fmt=marks[row[Field.DATASET]],
                color=colours[row[Field.METHOD]]["color"],
                markersize=4,
                capsize=2,
                elinewidth=0.8,
            )
        ax.set_yticks(range(len(methods)), methods)
        ax.set_ylim(len(methods) - 0.5, -0.5)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        ax.grid(axis="x", which="both", linewidth=0.3, alpha=0.5)
        if len(datasets) > 1:
            handles = [
                mpl.lines.Line2D([], [], color="0.3", marker=marks[d], linestyle="", label=d)
                for d in datasets
            ]
            fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig


def latency_figure(latency: pd.DataFrame) -> Figure:
    """Median single-image latency per method, bars from the 25th to the 75th percentile of the
    timed repeats (all seeds pooled). ``latency``: ``method, dataset, ms`` (one row per call)."""
    grouped = latency.groupby([Field.METHOD, Field.DATASET], sort=False)["ms"]
    stats = pd.DataFrame(
        {
            "center": grouped.median(),
            "lo": grouped.quantile(0.25),
            "hi": grouped.quantile(0.75),
        }
    ).reset_index()
    return _dot_plot(
        stats, "ms per image (log; median, IQR of repeats)", "Inference latency, batch 1"
    )


def fit_time_figure(rows: pd.DataFrame) -> Figure:
    """Mean fit time per method, bars +- one std over seeds. ``rows``: records with
    ``method, dataset, timing.fit_s``."""
    seconds = rows[flat(Field.TIMING, Timing.FIT_S)].astype(float).clip(lower=MIN_SECONDS)
    grouped = rows.assign(s=seconds).groupby([Field.METHOD, Field.DATASET], sort=False)["s"]
    mean, std = grouped.mean(), grouped.std().fillna(0.0)
    stats = pd.DataFrame(
        {"center": mean, "lo": (mean - std).clip(lower=MIN_SECONDS), "hi": mean + std}
    ).reset_index()
    drawn_at = general(MIN_SECONDS * 1e3)
    note = f"; < {drawn_at} ms drawn at it" if (seconds <= MIN_SECONDS).any() else ""
    return _dot_plot(stats, f"fit time, s (log; mean ± std over seeds{note})", "Fit time")


def frontier_metric(rows: pd.DataFrame) -> str:
    """``f1`` (at the run's threshold rule, calibrated by default) when every method has it,
    else ``f1_max``."""
    f1 = rows.get(flat(Field.METRICS, "f1"))
    if f1 is not None and np.isfinite(f1.astype(float)).all():
        return "f1"
    return "f1_max"


def frontier_figure(rows: pd.DataFrame, metric: str | None = None) -> Figure:
    """Throughput (mean, min-max bar) vs detection quality (mean +- std) over seeds; the dashed
    line joins the methods no other beats on both axes (the speed/accuracy frontier), per
    dataset.
    ``rows``: records with ``method, dataset, timing.images_per_s, metrics.<metric>``."""
    metric = metric or frontier_metric(rows)
    column = flat(Field.METRICS, metric)
    frame = rows.assign(
        x=rows[flat(Field.TIMING, Timing.IMAGES_PER_S)].astype(float), y=rows[column].astype(float)
    )
    stats = (
        frame.groupby([Field.METHOD, Field.DATASET], sort=False)[["x", "y"]]
        .agg(["mean", "std", "min", "max"])
        .fillna({("x", "std"): 0.0, ("y", "std"): 0.0})
    )
    methods = list(dict.fromkeys(frame[Field.METHOD]))
    datasets = list(dict.fromkeys(frame[Field.DATASET]))
    colours = styles(methods)
    marks = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(datasets)}
    with mpl.rc_context(STYLE):
        fig = _figure(COLUMN_WIDTH_IN, 2.9)
        ax = fig.add_subplot()
        for (method, dataset), row in stats.iterrows():
            ax.errorbar(
                row[("x", "mean")],
                row[("y", "mean")],
                # A std bar can cross zero on a log axis: x bars span min..max over seeds.
                xerr=[
                    [row[("x", "mean")] - row[("x", "min")]],
                    [row[("x", "max")] - row[("x", "mean")]],
                ],
                yerr=row[("y", "std")],
                fmt=marks[dataset],
                color=colours[method]["color"],
                markersize=5,
                capsize=2,
                elinewidth=0.8,
            )
        for dataset in datasets:
            points = stats.xs(dataset, level=Field.DATASET)
            front = pareto_front(points[("x", "mean")], points[("y", "mean")])
            ax.plot(*front, color="0.5", linestyle="--", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("throughput, images/s (log; bars: seed range)")
        rules = (
            sorted(rows[Field.THRESHOLD_RULE].dropna().unique())
            if Field.THRESHOLD_RULE in rows
            else []
        )
        f1_name = f"F1 ({'/'.join(rules)} threshold)" if rules else "F1 (own decision)"
        name = {"f1": f1_name, "f1_max": "F1-max"}.get(metric, metric)
        ax.set_ylabel(f"{name}, mean ± std")
        ax.set_title("Speed / accuracy frontier", loc="left")
        ax.grid(which="both", linewidth=0.3, alpha=0.5)
        handles = [
            mpl.lines.Line2D([], [], color=colours[m]["color"], marker="o", linestyle="", label=m)
            for m in methods
        ]
        if len(datasets) > 1:
            handles += [
                mpl.lines.Line2D([], [], color="0.3", marker=marks[d], linestyle="", label=d)
                for d in datasets
            ]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig


#: The cost axes of :func:`compute_figure`: record column -> axis label.
COMPUTE_AXES = {
    flat(Field.FIT_INFO, FitInfo.TRAIN_GFLOPS): "training compute, GFLOP (log)",
    Field.GFLOPS_PER_IMAGE: "inference compute, GFLOP/image (log)",
}
COMPUTE_METRICS = (("auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"))
MIN_METRIC_SPAN = 0.1  # the least AUROC range a compute panel shows


def compute_points(rows: pd.DataFrame, cost: str, metric: str) -> pd.DataFrame:
    """One point per (dataset, method, variant): the mean cost and the metric's mean and std
    over seeds; rows without the cost or the metric are left out. ``rows``: records with
    ``method, dataset, params_hash, seed``, the ``cost`` column, ``metrics.<metric>`` and
    optionally ``preset``."""
    column = flat(Field.METRICS, metric)
    if cost not in rows or column not in rows:
        return pd.DataFrame()
    frame = rows.assign(x=rows[cost].astype(float), y=rows[column].astype(float))
    frame = frame[np.isfinite(frame["x"]) & (frame["x"] > 0) & np.isfinite(frame["y"])]
    if frame.empty:
        return pd.DataFrame()
    preset = frame[Field.PRESET] if Field.PRESET in frame else pd.Series("", index=frame.index)
    # a job in several sweeps (their shared base point) lies on each of their lines
    axes = frame[AXES] if AXES in frame else pd.Series("", index=frame.index)
    frame = frame.assign(axis=axes.fillna("").astype(str).str.split("|")).explode("axis")
    points = (
        frame.assign(preset=preset.reindex(frame.index).fillna("").astype(str))
        .groupby([Field.DATASET, Field.METHOD, "axis", Field.PARAMS_HASH], sort=False)
        .agg(x=("x", "mean"), y=("y", "mean"), std=("y", "std"), seeds=("y", "size"),
             preset=("preset", "first"))
        .reset_index()
    )  # fmt: skip
    points["std"] = points["std"].fillna(0.0)
    order = [Field.DATASET, Field.METHOD, "axis", "x"]
    return points.sort_values(order, kind="stable").reset_index(drop=True)


def compute_figure(
    rows: pd.DataFrame, cost: str, presets: Mapping[str, set[str]] | None = None
) -> Figure:
    """Quality against compute: per dataset (columns) and metric (rows: image AUROC, and pixel
    AUROC where masks exist), one line per method and ablation axis
    (:data:`bench.reports.load.AXES`) through its variants in order of cost, error bars +- one
    std over seeds. The variants run exactly at a preset (``presets``: method ->
    params_hashes, :func:`bench.reports.load.preset_variants`) are ringed and named by it. The
    x axis is ``cost``, a key of :data:`COMPUTE_AXES`: where a curve flattens, more compute
    stops buying quality.
    """
    presets = presets or {}
    marks = weights_marks(rows)
    found = {m: compute_points(rows, cost, m) for m, _ in COMPUTE_METRICS}
    panels = [(m, lab) for m, lab in COMPUTE_METRICS if not found[m].empty]
    all_points = {m: found[m] for m, _ in panels}
    datasets = list(dict.fromkeys(rows[Field.DATASET]))
    datasets = [
        d for d in datasets if any((p[Field.DATASET] == d).any() for p in all_points.values())
    ]
    methods = list(dict.fromkeys(m for p in all_points.values() for m in p[Field.METHOD]))
    # a method's sweeps share its colour; each axis gets its own marker and line style
    lines = list(
        dict.fromkeys(
            (m, a)
            for p in all_points.values()
            for m, a in zip(p[Field.METHOD], p["axis"], strict=True)
        )
    )
    # weight variants share the method's colour too, unless two of them sweep the same axis
    # (their lines would then look alike)
    swept = [(base_method(m), a) for m, a in lines if a]
    look = (method_styles if len(swept) == len(set(swept)) else styles)(methods)
    shapes = styles(list(dict.fromkeys(a for _, a in lines)))
    line_look = {
        (m, a): {**look[m], **({k: shapes[a][k] for k in ("marker", "linestyle")} if a else {})}
        for m, a in lines
    }
    with mpl.rc_context(STYLE):
        ncols, nrows = max(len(datasets), 1), max(len(panels), 1)
        fig = _figure(COLUMN_WIDTH_IN * min(ncols, 2), 2.2 * nrows + 0.4)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex="col")
        for r, (metric, label) in enumerate(panels):
            points = all_points[metric]
            for c, dataset in enumerate(datasets):
                ax = axes[r, c]
                part = points[points[Field.DATASET] == dataset]
                for (method, axis), line in part.groupby([Field.METHOD, "axis"], sort=False):
                    st = line_look[(method, axis)]
                    ax.errorbar(
                        line["x"], line["y"], yerr=line["std"], color=st["color"],
                        marker=st["marker"], linestyle=st["linestyle"], markersize=3.5,
                        capsize=2, elinewidth=0.7, label=_line_label(method, axis, marks),
                    )  # fmt: skip
                    marked = line[line[Field.PARAMS_HASH].astype(str).isin(presets.get(method, ()))]
                    ax.scatter(
                        marked["x"], marked["y"], s=70, facecolors="none",
                        edgecolors=st["color"], linewidths=0.9, zorder=3,
                    )  # fmt: skip
                    for _, point in marked.iterrows():
                        ax.annotate(
                            point[Field.PRESET], (point["x"], point["y"]), xytext=(4, -9),
                            textcoords="offset points", fontsize=6, color=st["color"],
                        )  # fmt: skip
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())  # no crowded labels
                if part.empty:  # e.g. pixel AUROC of a dataset without masks
                    ax.text(0.5, 0.5, f"no {label} here", ha="center", va="center",
                            transform=ax.transAxes, fontsize=7, color="0.4")  # fmt: skip
                    ax.set_yticks([])
                lo, hi = ax.get_ylim()
                if hi - lo < MIN_METRIC_SPAN:  # a flat curve must look flat, not zoomed noise
                    mid = (lo + hi) / 2
                    ax.set_ylim(mid - MIN_METRIC_SPAN / 2, mid + MIN_METRIC_SPAN / 2)
                ax.grid(which="both", linewidth=0.3, alpha=0.5)
                if r == 0:
                    ax.set_title(dataset, loc="left")
                if c == 0:
                    ax.set_ylabel(f"{label}\n(mean ± std over seeds)")
                if r == nrows - 1:
                    ax.set_xlabel(COMPUTE_AXES[cost])
        handles = [
            mpl.lines.Line2D(
                [], [], markersize=3.5, label=_line_label(*key, marks), **line_look[key]
            )
            for key in lines
        ]
        if any(presets.values()):
            handles.append(
                mpl.lines.Line2D(
                    [], [], marker="o", markersize=7, markerfacecolor="none", color="0.3",
                    linestyle="", label="a preset (named)",
                )
            )  # fmt: skip
        # a figure one or two columns wide holds two legend columns of "method: axis" names
        ncols = 2 if len(handles) > 3 else len(handles)
        fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)
    return fig


def weights_marks(rows: pd.DataFrame) -> dict[str, str]:
    """method -> the tables' row mark for its backbone weights: † random init, § a substitute
    (ImageNet-Lite) backbone; figures name their lines the same way."""
    marks = dict.fromkeys(substituted_backbones(rows), "§")
    marks.update(dict.fromkeys(random_init_methods(rows), "†"))
    return marks


def _line_label(method: str, axis: str, marks: Mapping[str, str] | None = None) -> str:
    name = method + (marks or {}).get(method, "")
    return f"{name}: {axis}" if axis else name


def pareto_front(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The points not beaten on both axes (higher is better on both), sorted by x."""
    pts = sorted(zip(np.asarray(x, float), np.asarray(y, float), strict=True), reverse=True)
    front, best = [], -np.inf
    for px, py in pts:  # fastest first: keep a point when it beats every faster one
        if np.isfinite(py) and py > best:
            front.append((px, py))
            best = py
    front.sort()
    return np.array([p[0] for p in front]), np.array([p[1] for p in front])


def ablation_figure(
    sweep: pd.DataFrame,
    param: str,
    metrics: Sequence[tuple[str, str]],
    reference: object = None,
    title: str = "",
) -> Figure:
    """Metric vs parameter value, mean line and +- std band over seeds; one panel per dataset.

    ``sweep``: records with ``value, dataset, seed, metrics.<m>``; ``metrics``: (key, label)
    pairs, drawn when present. Numeric values sit on a numeric axis (log when they span more
    than a factor 20), others are categories in the given order.
    """
    datasets = list(dict.fromkeys(sweep[Field.DATASET]))
    numeric = pd.api.types.is_numeric_dtype(sweep["value"]) and not pd.api.types.is_bool_dtype(
        sweep["value"]
    )
    present = [
        (k, lab)
        for k, lab in metrics
        if flat(Field.METRICS, k) in sweep
        and sweep[flat(Field.METRICS, k)].astype(float).notna().any()
    ]
    look = styles([lab for _, lab in present])
    with mpl.rc_context(STYLE):
        ncols = min(len(datasets), 3)
        nrows = -(-len(datasets) // ncols)
        fig = _figure(COLUMN_WIDTH_IN * min(ncols, 2), 2.3 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for ax, dataset in zip(axes.flat, datasets, strict=False):
            part = sweep[sweep[Field.DATASET] == dataset]
            order = (
                sorted(part["value"].unique()) if numeric else list(dict.fromkeys(part["value"]))
            )
            xs = np.asarray(order, float) if numeric else np.arange(len(order))
            for key, label in present:
                grouped = part.groupby("value", sort=False)[flat(Field.METRICS, key)]
                mean = grouped.mean().reindex(order).to_numpy(float)
                std = grouped.std().reindex(order).fillna(0.0).to_numpy(float)
                ax.plot(xs, mean, label=label, markersize=3.5, **look[label])
                ax.fill_between(xs, mean - std, mean + std, color=look[label]["color"], alpha=0.18)
            if numeric and xs.min() > 0 and xs.max() / xs.min() >= 20:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(xs, [str(v) for v in order])
            if reference is not None and str(reference) in [str(v) for v in order]:
                ref_x = xs[[str(v) for v in order].index(str(reference))]
                ax.axvline(ref_x, color="0.6", linestyle=":", linewidth=0.8)
            ax.set_xlabel(param)
            ax.set_title(dataset, loc="left")
            ax.grid(linewidth=0.3, alpha=0.5)
        for ax in axes.flat[len(datasets) :]:
            ax.set_visible(False)
        axes[0, 0].set_ylabel("metric (mean ± std over seeds)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=4, frameon=False)
        if title:
            fig.suptitle(title, fontsize=8, x=0.02, ha="left")
    return fig


FPR_GRID = np.linspace(0.0, 1.0, 201)


def mean_roc(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """TPR averaged over seeds on a fixed FPR grid (vertical averaging, Fawcett 2006), its std,
    and each seed's AUROC. ``scores``: ``seed, label, score``; seeds with one class are skipped."""
    tprs, aucs = [], []
    for _, part in scores.groupby(Field.SEED, sort=True):
        labels = part["label"].astype(int).to_numpy()
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, part["score"].astype(float).to_numpy())
        curve = np.interp(FPR_GRID, fpr, tpr)
        curve[0] = 0.0
        tprs.append(curve)
        aucs.append(float(roc_auc_score(labels, part["score"].astype(float).to_numpy())))
    if not tprs:
        return np.full_like(FPR_GRID, np.nan), np.zeros_like(FPR_GRID), []
    stack = np.stack(tprs)
    return stack.mean(0), stack.std(0, ddof=1) if len(tprs) > 1 else np.zeros_like(FPR_GRID), aucs


def roc_figure(scores: pd.DataFrame, title: str = "") -> Figure:
    """Image-level ROC per method on one dataset: mean over seeds with a +- std band.
    ``scores``: ``method, seed, label, score`` (one row per test image and job)."""
    methods = list(dict.fromkeys(scores[Field.METHOD]))
    look = method_styles(methods)
    with mpl.rc_context(STYLE):
        fig = _figure(COLUMN_WIDTH_IN, 3.0)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=0.8)
        for method in methods:
            tpr, std, aucs = mean_roc(scores[scores[Field.METHOD] == method])
            if not aucs:
                continue
            std_auc = np.std(aucs, ddof=1) if len(aucs) > 1 else None
            auc = spread(np.mean(aucs), std_auc, len(aucs), 3)
            style = {k: v for k, v in look[method].items() if k != "marker"}
            ax.plot(FPR_GRID, tpr, label=f"{method} (AUROC {auc})", **style)
            ax.fill_between(
                FPR_GRID,
                np.clip(tpr - std, 0, 1),
                np.clip(tpr + std, 0, 1),
                color=look[method]["color"],
                alpha=0.15,
                linewidth=0,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title or "Image-level ROC", loc="left")
        if ax.get_legend_handles_labels()[0]:  # none when no test set has both classes
            ax.legend(loc="lower right", frameon=False)
    return fig
