"""``bench ablate``: one method over a grid of parameter values, through the ordinary runner.

``--grid t=1,5,10 --grid scorer=iforest,irf`` names the values of each varied parameter. The grid
is either the Cartesian product of all of them, or (``one_at_a_time``, what papers usually show)
the base configuration (preset + ``--set``) plus every value of one parameter at a time with the
others at their base values. Every point x dataset x seed is one job of the ordinary runner and
store, so an ablation resumes like any run; its records carry

* ``record["varied"]``: ``{param: value}`` for every grid parameter (its effective value in that
  job, typed), i.e. one column per varied parameter (``varied.t`` in ``records.csv``);
* ``record["ablation"]``: ``{"mode": "cartesian" | "one_at_a_time", "base": {param: value}}``;

and the run's ``manifest.json`` names the grid under ``"ablation"``. Jobs that differ only in
parameters the training does not depend on (``t``, the scorer ...) reuse one trained network
through the run's cache (see :mod:`bench.methods.radar.detector`).

>>> parse_grid(["t=1,5", "block_out_channels=(16,32),(32,64)"])
{'t': ['1', '5'], 'block_out_channels': ['(16,32)', '(32,64)']}
>>> grid_points({"t": ["1", "5"], "scorer": ["iforest", "irf"]}, one_at_a_time=False)
[{'t': '1', 'scorer': 'iforest'}, {'t': '1', 'scorer': 'irf'}, {'t': '5', 'scorer': 'iforest'}, \
{'t': '5', 'scorer': 'irf'}]
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.table import Table

from bench.execution.config import JobSpec, RunConfig, resolve_device
from bench.methods import registry
from bench.util.errors import ConfigError, unknown_name
from bench.util.hashing import stable_hash

MODES = ("cartesian", "one_at_a_time")

# Commas inside (...) or [...] belong to a tuple value: "block_out_channels=(16,32),(32,64)".
_TOP_LEVEL_COMMA = re.compile(r",(?![^()\[\]]*[)\]])")


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["t=1,5", "scorer=iforest,irf"]`` -> ``{"t": ["1", "5"], "scorer": [...]}``.

    A ``method.`` prefix on the parameter is accepted and dropped. Values stay strings here;
    :func:`expand_ablation` types and validates them against the method's parameters.
    """
    axes: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        param = key.strip().rpartition(".")[2]
        parts = [v.strip() for v in _TOP_LEVEL_COMMA.split(values) if v.strip()]
        if not sep or not param or not parts:
            raise ConfigError(f"--grid {item!r}: expected PARAM=V1,V2,..., e.g. t=1,5,10")
        if param in axes:
            raise ConfigError(f"--grid {item!r}: parameter '{param}' is given twice")
        axes[param] = list(dict.fromkeys(parts))
    if not axes:
        raise ConfigError("--grid: expected at least one PARAM=V1,V2,... (e.g. --grid t=1,5)")
    return axes


def grid_points(axes: dict[str, list[str]], one_at_a_time: bool) -> list[dict[str, str]]:
    """The overrides of each grid point: the product, or one parameter at a time.

    One at a time starts with the base point ``{}`` (no override); values equal to the base are
    dropped later, once typed (:func:`expand_ablation`).
    """
    names = list(axes)
    if not one_at_a_time:
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return [{}] + [{name: value} for name in names for value in axes[name]]


@dataclass
class Ablation:
    """An expanded ablation: what the runner needs, and what the tables and manifest show."""

    config: RunConfig
    jobs: list[JobSpec]
    grid: dict[str, list[Any]]  # typed values per parameter, in the order given
    base: dict[str, Any]  # the base value of each grid parameter (preset + --set)
    mode: str

    @property
    def run_id(self) -> str:
        method = self.config.methods[0]
        label = "-".join(d.split(":")[-1] for d in self.config.datasets[:2])
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"ablate-{method}-{label}")[:60]
        key = stable_hash({"config": self.config.config_hash, "grid": self.manifest()})
        return f"{label}-{key[:8]}"

    def manifest(self) -> dict[str, Any]:
        return {"method": self.config.methods[0], "mode": self.mode, "grid": self.grid,
                "base": self.base}  # fmt: skip


def _typed(params: Any, name: str) -> Any:
    """The JSON-able value of one parameter (tuples as lists), as records store it."""
    return registry.params_dict(params)[name]


