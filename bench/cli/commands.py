"""The ``bench`` command line: thin wiring of options to the runner, registry and store."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.cli.speed import speed as speed_command
from bench.evaluation.protocol import resolve_protocol
from bench.execution.config import RunConfig, check_seed, parse_seeds, split_names
from bench.methods import registry
from bench.store.runs import check_run_id
from bench.util.errors import BenchError, ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark image anomaly detectors: RADAR, diffusion reconstruction, anomalib.",
)
data_app = typer.Typer(no_args_is_help=True, help="Get or generate datasets.")
app.add_typer(data_app, name="data")
app.command("speed")(speed_command)  # bench speed: bench/cli/speed.py

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)
#: ``bench --debug``: tracebacks instead of one-line errors (set by :func:`main`).
_DEBUG = False


# Where jobs run: shared by `bench run` and `bench ablate` (bench/launchers).
LAUNCHER_OPTION = typer.Option(
    "local", "--launcher", help="Where jobs run: local (this machine) | ray | slurm."
)
WORKERS_OPTION = typer.Option(
    1, "--workers", help="local: jobs at once, each in its own process (own GPU if several)."
)
RAY_ADDRESS_OPTION = typer.Option(
    None, "--ray-address", help="ray: cluster address (auto, ray://host:10001); default local."
)
SLURM_PARTITION_OPTION = typer.Option(None, "--slurm-partition", help="slurm: partition.")
SLURM_GPUS_OPTION = typer.Option(
    None, "--slurm-gpus-per-job", help="slurm: GPUs per job (default 1; 0 with --device cpu)."
)
SLURM_TIME_OPTION = typer.Option(60, "--slurm-time", help="slurm: time limit per job, minutes.")
SLURM_CPUS_OPTION = typer.Option(
    None, "--slurm-cpus-per-job", help="slurm: CPUs per job (default --threads)."
)
SLURM_MEM_OPTION = typer.Option(None, "--slurm-mem-gb", help="slurm: memory, GB.")
SLURM_PARALLELISM_OPTION = typer.Option(
    None, "--slurm-array-parallelism", help="slurm: at most this many jobs at once."
)
SLURM_SETUP_OPTION = typer.Option(
    [], "--slurm-setup", help="slurm: shell line run before each job (repeatable)."
)
SLURM_CLUSTER_OPTION = typer.Option("slurm", "--slurm-cluster", hidden=True)
# The threshold protocol: shared by `bench run` and `bench ablate` (bench/evaluation/protocol.py).
PROTOCOL_OPTION = typer.Option(
    "suite",
    "--protocol",
    help="suite (default: calibrated threshold on held-out normals, the fair comparison) | "
    "paper (all normal training images in training, the method's own decision: what a "
    "paper's Acc/Prec/Rec/F1 are compared with).",
)
WAIT_OPTION = typer.Option(
    True, "--wait/--no-wait", help="slurm: wait for the jobs (--no-wait: submit, return)."
)


def _data_root(value: Path | None) -> Path | None:
    if value is not None:
        return value
    env = os.environ.get("BENCH_DATA")
    return Path(env) if env else None


@app.command()
def run(
    methods: str = typer.Option("radar", "--methods", "-m", help="Comma-separated method names."),
    datasets: str = typer.Option(
        "synthetic", "--datasets", "-d", help="synthetic[:texture], mvtec:<category>, prints3d."
    ),
    seeds: str = typer.Option("0", "--seeds", help="Seeds: 0,1,2 or 0-4."),
    preset: str = typer.Option(
        "auto", "--preset", help="paper | quick | auto (paper on CUDA, quick on CPU)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a method parameter: METHOD.PARAM=VALUE (repeatable)."
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder holding the datasets (or set BENCH_DATA)."
    ),
    results_dir: Path = typer.Option(
        Path("results/runs"), "--results-dir", help="Where run folders are written."
    ),
    run_id: str | None = typer.Option(
        None,
        "--run-id",
        help="Run folder name (default: derived from the config, so reruns resume).",
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Label of the run (bench history, bench compare NAME); the default run folder "
        "becomes <name>-<config hash>.",
    ),
    force: bool = typer.Option(False, "--force", help="Recompute jobs that already finished."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed job."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads per job."),
    timing_repeats: int = typer.Option(5, "--timing-repeats", help="Timed latency repeats."),
    protocol: str = PROTOCOL_OPTION,
    threshold: str | None = typer.Option(
        None,
        "--threshold",
        help="Rule for accuracy/precision/recall/F1: calibrated (default; on held-out normal "
        "training images) | own (the method's decision) | oracle (best F1 on the test set). "
        "All three are stored in every record.",
    ),
    calibration_fraction: float | None = typer.Option(
        None,
        "--calibration-fraction",
        help="Share of the normal training images held out of fit (all methods alike) to "
        "calibrate the threshold (default 0.1); at least 5 images; 0 = no hold-out.",
    ),
    target_fpr: float = typer.Option(
        0.05, "--target-fpr", help="Calibrated threshold: this share of held-out normals flagged."
    ),
    launcher: str = LAUNCHER_OPTION,
    workers: int = WORKERS_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    slurm_partition: str | None = SLURM_PARTITION_OPTION,
    slurm_gpus_per_job: int | None = SLURM_GPUS_OPTION,
    slurm_time: int = SLURM_TIME_OPTION,
    slurm_cpus_per_job: int | None = SLURM_CPUS_OPTION,
    slurm_mem_gb: float | None = SLURM_MEM_OPTION,
    slurm_array_parallelism: int | None = SLURM_PARALLELISM_OPTION,
    slurm_setup: list[str] = SLURM_SETUP_OPTION,
    slurm_cluster: str = SLURM_CLUSTER_OPTION,
    wait: bool = WAIT_OPTION,
) -> None:
    """Run methods x datasets x seeds; one record per job; finished jobs are skipped."""
    from bench.execution import runner
    from bench.execution.launchers import LauncherOptions, done_line, make_launcher

    if run_id is not None:  # before the imports and checks of a run: seconds of waiting
        check_run_id(run_id)
    method_list = split_names(methods, "--methods")
    rule, fraction = resolve_protocol(protocol, threshold, calibration_fraction)
    cfg = RunConfig(
        methods=method_list,
        datasets=split_names(datasets, "--datasets"),
        seeds=parse_seeds(seeds),
        preset=preset,
        device=device,
        sets=registry.parse_sets(sets, method_list),
        data_root=_data_root(data_root),
        timing_repeats=timing_repeats,
        threshold=rule,
        calibration_fraction=fraction,
        target_fpr=target_fpr,
    )
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: expected a positive integer")
        cfg.threads = threads
    elif workers > 1:  # the cores are shared out, not oversubscribed (the timings would suffer)
        cfg.threads = max(1, min(8, (os.cpu_count() or 1) // workers))
    if timing_repeats < 1:
        raise ConfigError(f"--timing-repeats {timing_repeats}: expected a positive integer")
    options = LauncherOptions(
        launcher=launcher,
        workers=workers,
        ray_address=ray_address,
        slurm_partition=slurm_partition,
        slurm_gpus_per_job=slurm_gpus_per_job,
        slurm_time=slurm_time,
        slurm_cpus_per_job=slurm_cpus_per_job,
        slurm_mem_gb=slurm_mem_gb,
        slurm_array_parallelism=slurm_array_parallelism,
        slurm_cluster=slurm_cluster,
        slurm_setup=tuple(slurm_setup),
        wait=wait,
    )
    elsewhere = make_launcher(options)  # None: in this process, one job after the other

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        overall = bar.add_task("jobs", total=None)
        job_task = bar.add_task("", total=100, visible=False)

        def on_job_start(spec: Any, index: int, total: int) -> runner.ProgressFn:
            bar.update(overall, total=total)
            bar.reset(job_task, total=100, visible=True, description=spec.label())

            def progress(message: str, fraction: float) -> None:
                bar.update(
                    job_task,
                    completed=round(100 * fraction),
                    description=f"{spec.label()} · {message}",
                )

            return progress

        def on_job_end(record: dict[str, Any] | None) -> None:
            bar.advance(overall)
            if record is not None and elsewhere is not None:  # a line per job from the workers
                bar.console.print(done_line(record), markup=False, highlight=False)
            elif record is not None and record.get("status") != "ok":
                # escape: an error message may contain "[...]", which rich would parse as markup
                error = escape(str(record["error"]))
                bar.console.print(f"[red]failed[/red] {record['job_id']}: {error}")

        try:
            outcome = runner.run(
                cfg,
                results_dir=results_dir,
                run_id=run_id,
                force=force,
                fail_fast=fail_fast,
                on_job_start=on_job_start,
                on_job_end=on_job_end,
                name=name,
                launcher=elsewhere,
            )
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: finished jobs are saved; rerun the same command to resume"
                + ("; SLURM jobs keep running (scancel stops them)" if launcher == "slurm" else "")
            )
            raise typer.Exit(130) from None
        finally:
            if elsewhere is not None:
                elsewhere.close()
        bar.update(job_task, visible=False)

    if outcome.records:
        console.print(summary_table(outcome.records))
    for rec in outcome.records:
        line = runner.undefined_warning(rec)
        if line is not None:
            err_console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    note = f" ({outcome.skipped} already done, skipped)" if outcome.skipped else ""
    console.print(f"results: {outcome.run_dir}{note}")
    if outcome.submitted:
        console.print(
            f"submitted {outcome.submitted} job(s), not waiting; follow them with: "
            f"bench status {outcome.run_dir}",
            markup=False,
            highlight=False,
        )
    if outcome.failed:
        for rec in outcome.failed:
            # One unwrapped line per failure; "error:" where the user can fix it (bad data,
            # weights missing offline), "failed:" for a crash (traceback in the job record).
            prefix = "error" if rec.get("error_kind") == "input" else "failed"
            err_console.print(
                f"{prefix}: {rec.get('method')} on {rec.get('dataset')} seed "
                f"{rec.get('seed')}: {rec.get('error')}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            if _DEBUG and rec.get("traceback"):
                err_console.print(rec["traceback"], markup=False, highlight=False, soft_wrap=True)
        # 2 = bad input, as for errors found before the run starts; 1 = a job crashed.
        raise typer.Exit(2 if any(r.get("error_kind") == "input" for r in outcome.failed) else 1)


@app.command()
def ablate(
    method: str = typer.Option("radar", "--method", "-m", help="The one method to ablate."),
    datasets: str = typer.Option("synthetic", "--datasets", "-d", help="As for bench run."),
    grid: list[str] = typer.Option(
        [], "--grid", help="PARAM=V1,V2,... values of one varied parameter (repeatable)."
    ),
    one_at_a_time: bool = typer.Option(
        False, "--one-at-a-time", help="Vary one parameter at a time around the base config."
    ),
    seeds: str = typer.Option("0", "--seeds", help="Seeds: 0,1,2 or 0-4."),
    preset: str = typer.Option("auto", "--preset", help="paper | quick | auto."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    sets: list[str] = typer.Option(
        [], "--set", help="Base value of a parameter: METHOD.PARAM=VALUE (repeatable)."
    ),
    data_root: Path | None = typer.Option(None, "--data-root", help="Datasets folder."),
    results_dir: Path = typer.Option(Path("results/runs"), "--results-dir"),
    run_id: str | None = typer.Option(None, "--run-id", help="Run folder name."),
    force: bool = typer.Option(False, "--force", help="Recompute jobs that already finished."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed job."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads per job."),
    timing_repeats: int = typer.Option(5, "--timing-repeats", help="Timed latency repeats."),
    protocol: str = PROTOCOL_OPTION,
    launcher: str = LAUNCHER_OPTION,
    workers: int = WORKERS_OPTION,
    ray_address: str | None = RAY_ADDRESS_OPTION,
    slurm_partition: str | None = SLURM_PARTITION_OPTION,
    slurm_gpus_per_job: int | None = SLURM_GPUS_OPTION,
    slurm_time: int = SLURM_TIME_OPTION,
    slurm_cpus_per_job: int | None = SLURM_CPUS_OPTION,
    slurm_mem_gb: float | None = SLURM_MEM_OPTION,
    slurm_array_parallelism: int | None = SLURM_PARALLELISM_OPTION,
    slurm_setup: list[str] = SLURM_SETUP_OPTION,
    slurm_cluster: str = SLURM_CLUSTER_OPTION,
    wait: bool = WAIT_OPTION,
) -> None:
    """Run one method over a grid of parameter values; a table per varied parameter.

    The jobs go where ``bench run``'s do (``--workers``, ``--launcher ray|slurm``); variants that
    share a training configuration reuse one trained model through the run's cache when they run
    one after the other, and may each train it when they run at once.
    """
    from bench.execution import runner
    from bench.execution.ablate import ablation_tables, expand_ablation, parse_grid
    from bench.execution.launchers import LauncherOptions, done_line, make_launcher

    if run_id is not None:
        check_run_id(run_id)
    axes = parse_grid(grid)
    rule, fraction = resolve_protocol(protocol, None, None)
    cfg = RunConfig(
        methods=[method],
        datasets=split_names(datasets, "--datasets"),
        seeds=parse_seeds(seeds),
        preset=preset,
        device=device,
        sets=registry.parse_sets(sets, [method]),
        data_root=_data_root(data_root),
        timing_repeats=timing_repeats,
        threshold=rule,
        calibration_fraction=fraction,
    )
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: expected a positive integer")
        cfg.threads = threads
    elif workers > 1:  # as for bench run: the cores are shared out, not oversubscribed
        cfg.threads = max(1, min(8, (os.cpu_count() or 1) // workers))
    if timing_repeats < 1:
        raise ConfigError(f"--timing-repeats {timing_repeats}: expected a positive integer")
    plan = expand_ablation(cfg, axes, one_at_a_time)
    elsewhere = make_launcher(
        LauncherOptions(
            launcher=launcher,
            workers=workers,
            ray_address=ray_address,
            slurm_partition=slurm_partition,
            slurm_gpus_per_job=slurm_gpus_per_job,
            slurm_time=slurm_time,
            slurm_cpus_per_job=slurm_cpus_per_job,
            slurm_mem_gb=slurm_mem_gb,
            slurm_array_parallelism=slurm_array_parallelism,
            slurm_cluster=slurm_cluster,
            slurm_setup=tuple(slurm_setup),
            wait=wait,
        )
    )
    console.print(f"ablation: {len(plan.jobs)} jobs ({plan.mode}) of {method}")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        overall = bar.add_task("jobs", total=len(plan.jobs))

        def on_job_start(spec: Any, index: int, total: int) -> runner.ProgressFn:
            label = ", ".join(f"{k}={v}" for k, v in spec.record_extra["varied"].items())
            bar.update(overall, description=f"{spec.label()} · {label}")
            return lambda message, fraction: None

        def on_job_end(record: dict[str, Any] | None) -> None:
            bar.advance(overall)
            if record is not None and elsewhere is not None:  # a line per job from the workers
                bar.console.print(done_line(record), markup=False, highlight=False)
            elif record is not None and record.get("status") != "ok":
                error = escape(str(record["error"]))
                bar.console.print(f"[red]failed[/red] {record['job_id']}: {error}")

        try:
            outcome = runner.run(
                cfg,
                results_dir=results_dir,
                run_id=run_id or plan.run_id,
                force=force,
                fail_fast=fail_fast,
                on_job_start=on_job_start,
                on_job_end=on_job_end,
                job_list=plan.jobs,
                manifest_extra={"ablation": plan.manifest()},
                launcher=elsewhere,
            )
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: finished jobs are saved; rerun to resume"
                + ("; SLURM jobs keep running (scancel stops them)" if launcher == "slurm" else "")
            )
            raise typer.Exit(130) from None
        finally:
            if elsewhere is not None:
                elsewhere.close()
    for table in ablation_tables(outcome.records, plan.manifest()):
        console.print(table)
    note = f" ({outcome.skipped} already done, skipped)" if outcome.skipped else ""
    console.print(f"results: {outcome.run_dir}{note}")
    if outcome.submitted:
        console.print(
            f"submitted {outcome.submitted} job(s), not waiting; follow them with: "
            f"bench status {outcome.run_dir}",
            markup=False,
            highlight=False,
        )
    for rec in outcome.failed:
        err_console.print(
            f"failed: {rec.get('dataset')} seed {rec.get('seed')} {rec.get('varied')}: "
            f"{rec.get('error')}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if outcome.failed:
        raise typer.Exit(1)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "--"
    return f"{value:.{digits}f}"


def _with_interval(rec: dict[str, Any], name: str) -> str:
    """``0.912`` and, below it, the record's 95% bootstrap interval ``[0.85, 0.96]``."""
    value = _fmt((rec.get("metrics") or {}).get(name))
    interval = (rec.get("metrics_ci") or {}).get(name)
    if value == "--" or not interval or any(v is None or v != v for v in interval):
        return value
    return f"{value}\n[dim][{interval[0]:.2f}, {interval[1]:.2f}][/dim]"


