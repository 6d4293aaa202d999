"""One number formatter (bench.util.formatting) behind every output: console, Markdown, LaTeX,
HTML and the compare verdict write a number the same way."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import pytest

from bench.reports import html, latex, markdown
from bench.reports.table_model import Table
from bench.util.formatting import (
    LATEX,
    UNDEFINED,
    fixed,
    general,
    signed,
    significant,
    slowdown,
    spread,
    undefined,
)


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_a_number_a_table_cannot_show_is_one_dash_cell(value):
    assert undefined(value)
    assert fixed(value, 3) == UNDEFINED == "--"
    assert spread(value, 0.1, 3, 2) == UNDEFINED


def test_fixed_rounds_to_the_digits_asked_for():
    assert [fixed(0.91249, d) for d in (0, 1, 3)] == ["1", "0.9", "0.912"]
    assert fixed(2, 1) == "2.0"


def test_spread_shows_std_only_over_several_values_and_prefers_an_interval():
    assert spread(0.6666, 0.0212, 1, 2) == "0.67"
    assert spread(0.6666, 0.0212, 3, 2) == "0.67 ± 0.02"
    assert spread(0.6666, math.nan, 3, 2) == "0.67"
    assert spread(0.6666, 0.0212, 3, 2, interval=(0.6, 0.72)) == "0.67 [0.60, 0.72]"
    assert spread(0.6666, 0.0212, 3, 2, interval=(0.6, None)) == "0.67 ± 0.02"
    assert spread(0.6666, 0.0212, 3, 3, notation=LATEX) == "0.667\\pm0.021"
    assert spread(0.6666, 0.0, 3, 2, (0.6, 0.72), LATEX) == "0.67\\,[0.60,0.72]"


def _table() -> Table:
    cols = pd.MultiIndex.from_tuples([("d", "F1"), ("d", "AUROC")])
    frame = partial(pd.DataFrame, index=["a", "b"], columns=cols)
    table = Table(
        "t",
        "T",
        frame([[0.6666, 0.5], [np.nan, 0.25]]),
        frame([[0.0212, 0.25], [0.1, np.nan]]),
        frame([[2, 3], [2, 1]]),
        digits={"F1": 2, "AUROC": 1},
    )
    table.cell_markers = frame([["*", ""], ["*", ""]])
    return table


def test_markdown_latex_and_html_cells_read_the_same_numbers():
    table = _table()
    assert table.cell_texts(markdown.cell_markup).tolist() == [
        ["0.67 ± 0.02<sup>*</sup>", "0.5 ± 0.2"],
        ["--", "0.2"],
    ]
    assert table.cell_texts(latex.cell_markup, LATEX).tolist() == [
        ["$0.67\\pm0.02^{*}$", "$0.5\\pm0.2$"],
        ["--", "$0.2$"],
    ]
    table.low, table.high = table.mean - 0.1, table.mean + 0.1
    assert table.cell_texts(latex.cell_markup, LATEX)[0, 0] == "$0.67\\,[0.57,0.77]^{*}$"
    assert "0.67 [0.57, 0.77]<sup>*</sup>" in html.table_html(table)


def test_compare_numbers():
    assert [significant(v) for v in (0.47366, 1234.5678, None)] == ["0.4737", "1235", "--"]
    assert [signed(v) for v in (0.05, -0.05, 0.0, 1e-5)] == [
        "+0.0500",
        "-0.0500",
        "+0.0000",
        "+1.00e-05",
    ]
    assert [slowdown(v) for v in (5347.28, 0.5, None)] == [
        "5347.28x slower",
        "2.00x faster",
        "--",
    ]
    assert [general(v) for v in (0.02, 1.5, 1e-05, 50.0)] == ["0.02", "1.5", "1e-05", "50"]


def test_a_cost_column_keeps_its_significant_figures_cell_by_cell():
    """GFLOP/image spans 6e-07 (a forest) to 124,926 (250 DDPM steps) in one table: fixed
    decimals would write the small ones 0.0, the same as a tie; significant figures do not."""
    cols = pd.MultiIndex.from_tuples([("d", "GFLOP/image")])
    frame = partial(pd.DataFrame, index=["forest", "pca", "radar", "ddpm"], columns=cols)
    table = Table(
        "t",
        "T",
        frame([[6e-07], [0.000176128], [0.28498], [124926.0]]),
        frame([[0.0], [0.0], [0.004], [3.0]]),
        frame([[2], [2], [2], [2]]),
        digits={"GFLOP/image": 1},
        figures={"GFLOP/image": 2},
        better={"GFLOP/image": "lower"},
    )
    assert table.cell_texts(markdown.cell_markup)[:, 0].tolist() == [
        "0.00000060",
        "0.00018",
        "0.28",  # a spread that rounds to nothing is not written
        "124926 ± 3",
    ]
    assert table.ranks()[cols[0]].tolist() == [1, 2, 0, 0]  # not a three-way tie at 0.0
