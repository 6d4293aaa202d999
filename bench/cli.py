"""The ``bench`` command line: thin wiring of options to the runner, registry and store."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench import registry
from bench.config import RunConfig, parse_seeds, split_names
from bench.errors import BenchError, ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark image anomaly detectors: RADAR, diffusion reconstruction, anomalib.",
)
data_app = typer.Typer(no_args_is_help=True, help="Get or generate datasets.")
app.add_typer(data_app, name="data")

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


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
    force: bool = typer.Option(False, "--force", help="Recompute jobs that already finished."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed job."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads per job."),
    timing_repeats: int = typer.Option(5, "--timing-repeats", help="Timed latency repeats."),
) -> None:
    """Run methods x datasets x seeds; one record per job; finished jobs are skipped."""
    from bench import runner

    method_list = split_names(methods, "--methods")
    cfg = RunConfig(
        methods=method_list,
        datasets=split_names(datasets, "--datasets"),
        seeds=parse_seeds(seeds),
        preset=preset,
        device=device,
        sets=registry.parse_sets(sets, method_list),
        data_root=_data_root(data_root),
        timing_repeats=timing_repeats,
    )
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: expected a positive integer")
        cfg.threads = threads
    if timing_repeats < 1:
        raise ConfigError(f"--timing-repeats {timing_repeats}: expected a positive integer")

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
            if record is not None and record.get("status") != "ok":
                bar.console.print(f"[red]failed[/red] {record['job_id']}: {record['error']}")

        try:
            outcome = runner.run(
                cfg,
                results_dir=results_dir,
                run_id=run_id,
                force=force,
                fail_fast=fail_fast,
                on_job_start=on_job_start,
                on_job_end=on_job_end,
            )
        except KeyboardInterrupt:
            err_console.print(
                "interrupted: finished jobs are saved; rerun the same command to resume"
            )
            raise typer.Exit(130) from None
        bar.update(job_task, visible=False)

    console.print(summary_table(outcome.records))
    note = f" ({outcome.skipped} already done, skipped)" if outcome.skipped else ""
    console.print(f"results: {outcome.run_dir}{note}")
    if outcome.failed:
        for rec in outcome.failed:
            err_console.print(
                f"failed: {rec.get('method')} on {rec.get('dataset')} seed "
                f"{rec.get('seed')}: {rec.get('error')}"
            )
        raise typer.Exit(1)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "--"
    return f"{value:.{digits}f}"


def summary_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="radar-bench results")
    for col in (
        "method",
        "dataset",
        "seed",
        "preset",
        "F1",
        "AUROC",
        "pixel AUROC",
        "fit s",
        "ms/image",
        "status",
    ):
        table.add_column(col, justify="right" if col not in ("method", "dataset") else "left")
    for rec in records:
        metrics = rec.get("metrics") or {}
        timing = rec.get("timing") or {}
        table.add_row(
            rec.get("method", "?"),
            rec.get("dataset", "?"),
            str(rec.get("seed", "?")),
            rec.get("preset", "?"),
            _fmt(metrics.get("f1")),
            _fmt(metrics.get("auroc")),
            _fmt(metrics.get("pixel_auroc")),
            _fmt(timing.get("fit_s"), 1),
            _fmt(timing.get("ms_per_image"), 1),
            "ok" if rec.get("status") == "ok" else "[red]failed[/red]",
        )
    return table


@app.command("list")
def list_cmd() -> None:
    """Registered methods (parameters, defaults, presets) and datasets."""
    from bench.datasets import DATASET_FAMILIES

    for name, entry in registry.methods().items():
        table = Table(title=f"{name}: {entry.summary}", title_justify="left")
        table.add_column("parameter")
        table.add_column("type")
        table.add_column("paper (default)")
        for preset in entry.presets:
            table.add_column(preset)
        for field_name, (tp, default) in registry.param_fields(entry.params_cls).items():
            row = [field_name, registry.describe_type(tp), str(default)]
            row += [str(p.get(field_name, "")) for p in entry.presets.values()]
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
    from bench.store import RunStore

    store = RunStore(path)
    records = store.records()
    if not records:
        raise ConfigError(f"{path}: no job records (expected {path}/jobs/*.json)")
    console.print(summary_table(records))


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

    path = SyntheticDataset(texture=texture).write_mvtec_layout(out, seed)
    console.print(f"synthetic:{texture} (seed {seed}) written to {path}")


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--debug"]
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
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