_RULE_TITLES = {
    "calibrated": "calibrated threshold (held-out normal training images)",
    "own": "each method's own decision",
    "oracle": "ORACLE threshold (best F1 on the test set: an upper bound)",
}


def _backbone_flags(record: dict[str, Any]) -> list[str]:
    """``backbone:...`` flags: a pretrained backbone that is not the paper's."""
    return [f for f in record.get("flags") or [] if f.startswith("backbone:")]


def summary_table(records: list[dict[str, Any]]) -> Table:
    rules = sorted({str(r.get("threshold_rule", "own")) for r in records if r.get("metrics")})
    title = "radar-bench results"
    if len(rules) == 1:
        title += f": accuracy, precision, recall, F1 at the {_RULE_TITLES.get(rules[0], rules[0])}"
    table = Table(
        title=title,
        caption="[95% bootstrap interval over the test images, stratified by label]",
    )
    columns = ["method", "dataset", "seed", "preset"]
    if len(rules) > 1:
        columns.append("threshold")
    columns += ["accuracy", "precision", "recall", "F1", "AUROC", "pixel AUROC", "fit s"]
    columns += ["ms/image", "status"]
    for col in columns:
        table.add_column(col, justify="right" if col not in ("method", "dataset") else "left")
    if any("weights:random" in (r.get("flags") or []) for r in records):
        table.caption += "\n† randomly initialised backbone (no pretrained weights here)"
    substitutes = sorted({f for r in records for f in _backbone_flags(r)})
    if substitutes:
        table.caption += (
            f"\n§ {', '.join(substitutes)}: ImageNet EfficientNet-Lite in place of the paper's "
            "backbone (not the published configuration)"
        )
    if any(r.get("undefined_metrics") for r in records):
        table.caption += (
            "\n-- undefined on the test set (e.g. recall without anomalous test images): "
            "null in the record, never 0"
        )
    for rec in records:
        metrics = rec.get("metrics") or {}
        timing = rec.get("timing") or {}
        row = [
            # † = random-init weights (issue #4): never silently mixed with pretrained ones
            rec.get("method", "?")
            + (" †" if "weights:random" in (rec.get("flags") or []) else "")
            + (" §" if _backbone_flags(rec) else ""),
            rec.get("dataset", "?"),
            str(rec.get("seed", "?")),
            rec.get("preset", "?"),
        ]
        if len(rules) > 1:
            row.append(str(rec.get("threshold_rule", "own")))
        row += [_with_interval(rec, m) for m in ("accuracy", "precision", "recall", "f1", "auroc")]
        row += [
            _fmt(metrics.get("pixel_auroc")),
            _fmt(timing.get("fit_s"), 1),
            _fmt(timing.get("ms_per_image"), 1),
            "ok" if rec.get("status") == "ok" else "[red]failed[/red]",
        ]
        table.add_row(*row)
    return table


