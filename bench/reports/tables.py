"""What each report table holds, independent of the format it is written in.

A :class:`Table` is numbers (mean, std and n over seeds, one cell per row x column), which way
is better per column, row markers (random-init backbone, the reference setting of an
ablation) and notes. ``latex``, ``markdown``, ``csv`` and ``html`` only decide how it looks, so
the four outputs can never disagree.

Best per column: the highest (or lowest, for times and memory) mean *as displayed* (rounded to
the column's digits), so that two methods that print the same number are both bold. The second
best distinct value is underlined when at least three rows have a value (with two, underlining
the other one says nothing).

>>> import pandas as pd
>>> cols = pd.MultiIndex.from_tuples([("d", "F1")])
>>> t = Table("t", "T", pd.DataFrame([[0.5], [0.7], [0.6]], ["a", "b", "c"], cols),
...           pd.DataFrame([[0.1]] * 3, ["a", "b", "c"], cols),
...           pd.DataFrame([[2]] * 3, ["a", "b", "c"], cols), better={"F1": "higher"})
>>> t.ranks()[("d", "F1")].tolist()
[0, 1, 2]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.reports.load import (
    MAIN_TABLE_SETTING,
    Ablation,
    RunData,
    canonical,
    param_columns,
    random_init_methods,
    reference_rows,
    reference_variants,
    substituted_backbones,
    summarize,
    tidy,
)
from bench.reports.significance import mark_significance
from bench.reports.speed import speed_table  # bench speed records: every variant (#8)
from bench.reports.table_model import (
    REFERENCE,
    Note,
    Table,
    _flag_notes,
    mark_backbones,
    mark_flags,
    substitute_note,
)
from bench.store.schema import Field, Timing, flat
from bench.util.formatting import grid_text

#: The paper's table columns, in order: (record metric key, column header).
MAIN_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Acc."),
    ("precision", "Prec."),
    ("recall", "Rec."),
    ("f1", "F1"),
    ("auroc", "AUROC"),
    ("pixel_auroc", "P-AUROC"),
    ("pixel_aupro", "AUPRO"),
)

#: The lines of an ablation plot (all seven would hide each other).
ABLATION_METRICS: tuple[tuple[str, str], ...] = (
    ("f1", "F1"),
    ("auroc", "AUROC"),
    ("pixel_auroc", "P-AUROC"),
    ("pixel_aupro", "AUPRO"),
)

#: Timing columns: (record timing key, header, digits, better).
TIMING_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    (Timing.FIT_S, "Fit (s)", 1, "lower"),
    (Timing.MS_PER_IMAGE, "ms/image", 2, "lower"),
    (Timing.IMAGES_PER_S, "images/s", 1, "higher"),
    (Timing.PEAK_MEM_MB, "Peak mem. (MB)", 0, "lower"),
)
#: Cost columns beside the timings, so that a reader sees cost as well as speed: (flattened
#: record column, header, digits, better).
COST_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("gflops_per_image", "GFLOP/image", 1, "lower"),
    ("inference.unet_forward_passes", "U-Net passes", 0, "lower"),
)


#: Significant figures of the cost columns whose values span orders of magnitude in one table.
COST_FIGURES: dict[str, int] = {"GFLOP/image": 2}


def _cells(summary: pd.DataFrame, row: str, group: str, column: str) -> pd.DataFrame:
    """Pivot a (row, group, column) summary into the three cell frames, order preserved."""
    out = {}
    for stat in ("mean", "std", "n"):
        wide = summary.reset_index().pivot_table(
            index=row, columns=[group, column], values=stat, dropna=False, sort=False
        )
        out[stat] = wide
    return out


def _metric_table(
    ok: pd.DataFrame,
    row_key: str,
    metrics: tuple[tuple[str, str], ...],
    name: str,
    caption: str,
) -> Table | None:
    long = tidy(ok, Field.METRICS)
    wanted = dict(metrics)
    long = long[long["metric"].isin(wanted)]
    present = [m for m, _ in metrics if long.loc[long["metric"] == m, "value"].notna().any()]
    if long.empty or not present:
        return None
    long = long[long["metric"].isin(present)].copy()
    long["column"] = long["metric"].map(wanted)
    summary = summarize(long, [row_key, Field.DATASET, "column"])
    cells = _cells(summary, row_key, Field.DATASET, "column")
    # tidy() calls an ablation's parameter value "param_value"; the records call it "value".
    rows = list(dict.fromkeys(ok["value" if row_key == "param_value" else row_key]))
    datasets = list(dict.fromkeys(ok[Field.DATASET]))
    columns = pd.MultiIndex.from_tuples([(d, wanted[m]) for d in datasets for m in present])
    frames = {k: v.reindex(index=rows, columns=columns) for k, v in cells.items()}
    frames["n"] = frames["n"].fillna(0).astype(int)
    for frame in frames.values():
        frame.index = frame.index.map(str)
    headers = [wanted[m] for m in present]
    return Table(
        name=name,
        caption=caption,
        mean=frames["mean"],
        std=frames["std"],
        n=frames["n"],
        digits=dict.fromkeys(headers, 2),
        better=dict.fromkeys(headers, "higher"),
    )


def _seeds_text(ok: pd.DataFrame) -> str:
    seeds = sorted(ok[Field.SEED].dropna().astype(int).unique())
    if len(seeds) == 1:
        return f"one seed ({seeds[0]})"
    return f"mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"


def main_table(
    data: RunData,
    digits: int = 2,
    significance: bool = True,
    interval: str = "std",
    metrics: tuple[tuple[str, str], ...] = MAIN_METRICS,
    caption: str | None = None,
) -> Table | None:
    """Rows = methods (reference variants), column groups = datasets, the paper's metrics
    (``metrics``: (record metric, header) pairs, a narrower headline for instance).
    ``caption``: what the table shows, in place of the default text; the seeds are added."""
    ok = data.ok
    if ok.empty:
        return None
    refs = reference_variants(ok, data.manifests)
    rows = reference_rows(ok, refs)
    table = _metric_table(
        rows,
        Field.METHOD,
        metrics,
        "main",
        f"Anomaly detection on each dataset: {_seeds_text(rows)}. Image-level accuracy, "
        f"precision, recall and F1 use {_rule_text(rows)}; AUROC is threshold-free; "
        "P-AUROC and AUPRO are pixel level."
        if caption is None
        else f"{caption}; {_seeds_text(rows)}.",
    )
    if table is None:
        return None
    table.digits = dict.fromkeys(table.digits, digits)
    _mark_methods(table, rows)
    if interval == "bootstrap":
        _bootstrap_intervals(table, rows)
    if significance:
        mark_significance(table, data, rows)
    return table


def variants_table(
    data: RunData,
    method: str,
    metrics: tuple[tuple[str, str], ...] = MAIN_METRICS,
    caption: str | None = None,
    significance: bool = True,
) -> Table | None:
    """Every variant of one method a row (the grid points of its ablations, where the main table
    shows only its reference), labelled by the parameters that differ between them:
    ``radar [scorer=irf, inference=patches]``; with the main table's marks and significance."""
    ok = data.ok
    rows = ok[ok[Field.METHOD].astype(str) == method].copy()
    if rows.empty or rows[Field.PARAMS_HASH].nunique() < 2:
        return None
    differ = [c for c in param_columns(rows) if rows[c].map(canonical).nunique() > 1]
    prefix = flat(Field.PARAMS, "")

    def label(row: pd.Series) -> str:
        values = ", ".join(f"{c.removeprefix(prefix)}={grid_text(row[c])}" for c in differ)
        return f"{method} [{values}]"

    rows[Field.METHOD] = rows.apply(label, axis=1)
    table = _metric_table(
        rows,
        Field.METHOD,
        metrics,
        f"variants_{method}",
        f"{caption or f'Every variant of {method}'}; {_seeds_text(rows)}.",
    )
    if table is None:
        return None
    _mark_methods(table, rows)
    if significance:
        mark_significance(table, data, rows)
    return table


