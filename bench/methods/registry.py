"""Name -> method factory, with typed parameters, presets and ``--set`` overrides.

A method registers once (``register_method``) with a parameter dataclass whose defaults are the
paper's settings, and named presets that override some of them. ``bench run``, ``bench ablate``
and the Python API all build detectors through :func:`build_params` + :func:`build_detector`,
so an override means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, Union, get_args, get_origin

# MethodEntry lives in bench.interface (method modules build theirs without importing the
# registry); importing it from here keeps working.
from bench.interface import Method, MethodEntry
from bench.util.errors import ConfigError, unknown_name

PRESETS = ("paper", "quick", "cpu", "auto")


_METHODS: dict[str, MethodEntry] = {}
_BUILTINS_LOADED = False


def register_method(entry: MethodEntry) -> None:
    _METHODS[entry.name] = entry


# Each module defines ``method_entries() -> list[MethodEntry]``; add new method modules here.
BUILTIN_MODULES: tuple[str, ...] = (
    "bench.methods.radar.detector",
    "bench.methods.diffusionad.detector",
    "bench.methods.ddpm_recon",
    "bench.methods.anomalib.adapter",
    "bench.methods.classical",
    "bench.methods.bui_apley",
)


_BUILTIN_ORIGIN: dict[str, str] = {}  # method name -> the builtin module that defines it
_LOADED_MODULES: set[str] = set()
_PARTIAL = False  # only some builtin modules are loaded (load_builtins_only, worker processes)


def _import_builtins(module_names: Iterable[str]) -> None:
    for module_name in module_names:
        if module_name in _LOADED_MODULES:
            continue
        module = importlib.import_module(module_name)
        for entry in module.method_entries():
            register_method(entry)
            _BUILTIN_ORIGIN[entry.name] = module_name
        _LOADED_MODULES.add(module_name)


def _load_builtins() -> None:
    # Imported lazily: method modules pull in diffusers/anomalib, which take seconds to import.
    global _BUILTINS_LOADED, _PARTIAL
    if _BUILTINS_LOADED:
        return
    _import_builtins(BUILTIN_MODULES)
    _BUILTINS_LOADED, _PARTIAL = True, False


def builtin_module(name: str) -> str | None:
    """The builtin module that defines method ``name`` (None: registered at run time)."""
    _load_builtins()
    return _BUILTIN_ORIGIN.get(name)


def load_builtins_only(module_names: Iterable[str]) -> None:
    """Register the methods of these builtin modules, not yet the others: a worker process
    that runs jobs of known methods then need not import every method module (anomalib alone
    takes seconds per process). A method of another module is still found: asking for it
    loads the rest."""
    global _BUILTINS_LOADED, _PARTIAL
    if _BUILTINS_LOADED and not _PARTIAL:
        return
    _import_builtins(module_names)
    _BUILTINS_LOADED = _PARTIAL = True


def methods() -> dict[str, MethodEntry]:
    _load_builtins()
    return dict(_METHODS)


def get_method(name: str) -> MethodEntry:
    global _PARTIAL
    known = methods()
    if name not in known and _PARTIAL:  # only some builtins were loaded: load the rest
        _import_builtins(BUILTIN_MODULES)
        _PARTIAL = False
        known = dict(_METHODS)
    if name not in known and name.startswith("anomalib:"):
        # Any anomalib image model by class name, built on first use.
        from bench.methods.anomalib.adapter import resolve_method

        register_method(resolve_method(name))
        return _METHODS[name]
    if name not in known:
        raise unknown_name("method", name, known)
    return known[name]


def resolve_preset(preset: str, device_type: str) -> str:
    """``auto`` means the paper's settings on a GPU and the minutes-long ``quick`` elsewhere
    (the default first run stays short); ``cpu``, what a laptop should use on real data, is
    only ever asked for by name."""
    if preset not in PRESETS:
        raise unknown_name("preset", preset, PRESETS)
    if preset == "auto":
        return "paper" if device_type == "cuda" else "quick"
    return preset


def parse_sets(sets: Iterable[str], method_names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["radar.t=5"]`` -> ``{"radar": {"t": "5"}}``; every method named must be in the run."""
    wanted = set(method_names)
    out: dict[str, dict[str, str]] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        method, dot, param = key.strip().partition(".")
        if not sep or not dot or not method or not param:
            raise ConfigError(f"--set {item!r}: expected METHOD.PARAM=VALUE, e.g. radar.t=5")
        if method not in wanted:
            raise ConfigError(
                f"--set {item!r}: method '{method}' is not in --methods "
                f"({', '.join(sorted(wanted))})"
            )
        out.setdefault(method, {})[param.strip()] = value.strip()
    return out


def param_fields(params_cls: type) -> dict[str, tuple[Any, Any]]:
    """Field name -> (type, default) of a parameter dataclass, types resolved."""
    hints = typing.get_type_hints(params_cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(params_cls)}


def build_params(
    name: str, preset: str = "paper", overrides: dict[str, object] | None = None
) -> Any:
    """The method's parameter dataclass: defaults, then the preset, then the overrides.

    Override values may be strings (from the command line) or already-typed values.
    """
    entry = get_method(name)
    fields = param_fields(entry.params_cls)
    values: dict[str, object] = {}
    if preset != "paper":
        if preset not in entry.presets:
            raise unknown_name(f"preset of {name}", preset, ["paper", *entry.presets])
        values.update(entry.presets[preset])
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise unknown_name(f"parameter of {name}", key, fields)
        values[key] = coerce(raw, fields[key][0], f"{name}.{key}")
    try:
        return entry.params_cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def build_detector(name: str, params: Any) -> Method[Any]:
    """The method ``name`` built from ``params``; it must derive from
    :class:`~bench.interface.Method`, whose hooks the runner calls."""
    detector = get_method(name).build(params)
    if not isinstance(detector, Method):
        raise TypeError(
            f"method {name!r}: its build returned a {type(detector).__name__}, which does not "
            "derive from bench.interface.Method (README: Adding a method)"
        )
    return detector


def params_dict(params: Any) -> dict[str, object]:
    """JSON-able view of a parameter dataclass (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()
    }


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "|".join(str(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def describe_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in get_args(tp))
    if origin is tuple:
        return f"tuple of {_type_name(get_args(tp)[0])}"
    return _type_name(tp)


def coerce(raw: object, tp: Any, where: str) -> object:
    """Turn a command-line string into a value of the field's type, or a one-line error."""
    if not isinstance(raw, str):
        return tuple(raw) if isinstance(raw, list) else raw
    text = raw.strip()
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        # "" is a value of an optional string (DRAEM's dtd_dir: no anomaly-source folder), so
        # that a record's params build the same job again; elsewhere it means None
        nulls = ("none", "null") if str in args else ("none", "null", "")
        if type(None) in args and text.lower() in nulls:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(text, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}={raw!r}: expected {describe_type(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ConfigError(f"{where}={raw!r}: expected one of {', '.join(map(str, choices))}")
    if origin is tuple:
        item_tp = get_args(tp)[0]
        parts = [p for p in text.strip("()[]").replace(" ", "").split(",") if p]
        return tuple(coerce(p, item_tp, where) for p in parts)
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}={raw!r}: expected true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where}={raw!r}: expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where}={raw!r}: expected a number") from None
    if tp is str:
        return text
    raise ConfigError(f"{where}: parameters of type {describe_type(tp)} cannot be set from text")
