"""``bench run`` and ``bench ablate``: a grid of jobs through the runner
(:mod:`bench.execution.runner`), wherever the launcher flags send them, a table at the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bench.cli import options
from bench.reports import console

if TYPE_CHECKING:
    from bench.execution.config import JobSpec, RunConfig
    from bench.execution.launchers import Launcher
    from bench.execution.runner import RunOutcome
    from bench.reports.tracking import Tracker


@options.launcher_flags
def run(
    methods: str = options.methods(),
    datasets: str = options.datasets(),
    seeds: str = options.seeds(),
    preset: str = options.preset(),
    device: str = options.device(),
    sets: list[str] = options.sets(),
    data_root: Path | None = options.data_root(),
    results_dir: Path = options.results_dir(),
    run_id: str | None = options.run_id(
        "Run folder name (default: derived from the config, so reruns resume)."
    ),
    name: str | None = options.name(
        "Label of the run (bench history, bench compare NAME); the default run folder "
        "becomes <name>-<config hash>."
    ),
    force: bool = options.force(),
    fail_fast: bool = options.fail_fast(),
    threads: int | None = options.threads(),
    timing_repeats: int = options.timing_repeats(),
    protocol: str = options.protocol(),
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
    mlflow: bool = options.mlflow(),
    mlflow_uri: str | None = options.mlflow_uri(),
    *,
    launch: dict[str, Any],
) -> None:
    """Run methods x datasets x seeds; one record per job; finished jobs are skipped."""
    from bench.store.runs import check_run_id

    if run_id is not None:  # before the imports and checks of a run: seconds of waiting
        check_run_id(run_id)
    from bench import api
    from bench.execution import policy, runner
    from bench.store.schema import Field

    cfg = api.run_config(
        methods,
        datasets,
        seeds,
        preset=preset,
        device=device,
        sets=sets,
        data_root=options.data_root_or_env(data_root),
        threads=threads,
        workers=launch["workers"],
        timing_repeats=timing_repeats,
        protocol=protocol,
        threshold=threshold,
        calibration_fraction=calibration_fraction,
        target_fpr=target_fpr,
    )
    tracker = _tracker(mlflow, mlflow_uri, results_dir)
    elsewhere = _launcher(launch)  # None: in this process, one job after the other
    progress = console.RunProgress()
    outcome = _execute(
        cfg,
        progress,
        elsewhere,
        launch,
        "rerun the same command to resume",
        lambda spec, index, total: progress.job_started(spec.label(), total),
        tracker=tracker,
        results_dir=results_dir,
        run_id=run_id,
        force=force,
        fail_fast=fail_fast,
        name=name,
    )
    if outcome.records:
        console.show(console.summary_table(outcome.records))
    for rec in outcome.records:
        line = runner.undefined_warning(rec)
        if line is not None:
            console.problem(f"warning: {line}")
    console.outcome(outcome.run_dir, outcome.skipped, outcome.submitted)
    for rec in outcome.failed:
        console.problem(console.run_failure(rec))
        if options.debug and rec.get(Field.TRACEBACK):
            console.problem(rec[Field.TRACEBACK])
    code = policy.run_exit_code(outcome.failed)
    if code:
        raise typer.Exit(code)


@options.launcher_flags
def ablate(
    method: str = typer.Option("radar", "--method", "-m", help="The one method to ablate."),
    datasets: str = options.datasets(options.AS_FOR_RUN),
    grid: list[str] = typer.Option(
        [], "--grid", help="PARAM=V1,V2,... values of one varied parameter (repeatable)."
    ),
    one_at_a_time: bool = typer.Option(
        False, "--one-at-a-time", help="Vary one parameter at a time around the base config."
    ),
    seeds: str = options.seeds(),
    preset: str = options.preset("paper | quick | cpu | auto."),
    device: str = options.device(),
    sets: list[str] = options.sets("Base value of a parameter: METHOD.PARAM=VALUE (repeatable)."),
    data_root: Path | None = options.data_root("Datasets folder."),
    results_dir: Path = options.results_dir(None),
    run_id: str | None = options.run_id("Run folder name."),
    force: bool = options.force(),
    fail_fast: bool = options.fail_fast(),
    threads: int | None = options.threads(),
    timing_repeats: int = options.timing_repeats(),
    protocol: str = options.protocol(),
    mlflow: bool = options.mlflow(),
    mlflow_uri: str | None = options.mlflow_uri(),
    *,
    launch: dict[str, Any],
) -> None:
    """Run one method over a grid of parameter values; a table per varied parameter.

    The jobs go where ``bench run``'s do (``--workers``, ``--launcher ray|slurm``); variants that
    share a training configuration reuse one trained model through the run's cache when they run
    one after the other, and may each train it when they run at once.
    """
    from bench.store.runs import check_run_id

    if run_id is not None:
        check_run_id(run_id)
    from bench.evaluation.protocol import resolve_protocol
    from bench.execution import policy
    from bench.execution.ablate import expand_ablation, parse_grid
    from bench.execution.config import RunConfig, parse_seeds, split_names
    from bench.methods import registry
    from bench.store.schema import Field

    axes = parse_grid(grid)
    rule, fraction = resolve_protocol(protocol, None, None)
    cfg = RunConfig(
        methods=[method],
        datasets=split_names(datasets, "--datasets"),
        seeds=parse_seeds(seeds),
        preset=preset,
        device=device,
        sets=registry.parse_sets(sets, [method]),
        data_root=options.data_root_or_env(data_root),
        timing_repeats=timing_repeats,
        threshold=rule,
        calibration_fraction=fraction,
    )
    policy.apply_job_limits(cfg, threads, launch["workers"])
    plan = expand_ablation(cfg, axes, one_at_a_time)
    elsewhere = _launcher(launch)
    console.show(f"ablation: {len(plan.jobs)} jobs ({plan.mode}) of {method}")
    progress = console.AblateProgress(len(plan.jobs))
    outcome = _execute(
        cfg,
        progress,
        elsewhere,
        launch,
        "rerun to resume",
        lambda spec, index, total: progress.job_started(
            spec.label(), spec.record_extra[Field.VARIED]
        ),
        tracker=_tracker(mlflow, mlflow_uri, results_dir),
        results_dir=results_dir,
        run_id=run_id or plan.run_id,
        force=force,
        fail_fast=fail_fast,
        job_list=plan.jobs,
        manifest_extra={Field.ABLATION: plan.manifest()},
    )
    for table in console.ablation_tables(outcome.records, plan.manifest()):
        console.show(table)
    console.outcome(outcome.run_dir, outcome.skipped, outcome.submitted)
    for rec in outcome.failed:
        console.problem(console.ablate_failure(rec))
    code = policy.ablate_exit_code(outcome.failed)
    if code:
        raise typer.Exit(code)


def _launcher(launch: dict[str, Any]) -> Launcher | None:
    """The launcher the flags ask for; None: in this process."""
    from bench.execution.launchers import LauncherOptions, make_launcher

    return make_launcher(LauncherOptions(**launch))


def _tracker(enabled: bool, uri: str | None, results_dir: Path) -> Tracker | None:
    """The MLflow tracker of ``--mlflow`` / ``--mlflow-uri`` (opened before the first job, so
    that a missing extra or a bad URI stops the run before any work)."""
    if not enabled and uri is None:
        return None
    from bench.reports.tracking import Tracker, default_tracking_uri, require_mlflow

    require_mlflow()
    return Tracker(uri or default_tracking_uri(results_dir))


def _execute(
    cfg: RunConfig,
    progress: console.RunProgress | console.AblateProgress,
    elsewhere: Launcher | None,
    launch: dict[str, Any],
    resume_advice: str,
    job_started: Callable[[JobSpec, int, int], Callable[[str, float], None]],
    tracker: Tracker | None = None,
    **run_args: Any,
) -> RunOutcome:
    """The jobs through the runner, with a live progress display; Ctrl-C (or SIGTERM) keeps the
    finished jobs and exits 130."""
    from bench.execution import policy, runner
    from bench.execution.launchers import done_line
    from bench.store.schema import Field

    def job_ended(record: dict[str, Any] | None) -> None:
        remote = record is not None and elsewhere is not None  # a line per job from the workers
        progress.job_ended(record, done_line(record) if remote else None)
        if tracker is not None and record is not None:
            run_dir = Path(run_args["results_dir"]) / str(record.get(Field.RUN_ID, ""))
            tracker.log_job(record, run_dir if run_dir.is_dir() else None)

    with progress:
        try:
            outcome = runner.run(
                cfg,
                on_job_start=job_started,
                on_job_end=job_ended,
                launcher=elsewhere,
                **run_args,
            )
        except KeyboardInterrupt:
            console.interrupted(resume_advice, slurm=launch["launcher"] == "slurm")
            raise typer.Exit(policy.EXIT_INTERRUPTED) from None
        finally:
            if elsewhere is not None:
                elsewhere.close()
        progress.finish()
    return outcome