def _bootstrap_intervals(table: Table, rows: pd.DataFrame) -> None:
    """Per cell, the records' 95% bootstrap interval over test images (``metrics_ci``), its
    bounds averaged over seeds; pixel metrics have none and keep mean ± std."""
    low = pd.DataFrame(np.nan, index=table.mean.index, columns=table.mean.columns)
    high = low.copy()
    header_to_metric = {header: key for key, header in MAIN_METRICS}
    for col in table.mean.columns:
        dataset, metric = col[0], header_to_metric.get(col[-1])
        ci_col = flat(Field.METRICS_CI, metric)
        if metric is None or ci_col not in rows:
            continue
        for method in table.mean.index:
            cis = rows.loc[
                (rows[Field.METHOD].astype(str) == method) & (rows[Field.DATASET] == dataset),
                ci_col,
            ]
            bounds = np.array(
                [ci for ci in cis if isinstance(ci, list | tuple) and len(ci) == 2], dtype=float
            )
            if bounds.size:
                low.at[method, col], high.at[method, col] = np.nanmean(bounds, axis=0)
    table.low, table.high = low, high
    table.caption += (
        " Brackets: 95% bootstrap interval over test images (stratified, 1000 resamples), "
        "bounds averaged over seeds; cells without one show mean ± std."
    )


