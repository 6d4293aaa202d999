"""The speed table and figures of ``bench report``, from ``kind: "speed"`` records.

One row per (method, variant) with its inference mode and precision in the label, one column
group per dataset: ms/image at batch 1 (median, p95), images/s at batch 1 and at the best batch,
that batch, peak memory, GFLOP per image, the ratio to the FLOP floor
(:mod:`bench.execution.speed_floor`),
F1 and AUROC on the scored test images, and the fit time. Every variant is a row, unlike the
timing table, which shows each method's reference variant only. Records of ``bench run`` (no
``kind``) are left out: their timing has no batch sweep.

>>> speed_label({"method": "radar", "variant": "bf16", "inference.mode": "patches",
...              "inference.precision": "bf16"})
'radar [bf16] patches/bf16'
>>> speed_label({"method": "patchcore", "variant": "base"})
'patchcore'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.reports import charts
from bench.reports.load import RunData, flags_of, summarize
from bench.reports.table_model import Note, Table, mark_backbones
from bench.store.schema import Field, Flag, Inference, Kind, Speed, Timing, flat
from bench.util.formatting import general

#: (record field, header, digits, better: "higher" | "lower" | None).
SPEED_COLUMNS: tuple[tuple[str, str, int, str | None], ...] = (
    (flat(Field.TIMING, Timing.MS_PER_IMAGE), "ms p50", 2, "lower"),
    (flat(Field.TIMING, Timing.MS_PER_IMAGE_P95), "ms p95", 2, "lower"),
    (flat(Field.TIMING, Timing.IMAGES_PER_S_BATCH1), "img/s b=1", 1, "higher"),
    (flat(Field.TIMING, Timing.IMAGES_PER_S), "img/s best", 1, "higher"),
    (flat(Field.TIMING, Timing.BEST_BATCH), "batch", 0, None),
    (flat(Field.TIMING, Timing.PEAK_MEM_MB), "peak MB", 0, "lower"),
    (Field.GFLOPS_PER_IMAGE, "GFLOP/img", 1, None),
    (flat(Field.SPEED, Speed.RATIO_TO_FLOOR), "x floor", 1, "lower"),
    (flat(Field.METRICS, "f1"), "F1", 2, "higher"),
    (flat(Field.METRICS, "auroc"), "AUROC", 2, "higher"),
    (flat(Field.TIMING, Timing.FIT_S), "fit s", 1, "lower"),
)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def speed_label(rec: Mapping[str, Any]) -> str:
    """``method [variant] mode/precision``; parts a record lacks are left out."""
    label = str(rec.get(Field.METHOD))
    variant = rec.get(Field.VARIANT)
    if _present(variant) and variant != "base":
        label += f" [{variant}]"
    how = [
        str(rec[k])
        for k in (flat(Field.INFERENCE, Inference.MODE), flat(Field.INFERENCE, Inference.PRECISION))
        if _present(rec.get(k))
    ]
    return f"{label} {'/'.join(how)}" if how else label


def speed_rows(ok: pd.DataFrame) -> pd.DataFrame:
    """The speed records among finished ones, each with its row ``label``."""
    if Field.KIND not in ok:
        return ok.iloc[:0]
    rows = ok[ok[Field.KIND] == Kind.SPEED].copy()
    rows["label"] = [speed_label(rec) for rec in rows.to_dict("records")]
    return rows


def speed_table(data: RunData) -> Table | None:
    rows = speed_rows(data.ok)
    present = [c for c in SPEED_COLUMNS if c[0] in rows and rows[c[0]].notna().any()]
    if rows.empty or not present:
        return None
    long = pd.concat(
        [
            rows[["label", Field.DATASET]].assign(column=header, value=rows[key].astype(float))
            for key, header, _, _ in present
        ],
        ignore_index=True,
    )
    summary = summarize(long, ["label", Field.DATASET, "column"])
    labels = list(dict.fromkeys(rows["label"]))
    datasets = list(dict.fromkeys(rows[Field.DATASET]))
    columns = pd.MultiIndex.from_tuples([(d, h) for d in datasets for _, h, _, _ in present])
    frames = {}
    for stat in ("mean", "std", "n"):
        wide = summary.reset_index().pivot_table(
            index="label", columns=[Field.DATASET, "column"], values=stat, dropna=False, sort=False
        )
        frames[stat] = wide.reindex(index=labels, columns=columns)
    frames["n"] = frames["n"].fillna(0).astype(int)
    for frame in frames.values():
        frame.index.name = Field.METHOD
    devices = (
        ", ".join(str(d) for d in rows[Field.DEVICE_NAME].dropna().unique()) or "unknown device"
    )
    table = Table(
        name="speed",
        caption=f"Speed on {devices}, every method and variant in one process (bench speed). "
        "ms p50/p95: median and 95th percentile of the synchronised single-image predict calls "
        "after warm-up; img/s at batch 1 and at the best batch size (batch); peak memory over "
        "fit and inference; x floor: ms/image at the best batch over GFLOP/image divided by "
        "the device's peak TFLOP/s; F1 and AUROC on the scored test images.",
        mean=frames["mean"],
        std=frames["std"],
        n=frames["n"],
        digits={h: d for _, h, d, _ in present},
        figures={"GFLOP/img": 2},
        better={h: b for _, h, _, b in present if b},
    )
    mark_backbones(table, rows, key="label")
    table.notes.extend(_notes(rows))
    return table


def _notes(rows: pd.DataFrame) -> list[Note]:
    notes = []
    if flat(Field.SPEED, Speed.PEAK_SOURCE) in rows:
        sources = sorted({str(s) for s in rows[flat(Field.SPEED, Speed.PEAK_SOURCE)].dropna()})
        peaks = sorted({float(p) for p in rows[flat(Field.SPEED, Speed.PEAK_TFLOPS)].dropna()})
        if sources:
            shown = ", ".join(general(p) for p in peaks)
            notes.append(Note("", f"Peak TFLOP/s: {shown} ({'; '.join(sources)})."))
    if (
        flat(Field.SPEED, Speed.RATIO_TO_FLOOR) not in rows
        or rows[flat(Field.SPEED, Speed.RATIO_TO_FLOOR)].isna().all()
    ):
        notes.append(Note("", "No FLOP floor: no peak TFLOP/s known for this device."))
    flags = flags_of(rows)
    subsets = sorted({f for fs in flags for f in fs if f.startswith(Flag.EVAL_SUBSET_PREFIX)})
    if subsets:
        notes.append(Note("", f"Quality on a label-stratified test subset: {', '.join(subsets)}."))
    common = set.intersection(*(set(f) for f in flags)) if len(flags) else set()
    notes += [Note("", f"All runs flagged {f}.") for f in sorted(common) if f not in subsets]
    return notes


def speed_figures(ok: pd.DataFrame) -> list[tuple[str, Figure, str]]:
    """(file stem, figure, caption) of the speed records; none without them."""
    rows = speed_rows(ok)
    if rows.empty:
        return []
    out = []
    latency = _latency_stats(rows)
    if not latency.empty:
        # The latency chart's own dot plot, one row per variant instead of per method.
        fig = charts._dot_plot(
            latency, "ms/image at batch 1 (log)", "Latency: median, 5th-95th percentile"
        )
        out.append(("speed_latency", fig, "Single-image latency of every method and variant."))
    sweep = _batch_sweep(rows)
    if not sweep.empty:
        out.append(
            ("speed_throughput", throughput_figure(sweep), "Images/s against the batch size.")
        )
    return out


def _latency_stats(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for rec in rows.to_dict("records"):
        values = rec.get(flat(Field.TIMING, Timing.LATENCY_MS))
        if not isinstance(values, list | tuple) or not values:
            continue
        ms = np.asarray(values, dtype=float)
        center = float(np.median(ms))
        lo, hi = np.percentile(ms, [5, 95])
        out.append((rec["label"], rec[Field.DATASET], center, float(lo), float(hi)))
    return pd.DataFrame(out, columns=[Field.METHOD, Field.DATASET, "center", "lo", "hi"])


def _batch_sweep(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for rec in rows.to_dict("records"):
        batches = rec.get(flat(Field.SPEED, Speed.BATCHES))
        if not isinstance(batches, list | tuple):
            continue
        for b in batches:
            if b.get("images_per_s") is not None:  # None: skipped, over the time budget
                out.append(
                    (rec["label"], rec[Field.DATASET], int(b["batch"]), float(b["images_per_s"]))
                )
    return pd.DataFrame(out, columns=["label", Field.DATASET, "batch", "images_per_s"])


def throughput_figure(sweep: pd.DataFrame) -> Figure:
    """Images/s against images per call, log-log, one line per (label, dataset)."""
    labels = list(dict.fromkeys(sweep["label"]))
    look = charts.styles(labels)
    datasets = list(dict.fromkeys(sweep[Field.DATASET]))
    with mpl.rc_context(charts.STYLE):
        fig = Figure(figsize=(charts.COLUMN_WIDTH_IN * 1.4, 3.0), layout="constrained")
        ax = fig.add_subplot()
        for (label, dataset), part in sweep.groupby(["label", Field.DATASET], sort=False):
            part = part.sort_values("batch")
            name = label if len(datasets) == 1 else f"{label} · {dataset}"
            ax.plot(part["batch"], part["images_per_s"], label=name, markersize=3.5, **look[label])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images per predict call (log)")
        ax.set_ylabel("images/s (log; median call)")
        ax.set_title("Throughput against batch size", loc="left")
        ax.grid(which="both", linewidth=0.3, alpha=0.5)
        fig.legend(loc="outside right center", frameon=False)
    return fig
