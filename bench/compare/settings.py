"""Project settings for ``bench compare``: tolerances read from ``bench.toml`` or pyproject.

Where the settings come from, first match wins:

1. the file given with ``--config`` (a ``bench.toml``-style file, or a ``pyproject.toml``);
2. ``bench.toml`` in the current folder;
3. ``[tool.bench]`` in ``pyproject.toml`` in the current folder;
4. the defaults below.

In ``bench.toml`` the section is ``[compare]``; in ``pyproject.toml`` it is
``[tool.bench.compare]``. Other top-level sections are left to other tools (the CPU smoke
definition keeps its ``[smoke]`` section in the same file). Every key is optional::

    [compare]
    quality_abs = 0.02     # a quality metric may not drop by more than this (absolute)
    time_ratio = 1.5       # a time may not grow by more than this factor (same device only)
    memory_ratio = 1.25    # peak memory may not grow by more than this factor (same device only)
    gate_timing = true     # false: times and memory are reported, never a regression
    missing_jobs = "fail"  # "fail" or "warn": a baseline job absent from the candidate
    two_sided = false      # true: a quality metric that moves beyond its tolerance in EITHER
                           # direction fails (a reference to refresh on any change of behaviour)
    ignore = ["ms_per_image_p95"]   # metrics not compared at all

    [compare.metrics]      # per-metric overrides
    auroc = 0.01                            # just the tolerance (abs for quality, factor for time)
    fit_s = { tolerance = 3.0, min_change = 5.0 }   # min_change: in the metric's own unit
    f1 = { gate = false }                   # reported, never a regression
    my_error = { direction = "lower" }      # a metric bench does not know: which way is better

>>> s = CompareSettings()
>>> s.rule("auroc").tolerance, s.rule("fit_s").tolerance, s.rule("peak_mem_mb").family
(0.02, 1.5, 'memory')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bench.store.schema import Timing
from bench.util.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib  # type: ignore[no-redef]

Family = Literal["quality", "time", "memory"]
Direction = Literal["higher", "lower"]

DEFAULT_QUALITY_ABS = 0.02
DEFAULT_TIME_RATIO = 1.5
DEFAULT_MEMORY_RATIO = 1.25

#: The numbers of ``record["timing"]`` that are compared: (family, direction, min_change, gate).
#: ``min_change`` (in the metric's own unit) keeps sub-second noise on tiny jobs from being
#: read as a 2x slowdown. ``images_per_s`` is ``n_test / predict_s`` (already gated) and the
#: p95 latency of a few repeats is too noisy to gate: both are reported only.
TIMING_METRICS: dict[str, tuple[Family, Direction, float, bool]] = {
    Timing.FIT_S: ("time", "lower", 1.0, True),
    Timing.PREDICT_S: ("time", "lower", 0.5, True),
    Timing.MS_PER_IMAGE: ("time", "lower", 2.0, True),
    Timing.MS_PER_IMAGE_P95: ("time", "lower", 2.0, False),
    Timing.IMAGES_PER_S: ("time", "higher", 0.0, False),
    Timing.PEAK_MEM_MB: ("memory", "lower", 50.0, True),
}

_COMPARE_KEYS = {
    "quality_abs",
    "time_ratio",
    "memory_ratio",
    "gate_timing",
    "missing_jobs",
    "two_sided",
    "ignore",
    "metrics",
}
_METRIC_KEYS = {"tolerance", "gate", "direction", "min_change"}


@dataclass(frozen=True)
class MetricRule:
    """How one metric is judged. ``quality``: ``tolerance`` is the largest allowed absolute
    drop (with ``two_sided``, also the largest allowed rise); ``time``/``memory``: the largest
    allowed factor (candidate slower by at most ``tolerance`` x), and changes smaller than
    ``min_change`` never count."""

    name: str
    family: Family
    direction: Direction
    tolerance: float
    gate: bool = True
    min_change: float = 0.0
    two_sided: bool = False

    @property
    def is_ratio(self) -> bool:
        return self.family != "quality"


@dataclass(frozen=True)
class CompareSettings:
    quality_abs: float = DEFAULT_QUALITY_ABS
    time_ratio: float = DEFAULT_TIME_RATIO
    memory_ratio: float = DEFAULT_MEMORY_RATIO
    gate_timing: bool = True
    missing_jobs: Literal["fail", "warn"] = "fail"
    two_sided: bool = False
    ignore: tuple[str, ...] = ()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "defaults"

    def rule(self, name: str) -> MetricRule:
        """The rule for metric ``name``: its family's default, then any per-metric override.

        Names in ``record["timing"]`` are time or memory (see :data:`TIMING_METRICS`); every
        other name is a quality metric, higher-is-better unless :data:`bench.evaluation.metrics.
        metric_directions` or the settings say otherwise."""
        from bench.evaluation.metrics import metric_directions

        if name in TIMING_METRICS:
            family, direction, min_change, gate = TIMING_METRICS[name]
            tolerance = self.time_ratio if family == "time" else self.memory_ratio
            gate = gate and self.gate_timing
        else:
            family, min_change, gate = "quality", 0.0, True
            direction = metric_directions.get(name, "higher")  # type: ignore[assignment]
            tolerance = self.quality_abs
        two_sided = family == "quality" and self.two_sided
        rule = MetricRule(name, family, direction, tolerance, gate, min_change, two_sided)
        extra = self.overrides.get(name, {})
        if extra:
            rule = replace(rule, **extra)
        if rule.family != "quality" and not self.gate_timing:
            rule = replace(rule, gate=False)  # --no-timing-gate wins over per-metric settings
        return rule


def _check_number(value: object, where: str, low: float, strict: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if strict else value >= low):
        return float(value)  # type: ignore[arg-type]
    sign = ">" if strict else ">="
    raise ConfigError(f"{where}: expected a number {sign} {low}, got {value!r}")


def _check_keys(table: dict[str, Any], valid: set[str], where: str) -> None:
    unknown = set(table) - valid
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(valid))}"
        )


def _metric_override(name: str, value: object, where: str) -> dict[str, Any]:
    where = f"{where}.metrics.{name}"
    if not isinstance(value, dict):
        value = {"tolerance": value}
    _check_keys(value, _METRIC_KEYS, where)
    out: dict[str, Any] = {}
    if "tolerance" in value:
        out["tolerance"] = _check_number(value["tolerance"], f"{where}.tolerance", 0.0)
    if "min_change" in value:
        out["min_change"] = _check_number(value["min_change"], f"{where}.min_change", 0.0)
    if "gate" in value:
        if not isinstance(value["gate"], bool):
            raise ConfigError(f"{where}.gate: expected true or false, got {value['gate']!r}")
        out["gate"] = value["gate"]
    if "direction" in value:
        if value["direction"] not in ("higher", "lower"):
            raise ConfigError(
                f"{where}.direction: expected 'higher' or 'lower', got {value['direction']!r}"
            )
        out["direction"] = value["direction"]
    return out


def settings_from_dict(table: dict[str, Any], where: str = "[compare]") -> CompareSettings:
    """Validate one ``[compare]`` table; ``where`` names it in error messages."""
    _check_keys(table, _COMPARE_KEYS, where)
    kwargs: dict[str, Any] = {}
    if "quality_abs" in table:
        kwargs["quality_abs"] = _check_number(table["quality_abs"], f"{where}.quality_abs", 0.0)
    for key in ("time_ratio", "memory_ratio"):
        if key in table:
            kwargs[key] = _check_number(table[key], f"{where}.{key}", 1.0)
    for key in ("gate_timing", "two_sided"):
        if key in table:
            if not isinstance(table[key], bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {table[key]!r}")
            kwargs[key] = table[key]
    if "missing_jobs" in table:
        if table["missing_jobs"] not in ("fail", "warn"):
            raise ConfigError(
                f"{where}.missing_jobs: expected 'fail' or 'warn', got {table['missing_jobs']!r}"
            )
        kwargs["missing_jobs"] = table["missing_jobs"]
    if "ignore" in table:
        ignore = table["ignore"]
        if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
            raise ConfigError(f"{where}.ignore: expected a list of metric names, got {ignore!r}")
        kwargs["ignore"] = tuple(ignore)
    metrics = table.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ConfigError(f"{where}.metrics: expected a table of metric names")
    kwargs["overrides"] = {
        name: _metric_override(name, value, where) for name, value in metrics.items()
    }
    return CompareSettings(**kwargs)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _compare_table(path: Path) -> tuple[dict[str, Any], str]:
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("bench", {}).get("compare", {})
        return table, f"{path} [tool.bench.compare]"
    return data.get("compare", {}), f"{path} [compare]"


def load_settings(config: Path | None = None, cwd: Path | None = None) -> CompareSettings:
    """Settings from ``config`` if given (it must exist), else ``bench.toml`` or
    ``pyproject.toml`` ``[tool.bench]`` in ``cwd`` (default: the current folder), else defaults."""
    if config is not None:
        config = Path(config)
        if not config.is_file():
            raise ConfigError(f"--config {config}: no such file (expected a bench.toml)")
        candidates = [config]
    else:
        folder = Path.cwd() if cwd is None else Path(cwd)
        candidates = [folder / "bench.toml"]
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "bench" in _read_toml(pyproject).get("tool", {}):
            candidates.append(pyproject)
    for path in candidates:
        if path.is_file():
            table, where = _compare_table(path)
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: expected a table")
            return replace(settings_from_dict(table, where), source=where)
    return CompareSettings()
