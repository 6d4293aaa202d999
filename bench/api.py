"""The suite from Python: run a grid, load stored runs, build a report, compare two runs.

The ``bench`` command is a thin shell over these functions (same configuration, same runner,
same store), so a notebook and the command line produce the same records and resume each
other's runs. Results come back as pandas DataFrames: one row per job, nested record fields
flattened with dots (``metrics.auroc``, ``params.t``, ``timing.ms_per_image``).

>>> import bench
>>> frame = bench.load_runs("results/reference/cpu-smoke")
>>> sorted(frame["method"].unique())
['iforest', 'pca', 'radar']
>>> frame[["method", "seed", "metrics.auroc"]].shape
(6, 3)
>>> verdict = bench.compare_runs("results/reference/cpu-smoke", "results/reference/cpu-smoke")
>>> verdict.verdict, verdict.counts()["jobs_compared"]
('pass', 6)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from bench.compare.gate import Comparison
    from bench.execution.config import RunConfig
    from bench.execution.runner import RunOutcome

__all__ = ["compare_runs", "load_runs", "report", "run", "run_config"]

PathLike = str | os.PathLike[str]


def _names(value: str | Iterable[str], flag: str) -> list[str]:
    from bench.execution.config import split_names

    return split_names(value if isinstance(value, str) else ",".join(value), flag)


def _set_strings(sets: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """``{"radar.t": 5}`` or ``["radar.t=5"]`` -> the ``--set`` strings."""
    if sets is None:
        return []
    if isinstance(sets, Mapping):
        return [f"{key}={value}" for key, value in sets.items()]
    return list(sets)


def run_config(
    methods: str | Iterable[str] = "radar",
    datasets: str | Iterable[str] = "synthetic",
    seeds: str | Iterable[int] = "0",
    *,
    preset: str = "auto",
    device: str = "auto",
    sets: Mapping[str, Any] | Iterable[str] | None = None,
    data_root: PathLike | None = None,
    threads: int | None = None,
    workers: int = 1,
    timing_repeats: int = 5,
    protocol: str = "suite",
    threshold: str | None = None,
    calibration_fraction: float | None = None,
    target_fpr: float = 0.05,
) -> RunConfig:
    """The run configuration ``bench run`` builds from its flags (the same checks and errors,
    naming the flag: ``--methods``, ``--seeds``, ``--set``, ...)."""
    from bench.evaluation.protocol import resolve_protocol
    from bench.execution import policy
    from bench.execution.config import RunConfig, parse_seeds
    from bench.methods import registry

    method_list = _names(methods, "--methods")
    seed_text = seeds if isinstance(seeds, str) else ",".join(str(int(s)) for s in seeds)
    rule, fraction = resolve_protocol(protocol, threshold, calibration_fraction)
    root = data_root if data_root is not None else os.environ.get("BENCH_DATA")
    cfg = RunConfig(
        methods=method_list,
        datasets=_names(datasets, "--datasets"),
        seeds=parse_seeds(seed_text),
        preset=preset,
        device=device,
        sets=registry.parse_sets(_set_strings(sets), method_list),
        data_root=Path(root) if root else None,
        timing_repeats=timing_repeats,
        threshold=rule,
        calibration_fraction=fraction,
        target_fpr=target_fpr,
    )
    policy.apply_job_limits(cfg, threads, workers)
    return cfg


def run(
    methods: str | Iterable[str] = "radar",
    datasets: str | Iterable[str] = "synthetic",
    seeds: str | Iterable[int] = "0",
    *,
    results_dir: PathLike = "results/runs",
    run_id: str | None = None,
    name: str | None = None,
    force: bool = False,
    fail_fast: bool = False,
    on_job_end: Callable[[dict[str, Any] | None], None] | None = None,
    **config: Any,
) -> pd.DataFrame:
    """Run (or resume) methods x datasets x seeds and return the run's records, one row per
    job. ``config`` takes :func:`run_config`'s keywords (``preset``, ``sets``, ``data_root``,
    ...). Finished jobs of the same run folder are not recomputed unless ``force``.

    >>> frame = bench.run("iforest", "synthetic", [0], preset="quick",
    ...                   results_dir=tmp, run_id="doc")              # doctest: +SKIP
    >>> frame.loc[0, "metrics.auroc"]                                 # doctest: +SKIP
    """
    outcome = run_outcome(
        run_config(methods, datasets, seeds, **config),
        results_dir=results_dir,
        run_id=run_id,
        name=name,
        force=force,
        fail_fast=fail_fast,
        on_job_end=on_job_end,
    )
    return load_runs(outcome.run_dir)


def run_outcome(
    cfg: RunConfig, results_dir: PathLike = "results/runs", **kwargs: Any
) -> RunOutcome:
    """:func:`bench.execution.runner.run` on a configuration: the run folder and its records
    as the runner returns them (``bench run`` calls this with its progress callbacks)."""
    from bench.execution import runner
    from bench.store.runs import check_run_id

    if kwargs.get("run_id") is not None:
        check_run_id(kwargs["run_id"])
    return runner.run(cfg, results_dir=Path(results_dir), **kwargs)


def load_runs(*paths: PathLike) -> pd.DataFrame:
    """Records of one or many stored runs (a run folder, a folder of run folders, a
    ``records.csv`` or one job ``.json``) as one DataFrame, one row per job (a job found twice
    is kept once), with a ``source`` column naming where each row came from."""
    from bench.reports.load import load_run
    from bench.util.errors import ConfigError

    if not paths:
        raise ConfigError("load_runs: expected at least one run folder or records file")
    frames = [load_run(Path(p)).records.assign(source=str(p)) for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    if "job_id" in frame:
        frame = frame.drop_duplicates("job_id", keep="last").reset_index(drop=True)
    return frame


def report(source: PathLike, out: PathLike, digits: int = 2, interval: str = "std") -> Path:
    """Write ``bench report``'s tables, figures and page for ``source``; returns index.html."""
    from bench.reports.build import write_report

    return write_report(Path(source), Path(out), digits=digits, interval=interval).index


def compare_runs(
    baseline: PathLike, candidate: PathLike, config: PathLike | None = None
) -> Comparison:
    """``bench compare``'s verdict as data: ``.verdict`` ("pass" | "regression"), ``.reasons()``,
    ``.counts()``, ``.jobs`` (per job, per metric); :func:`bench.compare.gate.to_json` gives the
    JSON the command writes. Tolerances come from ``config`` (a TOML file) or the defaults."""
    from bench.compare.gate import compare_paths
    from bench.compare.settings import load_settings

    settings = load_settings(Path(config) if config is not None else None)
    return compare_paths(Path(baseline), Path(candidate), settings)
