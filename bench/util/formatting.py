"""How a number is written, in every output: console tables, Markdown, LaTeX, HTML, the compare
verdict. One place, so that a number reads the same in the terminal and in the paper.

It sits below every layer (not in :mod:`bench.reports`) because :mod:`bench.compare`, which
may not import the reports, writes the same numbers in its verdict lines and Markdown.

A number a table cannot show (None, NaN, infinite: undefined on the test set, or absent) is
written :data:`UNDEFINED`; the store never writes NaN or infinity (JSON null instead), so a
cell never reads ``nan``.

>>> fixed(0.91234, 3), fixed(None, 3), fixed(float("nan"), 1)
('0.912', '--', '--')
>>> spread(0.6666, 0.0212, 2, 2), spread(0.6666, 0.0212, 1, 2)
('0.67 ± 0.02', '0.67')
>>> spread(0.6666, 0.0212, 2, 2, interval=(0.6, 0.72), notation=LATEX)
'0.67\\\\,[0.60,0.72]'
>>> significant(12345.6), significant(0.5), signed(0.00001), slowdown(2.0), slowdown(0.5)
('1.235e+04', '0.5000', '+1.00e-05', '2.00x slower', '2.00x faster')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The cell of a number that is undefined or absent.
UNDEFINED = "--"


def undefined(value: float | None) -> bool:
    """Whether ``value`` cannot be shown as a number (None, NaN or infinite)."""
    return value is None or not math.isfinite(value)


def fixed(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals, or :data:`UNDEFINED`."""
    return UNDEFINED if undefined(value) else f"{value:.{digits}f}"


def decimals_for(value: float | None, figures: int) -> int:
    """The decimals that write ``value`` with ``figures`` significant figures (none for large
    values): for a column whose values span orders of magnitude, as GFLOP/image does (6e-07
    for an IsolationForest, 124,926 for 250-step DDPM reconstruction).

    >>> [fixed(v, decimals_for(v, 2)) for v in (6e-07, 0.28498, 56.3, 124926.0, 0.0)]
    ['0.00000060', '0.28', '56', '124926', '0']
    """
    if undefined(value) or value == 0:
        return 0
    return max(0, figures - 1 - math.floor(math.log10(abs(value))))


def general(value: float) -> str:
    """The shortest plain form (``0.02``, ``1.5``, ``1e-05``): tolerances, levels, peaks."""
    return f"{value:g}"


@dataclass(frozen=True)
class Notation:
    """How an output writes a spread around a mean: the plus-minus sign and the brackets of
    an interval."""

    plus_minus: str = " ± "
    open: str = " ["
    separator: str = ", "
    close: str = "]"


#: Console, Markdown and HTML: ``0.67 ± 0.02``, ``0.67 [0.60, 0.72]``.
PLAIN = Notation()
#: LaTeX math mode: ``0.67\pm0.02``, ``0.67\,[0.60,0.72]``.
LATEX = Notation(plus_minus="\\pm", open="\\,[", separator=",")


def spread(
    mean: float | None,
    std: float | None,
    n: int,
    digits: int,
    interval: Sequence[float | None] | None = None,
    notation: Notation = PLAIN,
) -> str:
    """A mean over ``n`` values with its spread: the interval when it is given and defined,
    else the standard deviation when there is more than one value; :data:`UNDEFINED` without
    a mean."""
    if undefined(mean):
        return UNDEFINED
    text = fixed(mean, digits)
    if interval is not None and not any(undefined(v) for v in interval):
        low, high = (fixed(v, digits) for v in interval)
        return f"{text}{notation.open}{low}{notation.separator}{high}{notation.close}"
    if n > 1 and not undefined(std):
        text += f"{notation.plus_minus}{fixed(std, digits)}"
    return text


def significant(value: float | None, digits: int = 4) -> str:
    """``digits`` decimals, or ``digits`` significant digits from 1000 on (``1.235e+04``): a
    value beside a tolerance (the compare verdict)."""
    if value is None:
        return UNDEFINED
    return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def signed(change: float) -> str:
    """A difference with its sign: ``+0.0123``, or ``+1.00e-05`` for changes too small for
    four decimals (tight tolerances)."""
    return f"{change:+.4f}" if change == 0 or abs(change) >= 1e-4 else f"{change:+.2e}"


def slowdown(factor: float | None) -> str:
    """A time or memory ratio (> 1 is worse): ``2.00x slower`` or ``2.00x faster``."""
    if factor is None:
        return UNDEFINED
    return f"{factor:.2f}x slower" if factor >= 1 else f"{1 / factor:.2f}x faster"


def grid_text(value: Any) -> str:
    """A parameter value as ``--grid`` takes it: lists (tuples in JSON) as ``(16,32,32)``."""
    if isinstance(value, list | tuple):
        return "(" + ",".join(map(str, value)) + ")"
    return str(value)
