"""``bench ablate``: one method over a grid of parameter values, through the ordinary runner.

``--grid t=1,5,10 --grid scorer=iforest,irf`` names the values of each varied parameter. The grid
is either the Cartesian product of all of them, or (``one_at_a_time``, what papers usually show)
the base configuration (preset + ``--set``) plus every value of one parameter at a time with the
others at their base values. Every point x dataset x seed is one job of the ordinary runner and
store, so an ablation resumes like any run; its records carry

* ``record["varied"]``: ``{param: value}`` for every grid parameter (its effective value in that
  job, typed), i.e. one column per varied parameter (``varied.t`` in ``records.csv``);
* ``record["ablation"]``: ``{"mode": "cartesian" | "one_at_a_time", "base": {param: value}}``;

and the run's ``manifest.json`` names the grid under ``"ablation"`` (field names:
:mod:`bench.store.schema`; the closing tables: :mod:`bench.reports.ablation_summary`). Jobs
that differ only in parameters the training does not depend on (``t``, the scorer ...) reuse
one trained network through the run's cache (see :mod:`bench.methods.radar.detector`).

>>> parse_grid(["t=1,5", "block_out_channels=(16,32),(32,64)"])
{'t': ['1', '5'], 'block_out_channels': ['(16,32)', '(32,64)']}
>>> grid_points({"t": ["1", "5"], "scorer": ["iforest", "irf"]}, one_at_a_time=False)
[{'t': '1', 'scorer': 'iforest'}, {'t': '1', 'scorer': 'irf'}, {'t': '5', 'scorer': 'iforest'}, \
{'t': '5', 'scorer': 'irf'}]
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import torch

from bench.execution.config import JobSpec, RunConfig, resolve_device
from bench.methods import registry
from bench.store.schema import AblationInfo, Field
from bench.util.errors import ConfigError, unknown_name
from bench.util.hashing import stable_hash

MODES = (AblationInfo.CARTESIAN, AblationInfo.ONE_AT_A_TIME)

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
        return {
            AblationInfo.METHOD: self.config.methods[0],
            AblationInfo.MODE: self.mode,
            AblationInfo.GRID: self.grid,
            AblationInfo.BASE: self.base,
        }


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
        ablation = {AblationInfo.MODE: mode, AblationInfo.BASE: base}
        extra = {Field.VARIED: varied, Field.ABLATION: ablation}
        for dataset in cfg.datasets:
            for seed in cfg.seeds:
                spec = JobSpec(
                    method, values, preset, dataset, seed, device.type,
                    cfg.job_data_root(dataset), extra, threshold=cfg.protocol,
                )  # fmt: skip
                jobs.setdefault(spec.job_id, spec)  # one-at-a-time repeats the base point
    return Ablation(cfg, list(jobs.values()), grid, base, mode)
