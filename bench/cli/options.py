"""The options that several ``bench`` commands share, each defined once: its flag, default and
help (a command that says it differently passes its own help text).

The launcher flags of ``bench run`` and ``bench ablate`` come as one group
(:func:`launcher_flags`): the command declares ``launch`` and receives them as the keyword
arguments of :class:`bench.execution.launchers.LauncherOptions`.

Imports only typer: ``bench --help`` must stay fast.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

#: ``bench --debug``: tracebacks instead of one-line errors (set by :func:`bench.cli.main`).
debug = False

AS_FOR_RUN = "As for bench run."
DATA_ENV = "BENCH_DATA"


def methods(help: str = "Comma-separated method names.") -> Any:
    return typer.Option("radar", "--methods", "-m", help=help)


def datasets(help: str = "synthetic[:texture], mvtec:<category>, prints3d.") -> Any:
    return typer.Option("synthetic", "--datasets", "-d", help=help)


def seeds() -> Any:
    return typer.Option("0", "--seeds", help="Seeds: 0,1,2 or 0-4.")


def preset(help: str = "paper | quick | cpu | auto (paper on CUDA, quick on CPU).") -> Any:
    return typer.Option("auto", "--preset", help=help)


def device() -> Any:
    return typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N.")


def sets(help: str = "Override a method parameter: METHOD.PARAM=VALUE (repeatable).") -> Any:
    return typer.Option([], "--set", help=help)


def data_root(help: str = "Folder holding the datasets (or set BENCH_DATA).") -> Any:
    return typer.Option(None, "--data-root", help=help)


def data_root_or_env(value: Path | None) -> Path | None:
    """``--data-root``, else ``$BENCH_DATA`` when set, else None."""
    if value is not None:
        return value
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else None


def results_dir(help: str | None = "Where run folders are written.") -> Any:
    return typer.Option(Path("results/runs"), "--results-dir", help=help)


#: ``--results-dir`` of the commands that read runs.
LOOKED_UP = "Where run ids are looked up."


def run_id(help: str) -> Any:
    return typer.Option(None, "--run-id", help=help)


def name(help: str) -> Any:
    return typer.Option(None, "--name", help=help)


def seed(help: str | None = None) -> Any:
    return typer.Option(0, "--seed", help=help)


def force() -> Any:
    return typer.Option(False, "--force", help="Recompute jobs that already finished.")


def fail_fast() -> Any:
    return typer.Option(False, "--fail-fast", help="Stop at the first failed job.")


def threads(help: str = "Torch CPU threads per job.") -> Any:
    return typer.Option(None, "--threads", help=help)


def timing_repeats() -> Any:
    return typer.Option(5, "--timing-repeats", help="Timed latency repeats.")


def protocol() -> Any:
    """The threshold protocol (:mod:`bench.evaluation.protocol`)."""
    return typer.Option(
        "suite",
        "--protocol",
        help="suite (default: calibrated threshold on held-out normals, the fair comparison) | "
        "paper (all normal training images in training, the method's own decision: what a "
        "paper's Acc/Prec/Rec/F1 are compared with).",
    )


#: Where jobs run (:mod:`bench.execution.launchers`), in ``--help`` order:
#: (parameter, type, option).
LAUNCHER_FLAGS: tuple[tuple[str, Any, Any], ...] = (
    (
        "launcher",
        str,
        typer.Option(
            "local", "--launcher", help="Where jobs run: local (this machine) | ray | slurm."
        ),
    ),
    (
        "workers",
        int,
        typer.Option(
            1,
            "--workers",
            help="local: jobs at once, each in its own process (own GPU if several).",
        ),
    ),
    (
        "ray_address",
        str | None,
        typer.Option(
            None,
            "--ray-address",
            help="ray: cluster address (auto, ray://host:10001); default local.",
        ),
    ),
    (
        "slurm_partition",
        str | None,
        typer.Option(None, "--slurm-partition", help="slurm: partition."),
    ),
    (
        "slurm_gpus_per_job",
        int | None,
        typer.Option(
            None,
            "--slurm-gpus-per-job",
            help="slurm: GPUs per job (default 1; 0 with --device cpu).",
        ),
    ),
    (
        "slurm_time",
        int,
        typer.Option(60, "--slurm-time", help="slurm: time limit per job, minutes."),
    ),
    (
        "slurm_cpus_per_job",
        int | None,
        typer.Option(None, "--slurm-cpus-per-job", help="slurm: CPUs per job (default --threads)."),
    ),
    ("slurm_mem_gb", float | None, typer.Option(None, "--slurm-mem-gb", help="slurm: memory, GB.")),
    (
        "slurm_array_parallelism",
        int | None,
        typer.Option(
            None, "--slurm-array-parallelism", help="slurm: at most this many jobs at once."
        ),
    ),
    (
        "slurm_setup",
        list[str],
        typer.Option(
            [], "--slurm-setup", help="slurm: shell line run before each job (repeatable)."
        ),
    ),
    ("slurm_cluster", str, typer.Option("slurm", "--slurm-cluster", hidden=True)),
    (
        "wait",
        bool,
        typer.Option(
            True,
            "--wait/--no-wait",
            help="slurm: wait for the jobs (--no-wait: submit, return).",
        ),
    ),
)


def launcher_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Gives ``command`` the launcher flags in place of its keyword-only parameter ``launch``,
    which receives them as a dict (``slurm_setup`` as a tuple)."""
    hints = typing.get_type_hints(command)
    params = []
    for param in inspect.signature(command).parameters.values():
        if param.name != "launch":
            params.append(param.replace(annotation=hints.get(param.name, param.annotation)))
            continue
        params += [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=tp)
            for name, tp, opt in LAUNCHER_FLAGS
        ]

    @functools.wraps(command)
    def with_flags(**kwargs: Any) -> None:
        launch = {name: kwargs.pop(name) for name, _, _ in LAUNCHER_FLAGS}
        launch["slurm_setup"] = tuple(launch["slurm_setup"])
        command(**kwargs, launch=launch)

    with_flags.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    with_flags.__annotations__ = {p.name: p.annotation for p in params}
    return with_flags


def mlflow() -> Any:
    return typer.Option(
        False,
        "--mlflow",
        help="Log each job to MLflow as it finishes (one MLflow run per job under one per "
        "bench run); needs the mlflow extra.",
    )


def mlflow_uri() -> Any:
    return typer.Option(
        None,
        "--mlflow-uri",
        help="MLflow tracking URI, or a folder for a local SQLite store in it (default: "
        "<results-dir>/mlruns/); implies --mlflow.",
    )