@app.command()
def status(
    run: str = typer.Argument(..., help="A run id (under --results-dir) or a run folder."),
    results_dir: Path = typer.Option(
        Path("results/runs"), "--results-dir", help="Where run ids are looked up."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="A row per job."),
    lines: int = typer.Option(10, "--lines", help="Log lines shown per failed job."),
) -> None:
    """Done / pending / running / failed jobs of a run, wherever it runs; logs of failures."""
    from bench.execution.status import render, resolve_run_dir, run_status

    state = run_status(resolve_run_dir(run, results_dir))
    for renderable in render(state, verbose=verbose, lines=lines):
        console.print(renderable)


@app.command("prepare")
def prepare_cmd(
    methods: str = typer.Option("radar", "--methods", "-m", help="Comma-separated method names."),
    datasets: str = typer.Option("synthetic", "--datasets", "-d", help="As for bench run."),
    preset: str = typer.Option(
        "auto", "--preset", help="paper | quick | auto (both: the nodes may have GPUs)."
    ),
    sets: list[str] = typer.Option([], "--set", help="METHOD.PARAM=VALUE, as for bench run."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Datasets folder."),
    fetch: bool = typer.Option(
        True, "--fetch/--check-only", help="Download what is missing, or only check."
    ),
) -> None:
    """Fetch the datasets and pretrained weights a grid needs (run where there is internet).
    Exit 1 when something is still missing."""
    from bench.execution.prepare import check_assets

    method_list = split_names(methods, "--methods")
    assets = check_assets(
        method_list,
        split_names(datasets, "--datasets"),
        preset=preset,
        sets=registry.parse_sets(sets, method_list),
        data_root=_data_root(data_root),
        fetch=fetch,
    )
    table = Table(title="assets the jobs need", title_justify="left")
    for col in ("asset", "needed by", "status", "where / reason"):
        table.add_column(col, overflow="fold")  # paths in full: the user must find them
    for a in assets:
        style = "red" if a.missing else ("green" if a.status == "fetched" else "")
        where = a.where + (f"\n{a.reason}" if a.reason else "")
        table.add_row(escape(a.what), escape(a.needed_by), a.status, escape(where), style=style)
    console.print(table)
    missing = [a for a in assets if a.missing]
    if missing:
        err_console.print(
            f"missing: {len(missing)} asset(s); the jobs that need them will fail offline",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)


@app.command("list")
def list_cmd() -> None:
    """Registered methods (parameters, defaults, presets, where each default comes from) and
    datasets."""
    from bench.datasets import DATASET_FAMILIES
    from bench.util.sources import describe_source

    for name, entry in registry.methods().items():
        table = Table(title=f"{name}: {entry.summary}", title_justify="left")
        table.add_column("parameter")
        table.add_column("type")
        table.add_column("paper preset (default)")
        for preset in entry.presets:
            table.add_column(preset)
        # paper | official code (file) | paper-unspecified (our choice) | suite (bench.util.sources)
        table.add_column("source of the default")
        for field_name, (tp, default) in registry.param_fields(entry.params_cls).items():
            row = [field_name, registry.describe_type(tp), str(default)]
            row += [str(p.get(field_name, "")) for p in entry.presets.values()]
            row.append(describe_source(entry.params_cls, field_name))
            table.add_row(*row)
        console.print(table)
    table = Table(title="datasets", title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for family, text in DATASET_FAMILIES.items():
        table.add_row(family, text)
    console.print(table)


@app.command()
def show(path: Path = typer.Argument(..., help="A run folder.")) -> None:
    """Print the summary table of a stored run."""
    from bench.store.runs import RunStore

    store = RunStore(path)
    records = store.records()
    if not records:
        raise ConfigError(f"{path}: no job records (expected {path}/jobs/*.json)")
    console.print(summary_table(records))


@app.command()
def report(
    source: Path = typer.Argument(
        ..., help="A run id (under --results-dir), a run folder, a folder of runs or records.csv."
    ),
    out: Path = typer.Option(Path("reports"), "--out", help="Folder for tables, figures, HTML."),
    results_dir: Path = typer.Option(
        Path("results/runs"), "--results-dir", help="Where run ids are looked up."
    ),
    digits: int = typer.Option(2, "--digits", help="Decimals of the metrics in the tables."),
    interval: str = typer.Option(
        "std",
        "--interval",
        help="Main-table spread: std (mean ± std over seeds) or bootstrap (95% interval over "
        "test images).",
    ),
) -> None:
    """LaTeX/Markdown/CSV tables, figures and index.html from stored records (never reruns)."""
    from bench.reports.build import write_report

    path = source if source.exists() else results_dir / source
    if not path.exists():
        raise ConfigError(f"{source}: neither a results folder/file nor a run id in {results_dir}")
    if not 0 <= digits <= 6:
        raise ConfigError(f"--digits {digits}: expected an integer from 0 to 6")
    if interval not in ("std", "bootstrap"):
        raise ConfigError(f"--interval {interval!r}: expected std or bootstrap")
    result = write_report(path, out, digits, interval)
    n_figures = len(result.files.get("png", []))
    console.print(f"report: {result.index} ({len(result.tables)} tables, {n_figures} figures)")
    for reason in result.skipped:
        console.print(f"not drawn: {reason}", markup=False, highlight=False)


@app.command()
def compare(
    baseline: str = typer.Argument(
        ...,
        help="Baseline: run folder, folder of runs, records.csv, "
        "job .json, or a run name/id under results/.",
    ),
    candidate: str = typer.Argument(..., help="Candidate, same forms as the baseline."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Tolerances file (bench.toml format; default: ./bench.toml, else the "
        "tool.bench.compare table of ./pyproject.toml).",
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Write the report as Markdown here (e.g. $GITHUB_STEP_SUMMARY)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the JSON verdict here."),
    no_timing_gate: bool = typer.Option(
        False, "--no-timing-gate", help="Report time and memory changes, never fail on them."
    ),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Baseline jobs absent from the candidate: warn, not fail."
    ),
    show_all: bool = typer.Option(False, "--all", help="Show every metric, not only changes."),
    update: bool = typer.Option(
        False,
        "--update",
        help="After comparing, make the candidate the new baseline (exit 0); BASELINE is then "
        "a folder path, created if absent.",
    ),
    results_root: Path = typer.Option(
        Path("results"), "--results-root", help="Where run names are looked up."
    ),
) -> None:
    """Gate a candidate run against a baseline. Exit 0 pass, 1 regression, 2 bad input."""
    import dataclasses

    from bench.compare import gate as cmp_mod
    from bench.compare.settings import load_settings
    from bench.store.history import resolve_run

    settings = load_settings(config)
    if no_timing_gate:
        settings = dataclasses.replace(settings, gate_timing=False)
    if allow_missing:
        settings = dataclasses.replace(settings, missing_jobs="warn")
    cand_path = resolve_run(candidate, results_root)
    base_path = Path(baseline)
    # --update may create the reference, or fill a folder that holds only its definition.
    first = update and not any(base_path.glob("jobs/*.json")) and not base_path.is_file()
    if not first:
        base_path = resolve_run(baseline, results_root)
        result = cmp_mod.compare_paths(base_path, cand_path, settings)
        for renderable in cmp_mod.rich_tables(result, everything=show_all):
            console.print(renderable)
        cmp_mod.write_reports(result, markdown, json_out)
        reasons = result.reasons()
        for reason in reasons[:10]:
            err_console.print(
                f"regression: {reason}", markup=False, highlight=False, soft_wrap=True
            )
        if len(reasons) > 10:
            err_console.print(f"regression: ... and {len(reasons) - 10} more (see the table)")
        code = result.exit_code
    if update:
        n = cmp_mod.update_reference(base_path, cand_path)
        console.print(f"updated {base_path}: {n} record(s) from {cand_path}")
        code = 0
    raise typer.Exit(code)


@app.command()
def history(
    root: Path = typer.Argument(Path("results"), help="Folder searched for run folders."),
    name: str | None = typer.Option(None, "--name", help="Only runs of this name or id."),
    method: str | None = typer.Option(None, "--method", help="Only this method."),
    last: int | None = typer.Option(None, "--last", help="Only the newest N runs."),
    metrics: str = typer.Option(
        "auroc,pixel_auroc,f1,ms_per_image", "--metrics", help="Headline metrics (seed means)."
    ),
) -> None:
    """Past runs, oldest first: name, date, git commit, seeds, headline metrics."""
    from bench.store.history import history_frame

    names = tuple(split_names(metrics, "--metrics"))
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; expected a folder holding run folders")
    frame = history_frame(root, names, name=name, method=method, last=last)
    if frame.empty:
        console.print(f"no runs under {root}")
        return
    table = Table(title=f"runs under {root}", title_justify="left")
    columns = ["run", "started", "commit", "method", "dataset", "seeds", "ok", *names]
    for col in columns:
        table.add_column(col, justify="right" if col in names else "left")
    for row in frame.to_dict("records"):
        started = str(row["started"] or "")[:16].replace("T", " ")
        cells = [str(row["run"]), started, str(row["commit"] or "--")]
        cells += [str(row[c]) for c in ("method", "dataset", "seeds", "ok")]
        cells += [
            _fmt(row[m], 1 if m.endswith(("_s", "_ms", "_mb")) or "ms_" in m else 3) for m in names
        ]
        table.add_row(*cells)
    console.print(table)


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help="Dataset to download: mvtec."),
    category: str | None = typer.Option(None, "--category", help="One MVTec category."),
    data_root: Path | None = typer.Option(None, "--data-root", help="Where to put it."),
    url: str | None = typer.Option(None, "--url", help="Mirror URL of the archive."),
    checksum: str | None = typer.Option(None, "--checksum", help="Expected checksum."),
) -> None:
    """Download and checksum an official dataset archive (needs internet)."""
    from bench.datasets.download import download_mvtec

    if name != "mvtec":
        raise ConfigError(f"bench data download {name!r}: only 'mvtec' can be downloaded")
    root = _data_root(data_root)
    if root is None:
        raise ConfigError("--data-root (or BENCH_DATA) is required: where to put MVTec AD")
    path = download_mvtec(root, category, url=url, checksum=checksum)
    console.print(f"MVTec AD ready at {path}")


@data_app.command("synthetic")
def data_synthetic(
    out: Path = typer.Option(..., "--out", help="Folder to write the MVTec-layout copy into."),
    texture: str = typer.Option("brick", "--texture", help="brick, grass or gravel."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the synthetic set to disk in the MVTec folder layout."""
    from bench.datasets.synthetic import SyntheticDataset

    path = SyntheticDataset(texture=texture).write_mvtec_layout(out, check_seed(seed))
    console.print(f"synthetic:{texture} (seed {seed}) written to {path}")


def main() -> None:
    global _DEBUG
    debug = _DEBUG = "--debug" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--debug"]
    if not debug:
        # Deprecation notices that libraries print on import (timm, anomalib) are for their
        # developers, and would break the promise of one line per error; --debug shows them.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    # The suite's warnings (a damaged record moved aside, ...) as one line each on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    bench_log = logging.getLogger("bench")
    bench_log.addHandler(handler)
    # Batch schedulers stop a job with SIGTERM: stop as on Ctrl-C (finished jobs saved, exit 130).
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        previous = None
    try:
        code = app(args=args, prog_name="bench", standalone_mode=False)
    except BenchError as exc:
        if debug:
            raise
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    finally:
        bench_log.removeHandler(handler)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(code if isinstance(code, int) else 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