_RULE_TEXT = {
    "calibrated": "a threshold calibrated on held-out normal training images (no test label)",
    "own": "each method's own decision",
    "oracle": "the F1-maximising threshold on the test set (ORACLE: an upper bound, not a result)",
}


def _rule_text(rows: pd.DataFrame) -> str:
    rules = (
        sorted(rows[Field.THRESHOLD_RULE].dropna().unique()) if Field.THRESHOLD_RULE in rows else []
    )
    if not rules:
        return "each method's own decision"
    return " / ".join(_RULE_TEXT.get(r, str(r)) for r in rules)


def _mark_methods(table: Table, rows: pd.DataFrame) -> None:
    mark_backbones(table, rows)
    if table.has_missing():
        table.notes.append(
            Note(
                "dash",
                "not available (the method gives no pixel map, or no own decision) or undefined "
                "on the test set (e.g. recall without anomalous test images; null, never 0).",
            )
        )
    mark_flags(table, rows)


def _device_text(ok: pd.DataFrame) -> str:
    names = ok[Field.DEVICE_NAME].dropna().unique() if Field.DEVICE_NAME in ok else []
    return ", ".join(str(n) for n in names) or "unknown device"


def _cost_long(rows: pd.DataFrame) -> pd.DataFrame:
    """GFLOP/image and U-Net passes per image in :func:`tidy`'s long shape (``metric`` holds the
    flattened column name)."""
    ids = [c for c in ("job_id", "method", "params_hash", "dataset", "seed") if c in rows]
    parts = [
        rows[ids].assign(metric=column, value=pd.to_numeric(rows[column], errors="coerce"))
        for column, _, _, _ in COST_COLUMNS
        if column in rows
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def devices(ok: pd.DataFrame) -> list[str]:
    """The devices the records were timed on, in record order (``device_name``)."""
    if Field.DEVICE_NAME not in ok:
        return []
    return [str(d) for d in dict.fromkeys(ok[Field.DEVICE_NAME].dropna())]


def timing_tables(data: RunData) -> list[Table]:
    """One timing table per device: a CPU time and a GPU time never share a column. With one
    device the table is ``timing``; with several, ``timing_<device>`` each."""
    ok = data.ok
    names = devices(ok)
    if len(names) <= 1:
        return [t for t in [timing_table(data)] if t is not None]
    tables = []
    for k, device in enumerate(names, start=1):
        subset = ok[ok[Field.DEVICE_NAME] == device]
        table = timing_table(data, subset, name=f"timing_{device_slug(device) or k}")
        if table is not None:
            tables.append(table)
    return tables


def device_slug(device: str) -> str:
    """``NVIDIA H200`` -> ``nvidia_h200``: the suffix of a device's tables, figures, sections."""
    return "".join(c if c.isalnum() else "_" for c in device.lower()).strip("_")


def timing_table(
    data: RunData, ok: pd.DataFrame | None = None, name: str = "timing"
) -> Table | None:
    """Fit time, latency, throughput, peak memory, GFLOP/image and U-Net passes per image of
    each method's reference variant (``ok``: the records to use, default every finished one)."""
    ok = data.ok if ok is None else ok
    if ok.empty:
        return None
    rows = reference_rows(ok, reference_variants(ok, data.manifests))
    long = tidy(rows, Field.TIMING)
    keys = {key: header for key, header, _, _ in TIMING_COLUMNS}
    long = long[long["metric"].isin(keys)].copy()
    if long.empty:
        return None
    keys.update({key: header for key, header, _, _ in COST_COLUMNS})
    long = pd.concat([long, _cost_long(rows)], ignore_index=True)
    present = [k for k in keys if long.loc[long["metric"] == k, "value"].notna().any()]
    long["column"] = long["metric"].map(keys)
    cells = _cells(
        summarize(long, [Field.METHOD, Field.DATASET, "column"]),
        Field.METHOD,
        Field.DATASET,
        "column",
    )
    methods = list(dict.fromkeys(rows[Field.METHOD]))
    datasets = list(dict.fromkeys(rows[Field.DATASET]))
    columns = pd.MultiIndex.from_tuples([(d, keys[k]) for d in datasets for k in present])
    frames = {k: v.reindex(index=methods, columns=columns) for k, v in cells.items()}
    frames["n"] = frames["n"].fillna(0).astype(int)
    kinds = (
        rows[flat(Field.TIMING, Timing.PEAK_MEM_KIND)].dropna().unique()
        if flat(Field.TIMING, Timing.PEAK_MEM_KIND) in rows
        else []
    )
    mem = f" Peak memory: {', '.join(map(str, kinds))}." if len(kinds) else ""
    cost = (
        " GFLOP/image: the FLOPs of one test image's forward computation (speed claims name the"
        " mode; a multiply-add is 2 FLOPs; the statistical baselines' dot products, distances"
        " and tree comparisons counted by formula); U-Net passes: diffusion-network evaluations"
        " per image."
        if any(keys[k] in {h for _, h, _, _ in COST_COLUMNS} for k in present)
        else ""
    )
    columns_spec = (*TIMING_COLUMNS, *COST_COLUMNS)
    table = Table(
        name=name,
        caption=f"Cost on {_device_text(rows)}: {_seeds_text(rows)}. ms/image is the median of "
        f"the timed single-image calls after warm-up; images/s is the whole test set in one "
        f"call.{mem}{cost}",
        mean=frames["mean"],
        std=frames["std"],
        n=frames["n"],
        digits={h: d for _, h, d, _ in columns_spec},
        figures=dict(COST_FIGURES),
        better={h: b for _, h, _, b in columns_spec},
    )
    _mark_methods(table, rows)
    return table


def ablation_table(ablation: Ablation, digits: int = 2) -> Table | None:
    """One parameter of one method: rows = its values, column groups = datasets."""
    rows = ablation.rows
    if ablation.numeric:
        rows = rows.sort_values("value", kind="stable")
    table = _metric_table(
        rows,
        "param_value",
        MAIN_METRICS,
        f"ablation_{ablation.key}",
        f"Ablation of {ablation.method}: parameter {ablation.param}, every other parameter at "
        f"{ablation.fixed_at}; {_seeds_text(rows)}.",
    )
    if table is None:
        return None
    table.digits = dict.fromkeys(table.digits, digits)
    table.mean.index.name = table.std.index.name = table.n.index.name = ablation.param
    ref = str(ablation.reference)
    if ref in table.mean.index:
        table.row_markers[ref] = [REFERENCE]
        at_main = ablation.fixed_at == MAIN_TABLE_SETTING
        text = "the setting used in the main table." if at_main else "the ablation's base point."
        table.notes.append(Note(REFERENCE, text))
    if table.has_missing():
        table.notes.append(Note("dash", "not available, or undefined on the test set."))
    if random_init_methods(rows):
        table.notes.append(Note("", "Randomly initialised backbone (no pretrained weights)."))
    backbones = substituted_backbones(rows)
    if backbones:
        note = substitute_note(backbones)
        table.notes.append(Note("", note.text[0].upper() + note.text[1:]))
    table.notes.extend(_flag_notes(rows))
    return table


def all_tables(
    data: RunData, ablation_list: list[Ablation], digits: int = 2, interval: str = "std"
) -> list[Table]:
    tables = [main_table(data, digits, interval=interval), *timing_tables(data), speed_table(data)]
    tables += [ablation_table(a, digits) for a in ablation_list]
    return [t for t in tables if t is not None]
