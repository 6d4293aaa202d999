"""One way to check a parameter dataclass's values, with one-line errors that name the field.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class P:
...     size: int = 0
>>> check = field_check("mymethod", P())
>>> check(P().size >= 8, "size", ">= 8")
Traceback (most recent call last):
...
bench.util.errors.ConfigError: mymethod.size must be >= 8, got 0
"""

from __future__ import annotations

from collections.abc import Callable

from bench.util.errors import ConfigError

#: ``check(ok, field, must)``: nothing when ``ok``, else the field's one-line ConfigError.
FieldCheck = Callable[[bool, str, str], None]


def field_check(method: str, params: object) -> FieldCheck:
    """A checker of ``params`` (a parameter dataclass of ``method``): ``check(ok, field, must)``
    raises ``<method>.<field> must be <must>, got <value>`` when ``ok`` is false."""

    def check(ok: bool, field: str, must: str) -> None:
        if not ok:
            raise ConfigError(f"{method}.{field} must be {must}, got {getattr(params, field)!r}")

    return check
