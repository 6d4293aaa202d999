"""``bench speed``: the command line of :mod:`bench.execution.speed`
(registered in :mod:`bench.cli`).

Imports only typer and rich at module level: ``bench --help`` must stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "--"
    return f"{value:.{digits}f}"


def speed_summary(records: list[dict[str, Any]]) -> Table:
    """One row per job: mode, precision, latency, throughput, memory, FLOPs, floor, quality."""
    table = Table(
        title="bench speed: ms/image at batch 1 (median, p95 of the timed calls), images/s at "
        "batch 1 and at the best batch",
        caption="x floor: ms/image at the best batch over GFLOP/peak TFLOP/s "
        "(bench.execution.speed_floor)",
    )
    columns = ["method", "variant", "dataset", "mode", "precision", "ms p50", "ms p95"]
    columns += ["img/s b=1", "img/s best", "best batch", "peak MB", "GFLOP/img", "x floor"]
    columns += ["F1", "AUROC", "fit s", "status"]
    for col in columns:
        left = col in ("method", "variant", "dataset", "mode", "precision", "status")
        table.add_column(col, justify="left" if left else "right")
    for rec in records:
        timing, speed = rec.get("timing") or {}, rec.get("speed") or {}
        info, metrics = rec.get("inference") or {}, rec.get("metrics") or {}
        ok = rec.get("status") == "ok"
        table.add_row(
            str(rec.get("method")),
            str(rec.get("variant")),
            str(rec.get("dataset")),
            str(info.get("mode", "--")),
            str(info.get("precision", "--")),
            _fmt(timing.get("ms_per_image")),
            _fmt(timing.get("ms_per_image_p95")),
            _fmt(timing.get("images_per_s_batch1"), 1),
            _fmt(timing.get("images_per_s"), 1),
            str(timing.get("best_batch", "--")),
            _fmt(timing.get("peak_mem_mb"), 0),
            _fmt(rec.get("gflops_per_image"), 1),
            _fmt(speed.get("ratio_to_floor"), 1),
            _fmt(metrics.get("f1")),
            _fmt(metrics.get("auroc")),
            _fmt(timing.get("fit_s"), 1),
            "ok" if ok else "[red]failed[/red]",
        )
    return table


def speed(
    methods: str = typer.Option(
        "radar", "--methods", "-m", help="Comma-separated method names, timed in this order."
    ),
    datasets: str = typer.Option("synthetic", "--datasets", "-d", help="As for bench run."),
    preset: str = typer.Option(
        "auto", "--preset", help="paper | quick | auto (paper on CUDA, quick on CPU)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a method parameter: METHOD.PARAM=VALUE (repeatable)."
    ),
    variants: str = typer.Option(
        "none",
        "--variants",
        help="none | ladder: RADAR's fast-path ladder (fp32 -> bf16 -> channels_last -> auto "
        "batch -> compile -> CUDA graphs -> whole image), each rung on the fastest so far.",
    ),
    repeats: int = typer.Option(
        50, "--repeats", help="Timed calls at batch 1 (at most this many at larger batches)."
    ),
    warmup: int = typer.Option(5, "--warmup", help="Untimed calls before each batch size."),
    batches: str = typer.Option(
        "1,8,32,64,auto",
        "--batches",
        help="Images per predict call; auto = the evaluation set in one call (max 256).",
    ),
    budget_s: float = typer.Option(
        20.0, "--budget-s", help="Seconds of timed calls per batch size above 1 (>= 3 calls)."
    ),
    eval_images: int = typer.Option(
        0, "--eval-images", help="Test images scored for quality (label-stratified); 0 = all."
    ),
    calibration_fraction: float = typer.Option(
        0.1,
        "--calibration-fraction",
        help="Share of the normal training images held out to calibrate the threshold, as "
        "for bench run (at least 5 images; 0 = none).",
    ),
    seed: int = typer.Option(0, "--seed", help="The one seed of every job."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads."),
    peak_tflops: float | None = typer.Option(
        None, "--peak-tflops", help="Device peak TFLOP/s for the FLOP floor (default: by name)."
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder holding the datasets (or set BENCH_DATA)."
    ),
    results_dir: Path = typer.Option(
        Path("results/runs"), "--results-dir", help="Where run folders are written."
    ),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Run folder name (default: speed-<methods>-<date-time>)."
    ),
    name: str | None = typer.Option(None, "--name", help="Label of the run (bench history)."),
) -> None:
    """Time methods side by side on one device: fit, ms/image, images/s, memory, quality."""
    import os

    from bench.execution.config import check_seed, split_names
    from bench.execution.speed import SpeedConfig, parse_batches, run_speed
    from bench.methods import registry
    from bench.store.runs import check_run_id

    if run_id is not None:
        check_run_id(run_id)
    method_list = split_names(methods, "--methods")
    env_root = os.environ.get("BENCH_DATA")
    cfg = SpeedConfig(
        methods=method_list,
        datasets=split_names(datasets, "--datasets"),
        preset=preset,
        device=device,
        sets=registry.parse_sets(sets, method_list),
        variants=variants,
        repeats=repeats,
        warmup=warmup,
        batches=parse_batches(batches),
        budget_s=budget_s,
        eval_images=eval_images,
        calibration_fraction=calibration_fraction,
        seed=check_seed(seed),
        peak_tflops=peak_tflops,
        data_root=data_root or (Path(env_root) if env_root else None),
        **({"threads": threads} if threads is not None else {}),
    )

    def on_job_start(method: str, variant: str, dataset: str):
        label = f"{method} [{variant}] · {dataset}"
        console.print(f"[bold]{escape(label)}[/bold]")
        return lambda message: console.print(f"  {escape(message)}", highlight=False)

    def on_job_end(record: dict[str, Any]) -> None:
        if record.get("status") != "ok":
            err_console.print(
                f"failed: {record['method']} [{record['variant']}]: {record['error']}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    try:
        outcome = run_speed(
            cfg, results_dir, run_id, name, on_job_start=on_job_start, on_job_end=on_job_end
        )
    except KeyboardInterrupt:
        err_console.print("interrupted: the finished jobs' records are saved")
        raise typer.Exit(130) from None
    console.print(speed_summary(outcome.records))
    console.print(f"results: {outcome.run_dir}")
    if outcome.failed:
        input_only = all(r.get("error_kind") == "input" for r in outcome.failed)
        raise typer.Exit(2 if input_only else 1)
