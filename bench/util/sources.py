"""Where each default of a method's parameters comes from.

A parameter dataclass declares each default with one of :func:`paper`, :func:`official`,
:func:`ours` or :func:`suite` instead of a bare value. The source lives in the field's
``metadata``, so it changes neither the parameter values nor the records' parameter dicts nor
the job hashes; ``bench list`` prints it beside every default, and a reader can tell at a glance
which numbers the paper gives and which are the suite's reading of what it leaves open.

Kinds (:data:`KINDS`):

``paper``
    The paper states this value; ``where`` names the place (section, table, or the setting as
    the paper words it).
``official code``
    The authors' released code sets it; ``where`` names the file.
``paper-unspecified (our choice)``
    The paper does not give it (or gives it only in words): the value is ours; ``where`` says
    why this one.
``suite``
    A knob of the suite rather than of the method (speed paths, batch sizes that leave the
    numbers unchanged, the variants we add for ablations).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class P:
...     size: int = paper(100, "Sec. 4: images resized to 100 x 100")
...     lr: float = ours(1e-4, "not reported")
>>> P().size, source_of(P, "lr")
(100, ('paper-unspecified (our choice)', 'not reported'))
>>> describe_source(P, "size")
'paper: Sec. 4: images resized to 100 x 100'
"""

from __future__ import annotations

import dataclasses
from typing import Any

PAPER = "paper"
OFFICIAL = "official code"
OURS = "paper-unspecified (our choice)"
SUITE = "suite"
KINDS: tuple[str, ...] = (PAPER, OFFICIAL, OURS, SUITE)


def _field(default: Any, kind: str, where: str) -> Any:
    return dataclasses.field(default=default, metadata={"source": kind, "where": where})


def paper(default: Any, where: str) -> Any:
    """A default the paper states; ``where``: section, table or the paper's words."""
    return _field(default, PAPER, where)


def official(default: Any, where: str) -> Any:
    """A default of the authors' released code; ``where``: the file (and setting)."""
    return _field(default, OFFICIAL, where)


def ours(default: Any, why: str = "") -> Any:
    """A value the paper leaves open; ``why``: the reason for this one."""
    return _field(default, OURS, why)


def suite(default: Any, why: str = "") -> Any:
    """A knob of the suite (speed, memory, our ablation variants), not of the method."""
    return _field(default, SUITE, why)


def source_of(params_cls: type, name: str) -> tuple[str, str] | None:
    """(kind, where) of one parameter, or None where the dataclass declares none."""
    for f in dataclasses.fields(params_cls):
        if f.name == name:
            kind = f.metadata.get("source")
            return None if kind is None else (kind, f.metadata.get("where", ""))
    raise KeyError(name)


def describe_source(params_cls: type, name: str) -> str:
    """One line for ``bench list``: ``kind: where``, the kind alone, or '' when undeclared."""
    source = source_of(params_cls, name)
    if source is None:
        return ""
    kind, where = source
    return f"{kind}: {where}" if where else kind


def undeclared(params_cls: type) -> list[str]:
    """The parameters whose source is not declared (a test keeps this empty for the methods
    that must declare all of theirs)."""
    return [f.name for f in dataclasses.fields(params_cls) if "source" not in f.metadata]
