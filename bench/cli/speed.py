"""``bench speed``: the command line of :mod:`bench.execution.speed`
(registered in :mod:`bench.cli`).

Imports only typer at module level: ``bench --help`` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bench.cli import options
from bench.reports import console


def speed(
    methods: str = options.methods("Comma-separated method names, timed in this order."),
    datasets: str = options.datasets(options.AS_FOR_RUN),
    preset: str = options.preset(),
    device: str = options.device(),
    sets: list[str] = options.sets(),
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
        "for bench run (at least 5 images; 0 = none: F1 at each method's own decision).",
    ),
    seed: int = options.seed("The one seed of every job."),
    threads: int | None = options.threads("Torch CPU threads."),
    peak_tflops: float | None = typer.Option(
        None, "--peak-tflops", help="Device peak TFLOP/s for the FLOP floor (default: by name)."
    ),
    data_root: Path | None = options.data_root(),
    results_dir: Path = options.results_dir(),
    run_id: str | None = options.run_id("Run folder name (default: speed-<methods>-<date-time>)."),
    name: str | None = options.name("Label of the run (bench history)."),
) -> None:
    """Time methods side by side on one device: fit, ms/image, images/s, memory, quality."""
    from bench.execution import policy
    from bench.execution.config import check_seed, split_names
    from bench.execution.speed import SpeedConfig, parse_batches, run_speed
    from bench.methods import registry
    from bench.store.runs import check_run_id
    from bench.store.schema import Field, Status

    if run_id is not None:
        check_run_id(run_id)
    method_list = split_names(methods, "--methods")
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
        # no hold-out, nothing to calibrate on: the methods' own decisions (the record says so)
        **({"threshold": "own"} if calibration_fraction == 0 else {}),
        seed=check_seed(seed),
        peak_tflops=peak_tflops,
        data_root=options.data_root_or_env(data_root),
        **({"threads": threads} if threads is not None else {}),
    )

    def on_job_end(record: dict[str, Any]) -> None:
        if record.get(Field.STATUS) != Status.OK:
            console.problem(console.speed_failure(record))

    try:
        outcome = run_speed(
            cfg, results_dir, run_id, name, on_job_start=console.speed_job, on_job_end=on_job_end
        )
    except KeyboardInterrupt:
        console.show("interrupted: the finished jobs' records are saved", err=True)
        raise typer.Exit(policy.EXIT_INTERRUPTED) from None
    console.show(console.speed_table(outcome.records))
    console.outcome(outcome.run_dir)
    code = policy.speed_exit_code(outcome.failed)
    if code:
        raise typer.Exit(code)
