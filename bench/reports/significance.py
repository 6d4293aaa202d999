"""Is the best method's lead over the runner-up real? A paired bootstrap on the same images.

For each dataset and each tested column of the main table (AUROC from the scores, F1 from the
decisions of the run's threshold rule), the best and the second-best method (by displayed
mean) are compared with :func:`bench.evaluation.stats.paired_bootstrap` on the per-image scores
stored in ``jobs/<id>.scores.csv``: images aligned by name, normals and anomalies resampled
separately, the difference pooled over the seeds both methods ran. Where p < ``alpha`` the best cell
gets a
``*`` and a note gives every p-value (tested or not), so a reader sees what was not significant
too. Decisions are rebuilt from the stored scores and the record's threshold (``score >
threshold``, the protocol's rule) or read from the ``decision`` column for the ``own`` rule;
oracle thresholds are re-chosen per resample in the stored metrics and are not tested here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.evaluation.stats import named_metric, paired_bootstrap
from bench.reports.load import RunData
from bench.reports.table_model import Note, Table
from bench.store.schema import Field
from bench.util.formatting import fixed, general

SIGNIFICANT = "*"
#: main-table column header -> (metric, what the metric reads: "score" or "decision")
TESTED_COLUMNS: dict[str, tuple[str, str]] = {"AUROC": ("auroc", "score"), "F1": ("f1", "decision")}


def _values(data: RunData, record: pd.Series, kind: str) -> pd.DataFrame | None:
    """``name, label, value`` of one job's test images, or None where they cannot be rebuilt."""
    scores = data.scores(str(record.get(Field.JOB_ID)))
    if scores is None or scores.empty:
        return None
    if kind == "score":
        value = scores["score"]
    else:
        rule = record.get(Field.THRESHOLD_RULE)
        threshold = record.get(Field.THRESHOLD)
        if rule == "own" and "decision" in scores:
            value = scores["decision"]
        elif rule == "calibrated" and threshold is not None and np.isfinite(float(threshold)):
            value = (scores["score"] > float(threshold)).astype(int)
        else:
            return None
    return pd.DataFrame({"name": scores["name"], "label": scores["label"], "value": value})


def _paired_arrays(
    data: RunData, rows: pd.DataFrame, dataset: str, a: str, b: str, kind: str
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    labels, values_a, values_b = [], [], []
    here = rows[rows[Field.DATASET] == dataset]
    seeds_a = set(here.loc[here[Field.METHOD] == a, Field.SEED])
    for seed in sorted(seeds_a & set(here.loc[here[Field.METHOD] == b, Field.SEED])):
        rec_a = here[(here[Field.METHOD] == a) & (here[Field.SEED] == seed)].iloc[0]
        rec_b = here[(here[Field.METHOD] == b) & (here[Field.SEED] == seed)].iloc[0]
        va, vb = _values(data, rec_a, kind), _values(data, rec_b, kind)
        if va is None or vb is None:
            continue
        both = va.merge(vb, on="name", suffixes=("_a", "_b"))
        if both.empty:
            continue
        labels.append(both["label_a"].to_numpy())
        values_a.append(both["value_a"].to_numpy(dtype=np.float64))
        values_b.append(both["value_b"].to_numpy(dtype=np.float64))
    return labels, values_a, values_b


def _best_two(table: Table, col: Any) -> tuple[str, str] | None:
    direction = table.better.get(col[-1], "higher")
    shown = table.shown(col).dropna()
    if len(shown) < 2:
        return None
    order = shown.sort_values(ascending=direction == "lower", kind="stable")
    if order.iloc[0] == order.iloc[1]:  # a tie: nobody leads
        return None
    return str(order.index[0]), str(order.index[1])


def mark_significance(
    table: Table,
    data: RunData,
    rows: pd.DataFrame,
    alpha: float = 0.05,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[tuple[str, str], float]:
    """Fill ``table.cell_markers`` and add a note; returns {(dataset, column): p-value}."""
    markers = pd.DataFrame("", index=table.mean.index, columns=table.mean.columns)
    p_values: dict[tuple[str, str], float] = {}
    lines = []
    for col in table.mean.columns:
        dataset, header = str(col[0]), str(col[-1])
        if header not in TESTED_COLUMNS:
            continue
        pair = _best_two(table, col)
        if pair is None:
            continue
        metric, kind = TESTED_COLUMNS[header]
        labels, va, vb = _paired_arrays(data, rows, dataset, pair[0], pair[1], kind)
        if not labels:
            continue
        result = paired_bootstrap(labels, va, vb, named_metric(metric), n_resamples, seed)
        if math.isnan(result.p_value):
            continue
        p_values[(dataset, header)] = result.p_value
        if result.p_value < alpha:
            markers.loc[pair[0], col] = SIGNIFICANT
        lines.append(f"{header} on {dataset}: {pair[0]} vs {pair[1]} p={fixed(result.p_value, 3)}")
    if p_values:
        table.cell_markers = markers
        table.notes.append(
            Note(
                "",
                f"{SIGNIFICANT} best method better than the runner-up at p < {general(alpha)} "
                f"(paired bootstrap over the same test images, {n_resamples} resamples, "
                f"pooled over seeds). " + "; ".join(lines) + ".",
            )
        )
    return p_values