def expand_ablation(
    cfg: RunConfig,
    axes: dict[str, list[str]],
    one_at_a_time: bool,
    device: torch.device | None = None,
) -> Ablation:
    """Type and validate every grid point up front (a bad value fails before any work).
    ``device``: the one the jobs will run on when that is not this machine's (a GPU plan
    checked on a CPU, results/gpu/plan.py); default ``cfg.device`` resolved here."""
    if len(cfg.methods) != 1:
        raise ConfigError(f"--method: an ablation varies one method, got {cfg.methods}")
    method = cfg.methods[0]
    fields = registry.param_fields(registry.get_method(method).params_cls)
    for param in axes:
        if param not in fields:
            raise unknown_name(f"--grid parameter of {method}", param, fields)
    device = resolve_device(cfg.device) if device is None else device
    preset = registry.resolve_preset(cfg.preset, device.type)
    sets = dict(cfg.sets.get(method, {}))
    base_params = registry.build_params(method, preset, sets)
    base = {p: _typed(base_params, p) for p in axes}
    grid: dict[str, list[Any]] = {}
    for param, values in axes.items():
        grid[param] = []
        for value in values:
            try:
                typed = registry.coerce(value, fields[param][0], f"{method}.{param}")
            except ConfigError as exc:
                raise ConfigError(f"--grid {param}={value}: {exc}") from None
            grid[param].append(list(typed) if isinstance(typed, tuple) else typed)

    mode = MODES[1] if one_at_a_time else MODES[0]
    root = None if cfg.data_root is None else str(Path(cfg.data_root).resolve())
    jobs: dict[str, JobSpec] = {}
    for point in grid_points(axes, one_at_a_time):
        try:
            params = registry.build_params(method, preset, {**sets, **point})
        except ConfigError as exc:  # a value out of range, or a combination that does not fit
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            kind = "--grid" if len(point) == 1 else "--grid point"
            raise ConfigError(f"{kind} {where or '(base)'}: {exc}") from None
        values = registry.params_dict(params)
        varied = {p: values[p] for p in axes}
        extra = {"varied": varied, "ablation": {"mode": mode, "base": base}}
        for dataset in cfg.datasets:
            for seed in cfg.seeds:
                data_root = None if dataset.startswith("synthetic") else root
                spec = JobSpec(
                    method, values, preset, dataset, seed, device.type, data_root, extra,
                    threshold=cfg.protocol,
                )  # fmt: skip
                jobs.setdefault(spec.job_id, spec)  # one-at-a-time repeats the base point
    return Ablation(cfg, list(jobs.values()), grid, base, mode)


# -- tables ----------------------------------------------------------------------------------

# (column title, record column in records_frame, digits)
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("AUROC", "metrics.auroc", 3),
    ("pixel AUROC", "metrics.pixel_auroc", 3),
    ("F1", "metrics.f1", 3),
    ("fit s", "timing.fit_s", 1),
    ("ms/image", "timing.ms_per_image", 1),
    ("train s", "fit_info.train_seconds", 1),
    ("train mem MB", "fit_info.train_peak_mem_mb", 0),
)


def _mean_std(values: pd.Series, digits: int) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "--"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    std = v.std(ddof=1)
    return f"{v.mean():.{digits}f} ± {0.0 if math.isnan(std) else std:.{digits}f}"


def _key(value: Any) -> str:
    return str(tuple(value)) if isinstance(value, list) else str(value)


def ablation_frames(records: list[dict[str, Any]], ablation: dict[str, Any]) -> dict[str, Any]:
    """Per varied parameter, the rows of the summary: (dataset, value) -> mean ± std strings.

    One at a time, a parameter's table holds the jobs whose other grid parameters are at their
    base values; in a Cartesian grid it averages over the other parameters' values too.
    """
    from bench.store.runs import records_frame

    ok = [r for r in records if r.get("status") == "ok" and "varied" in r]
    frame = records_frame(ok)
    out: dict[str, Any] = {}
    if frame.empty:
        return out
    grid, base = ablation["grid"], ablation["base"]
    one_at_a_time = ablation["mode"] == "one_at_a_time"
    for param, values in grid.items():
        sub = frame
        if one_at_a_time:
            for other in grid:
                if other != param:
                    sub = sub[sub[f"varied.{other}"].map(_key) == _key(base[other])]
        rows = []
        order = [_key(v) for v in values]
        if one_at_a_time and _key(base[param]) not in order:
            order = [_key(base[param]), *order]
        for dataset, by_dataset in sub.groupby("dataset", sort=False):
            keys = by_dataset[f"varied.{param}"].map(_key)
            for value in order:
                cell = by_dataset[keys == value]
                if cell.empty:
                    continue
                row = {"dataset": dataset, param: value, "n": len(cell)}
                for title, column, digits in TABLE_COLUMNS:
                    row[title] = _mean_std(cell[column], digits) if column in cell else "--"
                rows.append(row)
        out[param] = pd.DataFrame(rows)
    return out


def ablation_tables(records: list[dict[str, Any]], ablation: dict[str, Any]) -> list[Table]:
    """One rich table per varied parameter (mean ± std over seeds)."""
    over = "seeds" if ablation["mode"] == "one_at_a_time" else "seeds and the other grid values"
    tables = []
    for param, frame in ablation_frames(records, ablation).items():
        base = _key(ablation["base"][param])
        table = Table(title=f"{ablation['method']}: {param} (base {base}; mean ± std over {over})")
        for col in frame.columns:
            table.add_column(str(col), justify="left" if col in ("dataset", param) else "right")
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        tables.append(table)
    return tables
