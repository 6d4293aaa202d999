"""Everything the ``bench`` commands print: the terminal side of the reports, with rich.

The commands (:mod:`bench.cli`) hand plain data to these functions: records as stored, the
rows of a history, the cells of a compare verdict, objects with the fields a status or an asset
has (the :class:`typing.Protocol` s below); nothing here imports the layers that computed them.
Numbers are written by :mod:`bench.util.formatting`, as in the LaTeX, Markdown and HTML tables.

Only rich is imported at module level: ``bench --help`` imports this module and must stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from bench.store.schema import (
    AblationInfo,
    ErrorKind,
    Field,
    Flag,
    Inference,
    LauncherInfo,
    Manifest,
    Speed,
    Status,
    Timing,
)
from bench.util.formatting import UNDEFINED, decimals_for, fixed, grid_text, undefined

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

# -- printing --------------------------------------------------------------------------------


def show(item: RenderableType, err: bool = False) -> None:
    """A table, or a line with rich markup, on stdout (stderr with ``err``)."""
    (err_console if err else console).print(item)


def say(text: str, err: bool = False) -> None:
    """A line as it is (no markup, no highlighting): paths and names may hold ``[...]``."""
    (err_console if err else console).print(text, markup=False, highlight=False)


def problem(text: str) -> None:
    """One unwrapped line on stderr, as it is: an error, a warning, a failed job (one line per
    problem, so that it can be grepped and pasted)."""
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def outcome(run_dir: Path, skipped: int = 0, submitted: int = 0) -> None:
    """The last lines of a run: where its results are; jobs left to a batch system."""
    note = f" ({skipped} already done, skipped)" if skipped else ""
    show(f"results: {run_dir}{note}")
    if submitted:
        say(f"submitted {submitted} job(s), not waiting; follow them with: bench status {run_dir}")


def interrupted(advice: str, slurm: bool) -> None:
    show(
        f"interrupted: finished jobs are saved; {advice}"
        + ("; SLURM jobs keep running (scancel stops them)" if slurm else ""),
        err=True,
    )


def run_failure(record: Mapping[str, Any]) -> str:
    """A failed job of ``bench run``: "error:" where the user can fix it (bad data, weights
    missing offline), "failed:" for a crash (traceback in the job record)."""
    prefix = "error" if record.get(Field.ERROR_KIND) == ErrorKind.INPUT else "failed"
    return (
        f"{prefix}: {record.get(Field.METHOD)} on {record.get(Field.DATASET)} seed "
        f"{record.get(Field.SEED)}: {record.get(Field.ERROR)}"
    )


def ablate_failure(record: Mapping[str, Any]) -> str:
    return (
        f"failed: {record.get(Field.DATASET)} seed {record.get(Field.SEED)} "
        f"{record.get(Field.VARIED)}: {record.get(Field.ERROR)}"
    )


def speed_failure(record: Mapping[str, Any]) -> str:
    return f"failed: {record[Field.METHOD]} [{record[Field.VARIANT]}]: {record[Field.ERROR]}"


def regressions(reasons: Sequence[str], shown: int = 10) -> None:
    """Why ``bench compare`` fails: the first reasons, then how many more the table has."""
    for reason in reasons[:shown]:
        problem(f"regression: {reason}")
    if len(reasons) > shown:
        show(f"regression: ... and {len(reasons) - shown} more (see the table)", err=True)


# -- progress of a grid of jobs --------------------------------------------------------------

#: Called with a step's message and the job's fraction done.
StepFn = Callable[[str, float], None]


class _GridProgress:
    """A live display of the jobs of a run; :meth:`job_ended` prints a line per job that
    another process ran (``done``) or that failed here."""

    overall: TaskID  # the bar over the jobs

    def __init__(self, bar: Progress) -> None:
        self.bar = bar

    def __enter__(self) -> _GridProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.bar.__exit__(*exc_info)

    def finish(self) -> None:
        """The jobs are done (not interrupted)."""

    def job_ended(self, record: Mapping[str, Any] | None, done: str | None = None) -> None:
        """``done``: the line of a job run elsewhere (a worker, Ray, SLURM)."""
        self.bar.advance(self.overall)
        if record is not None and done is not None:
            self.bar.console.print(done, markup=False, highlight=False)
        elif record is not None and record.get(Field.STATUS) != Status.OK:
            # escape: an error message may contain "[...]", which rich would parse as markup
            error = escape(str(record[Field.ERROR]))
            self.bar.console.print(f"[red]failed[/red] {record[Field.JOB_ID]}: {error}")


class RunProgress(_GridProgress):
    """``bench run``: a bar over the jobs and one over the steps of the running job."""

    def __init__(self) -> None:
        super().__init__(
            Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
        )
        self.overall = self.bar.add_task("jobs", total=None)
        self.job = self.bar.add_task("", total=100, visible=False)

    def job_started(self, label: str, total: int) -> StepFn:
        self.bar.update(self.overall, total=total)
        self.bar.reset(self.job, total=100, visible=True, description=label)

        def step(message: str, fraction: float) -> None:
            self.bar.update(
                self.job, completed=round(100 * fraction), description=f"{label} · {message}"
            )

        return step

    def finish(self) -> None:
        self.bar.update(self.job, visible=False)


class AblateProgress(_GridProgress):
    """``bench ablate``: one bar, named after the running job and its grid values."""

    def __init__(self, total: int) -> None:
        super().__init__(
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
        )
        self.overall = self.bar.add_task("jobs", total=total)

    def job_started(self, label: str, varied: Mapping[str, Any]) -> StepFn:
        values = variant_text({Field.VARIED: varied})
        self.bar.update(self.overall, description=f"{label} · {values}")
        return lambda message, fraction: None


# -- bench run / bench show ------------------------------------------------------------------

_RULE_TITLES = {
    "calibrated": "calibrated threshold (held-out normal training images)",
    "own": "each method's own decision",
    "oracle": "ORACLE threshold (best F1 on the test set: an upper bound)",
}


def _with_interval(record: Mapping[str, Any], name: str) -> str:
    """``0.912`` and, below it, the record's 95% bootstrap interval ``[0.85, 0.96]``."""
    value = fixed((record.get(Field.METRICS) or {}).get(name), 3)
    interval = (record.get(Field.METRICS_CI) or {}).get(name)
    if value == UNDEFINED or not interval or any(undefined(v) for v in interval):
        return value
    return f"{value}\n[dim][{fixed(interval[0], 2)}, {fixed(interval[1], 2)}][/dim]"


def variant_text(record: Mapping[str, Any]) -> str:
    """What sets this job apart from the other jobs of its method in the run: the grid values
    of an ablation (``train_steps=500, t=1``), a speed variant's name; "" for neither."""
    varied = record.get(Field.VARIED) or {}
    if varied:
        return ", ".join(f"{k}={grid_text(v)}" for k, v in varied.items())
    return str(record.get(Field.VARIANT) or "")


def summary_table(records: Sequence[Mapping[str, Any]]) -> Table:
    """The closing table of ``bench run`` (and ``bench show``): a row per job, and a variant
    column where a method has several configurations in the run (an ablation's grid values)."""
    rules = sorted(
        {str(r.get(Field.THRESHOLD_RULE, "own")) for r in records if r.get(Field.METRICS)}
    )
    title = "radar-bench results"
    if len(rules) == 1:
        title += f": accuracy, precision, recall, F1 at the {_RULE_TITLES.get(rules[0], rules[0])}"
    table = Table(
        title=title,
        caption="[95% bootstrap interval over the test images, stratified by label]",
    )
    variants = [variant_text(r) for r in records]
    columns = ["method", "variant", "dataset", "seed", "preset"]
    if not any(variants):  # one configuration per method: nothing to tell apart
        columns.remove("variant")
    if len(rules) > 1:
        columns.append("threshold")
    columns += ["accuracy", "precision", "recall", "F1", "AUROC", "pixel AUROC", "fit s"]
    columns += ["ms/image", "status"]
    for col in columns:
        left = col in ("method", "variant", "dataset")
        # the variant is the row's name in an ablation: wrapped if need be, never cut to "…"
        wide = {"min_width": min(max(map(len, variants)), 24)} if col == "variant" else {}
        table.add_column(col, justify="left" if left else "right", **wide)
    if any(Flag.RANDOM_WEIGHTS in (r.get(Field.FLAGS) or []) for r in records):
        table.caption += "\n† randomly initialised backbone (no pretrained weights here)"
    substitutes = sorted({f for r in records for f in Flag.backbones(r.get(Field.FLAGS) or [])})
    if substitutes:
        table.caption += (
            f"\n§ {', '.join(substitutes)}: ImageNet EfficientNet-Lite in place of the paper's "
            "backbone (not the published configuration)"
        )
    if any(r.get(Field.UNDEFINED_METRICS) for r in records):
        table.caption += (
            "\n-- undefined on the test set (e.g. recall without anomalous test images): "
            "null in the record, never 0"
        )
    for rec, variant in zip(records, variants, strict=True):
        metrics = rec.get(Field.METRICS) or {}
        timing = rec.get(Field.TIMING) or {}
        flags = rec.get(Field.FLAGS) or []
        row = [
            # † = random-init weights (issue #4): never silently mixed with pretrained ones
            rec.get(Field.METHOD, "?")
            + (" †" if Flag.RANDOM_WEIGHTS in flags else "")
            + (" §" if Flag.backbones(flags) else ""),
            *([escape(variant)] if "variant" in columns else []),
            rec.get(Field.DATASET, "?"),
            str(rec.get(Field.SEED, "?")),
            rec.get(Field.PRESET, "?"),
        ]
        if len(rules) > 1:
            row.append(str(rec.get(Field.THRESHOLD_RULE, "own")))
        row += [_with_interval(rec, m) for m in ("accuracy", "precision", "recall", "f1", "auroc")]
        row += [
            fixed(metrics.get("pixel_auroc"), 3),
            fixed(timing.get(Timing.FIT_S), 1),
            fixed(timing.get(Timing.MS_PER_IMAGE), 1),
            _status_cell(rec),
        ]
        table.add_row(*row)
    return table


def _status_cell(record: Mapping[str, Any]) -> str:
    return "ok" if record.get(Field.STATUS) == Status.OK else "[red]failed[/red]"


# -- bench ablate ----------------------------------------------------------------------------


def ablation_tables(records: list[dict[str, Any]], ablation: dict[str, Any]) -> list[Table]:
    """One table per varied parameter (mean ± std over seeds); ``ablation``: the entry of the
    run manifest (method, mode, grid, base)."""
    from bench.reports.ablation_summary import ablation_frames, value_key

    over = (
        "seeds"
        if ablation[AblationInfo.MODE] == AblationInfo.ONE_AT_A_TIME
        else "seeds and the other grid values"
    )
    tables = []
    for param, frame in ablation_frames(records, ablation).items():
        base = value_key(ablation[AblationInfo.BASE][param])
        table = Table(
            title=f"{ablation[AblationInfo.METHOD]}: {param} (base {base}; mean ± std over {over})"
        )
        for col in frame.columns:
            table.add_column(str(col), justify="left" if col in (Field.DATASET, param) else "right")
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        tables.append(table)
    return tables


# -- bench speed -----------------------------------------------------------------------------


def speed_table(records: Sequence[Mapping[str, Any]]) -> Table:
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
        timing, speed = rec.get(Field.TIMING) or {}, rec.get(Field.SPEED) or {}
        info, metrics = rec.get(Field.INFERENCE) or {}, rec.get(Field.METRICS) or {}
        table.add_row(
            str(rec.get(Field.METHOD)),
            str(rec.get(Field.VARIANT)),
            str(rec.get(Field.DATASET)),
            str(info.get(Inference.MODE, UNDEFINED)),
            str(info.get(Inference.PRECISION, UNDEFINED)),
            fixed(timing.get(Timing.MS_PER_IMAGE), 2),
            fixed(timing.get(Timing.MS_PER_IMAGE_P95), 2),
            fixed(timing.get(Timing.IMAGES_PER_S_BATCH1), 1),
            fixed(timing.get(Timing.IMAGES_PER_S), 1),
            str(timing.get(Timing.BEST_BATCH, UNDEFINED)),
            fixed(timing.get(Timing.PEAK_MEM_MB), 0),
            fixed(gflops := rec.get(Field.GFLOPS_PER_IMAGE), decimals_for(gflops, 2)),
            fixed(speed.get(Speed.RATIO_TO_FLOOR), 1),
            fixed(metrics.get("f1"), 2),
            fixed(metrics.get("auroc"), 2),
            fixed(timing.get(Timing.FIT_S), 1),
            _status_cell(rec),
        )
    return table


def speed_job(method: str, variant: str, dataset: str) -> Callable[[str], None]:
    """Names a job of ``bench speed`` as it starts; the returned function prints its steps."""
    show(f"[bold]{escape(f'{method} [{variant}] · {dataset}')}[/bold]")
    return lambda message: console.print(f"  {escape(message)}", highlight=False)


# -- bench status ----------------------------------------------------------------------------


class JobState(Protocol):
    """What the status of one job tells (:class:`bench.execution.status.JobStatus`)."""

    job_id: str
    label: str
    state: str
    record: dict[str, Any] | None
    slurm: dict[str, Any] | None
    slurm_state: str | None
    error: str | None

    def traceback_tail(self, lines: int) -> list[str]: ...

    def log_tail(self, lines: int) -> list[str]: ...


class RunState(Protocol):
    """What the status of a run tells (:class:`bench.execution.status.RunStatus`)."""

    run_dir: Path
    manifest: dict[str, Any]

    @property
    def jobs(self) -> Sequence[JobState]: ...

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def failed(self) -> Sequence[JobState]: ...


def _when(stamp: str) -> str:
    """``2026-03-04 12:34:56`` of an ISO time stamp."""
    return stamp[:19].replace("T", " ")


def status_renderables(status: RunState, verbose: bool = False, lines: int = 10) -> list[Any]:
    """The counts, a table per job (``verbose``), details of failed jobs."""
    counts = status.counts
    total = sum(counts.values())
    launcher = (status.manifest.get(Manifest.LAUNCHER) or {}).get(LauncherInfo.NAME, "local")
    finished = status.manifest.get(Manifest.FINISHED_AT)
    stopped = status.manifest.get(Manifest.INTERRUPTED_AT)
    head = Text(f"{status.run_dir}  ({total} jobs, launcher {launcher}")
    if finished:
        head.append(f", finished {_when(finished)})")
    elif stopped:  # stopped by Ctrl-C / SIGTERM: rerun the same command to resume
        head.append(f", interrupted {_when(stopped)}; rerun to resume)")
    else:
        head.append(")")
    out: list[Any] = [head]
    table = Table(show_header=True, title_justify="left")
    for state in counts:
        table.add_column(state, justify="right")
    table.add_row(*(str(n) for n in counts.values()))
    out.append(table)
    if verbose:
        out.append(_jobs_table(status.jobs))
    for job in status.failed:
        out.append(Text(f"failed: {job.label} ({job.job_id}): {job.error}", style="red"))
        for line in job.traceback_tail(lines):
            out.append(Text(f"  | {line}"))
        log = job.log_tail(lines)
        if log:
            out.append(Text(f"  slurm log {job.slurm.get('stderr') if job.slurm else ''}:"))
            out.extend(Text(f"  | {line}") for line in log)
    return out


def _jobs_table(jobs: Iterable[JobState]) -> Table:
    table = Table(title="jobs", title_justify="left")
    for col in ("job", "method · dataset · seed", "state", "where", "AUROC", "fit s"):
        table.add_column(col, justify="right" if col in ("AUROC", "fit s") else "left")
    for job in jobs:
        rec = job.record or {}
        where = rec.get(Field.LAUNCHER) or {}
        place = " ".join(
            f"{k}={where[k]}"
            for k in (LauncherInfo.NAME, "worker", "slurm_job_id", "host")
            if k in where
        )
        if not place and job.slurm:
            place = f"slurm job {job.slurm.get('slurm_job_id')} {job.slurm_state or ''}"
        table.add_row(
            job.job_id,
            job.label,
            job.state,
            place.strip(),
            fixed((rec.get(Field.METRICS) or {}).get("auroc"), 3),
            fixed((rec.get(Field.TIMING) or {}).get(Timing.FIT_S), 1),
        )
    return table


# -- bench prepare ---------------------------------------------------------------------------


class AssetState(Protocol):
    """One thing the jobs load (:class:`bench.execution.prepare.Asset`)."""

    what: str
    needed_by: str
    status: str
    where: str
    reason: str

    @property
    def missing(self) -> bool: ...


def assets_table(assets: Iterable[AssetState]) -> Table:
    table = Table(title="assets the jobs need", title_justify="left")
    for col in ("asset", "needed by", "status", "where / reason"):
        table.add_column(col, overflow="fold")  # paths in full: the user must find them
    for a in assets:
        style = "red" if a.missing else ("green" if a.status == "fetched" else "")
        where = a.where + (f"\n{a.reason}" if a.reason else "")
        table.add_row(escape(a.what), escape(a.needed_by), a.status, escape(where), style=style)
    return table


# -- bench list ------------------------------------------------------------------------------


def method_table(title: str, presets: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A method's parameters: type, the paper preset's value (the default), every other
    preset's value, where the default comes from."""
    table = Table(title=title, title_justify="left")
    table.add_column("parameter")
    table.add_column("type")
    table.add_column("paper preset (default)")
    for preset in presets:
        table.add_column(preset)
    # paper | official code (file) | paper-unspecified (our choice) | suite (bench.util.sources)
    table.add_column("source of the default")
    for row in rows:
        table.add_row(*row)
    return table


def datasets_table(families: Mapping[str, str]) -> Table:
    table = Table(title="datasets", title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for family, text in families.items():
        table.add_row(family, text)
    return table


# -- bench history ---------------------------------------------------------------------------


def history_table(root: Path, rows: Iterable[Mapping[str, Any]], metrics: Sequence[str]) -> Table:
    """Past runs, a row per (run, method variant, dataset); ``metrics``: seed means."""
    table = Table(title=f"runs under {root}", title_justify="left")
    columns = ["run", "started", "commit", "method", "dataset", "seeds", "ok", *metrics]
    for col in columns:
        table.add_column(col, justify="right" if col in metrics else "left")
    for row in rows:
        started = str(row["started"] or "")[:16].replace("T", " ")
        cells = [str(row["run"]), started, str(row["commit"] or UNDEFINED)]
        cells += [str(row[c]) for c in (Field.METHOD, Field.DATASET, Manifest.SEEDS, "ok")]
        cells += [fixed(row[m], _history_digits(m)) for m in metrics]
        table.add_row(*cells)
    return table


def _history_digits(metric: str) -> int:
    """Seconds, milliseconds and megabytes to one decimal, scores to three."""
    return 1 if metric.endswith(("_s", "_ms", "_mb")) or "ms_" in metric else 3


# -- bench compare ---------------------------------------------------------------------------

#: How each tone of a verdict row (:func:`bench.compare.gate.verdict_rows`) is coloured.
TONES = {"bad": "red", "good": "green", "quiet": "dim", "notice": "yellow", "": ""}


def verdict_renderables(
    title: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Sequence[str], str]],
    verdict: str,
    counts: Mapping[str, int],
) -> list[Any]:
    """The changed (or every) metric of a compare verdict, a row each, then the summary."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in ("baseline", "candidate") else "left")
    for cells, tone in rows:
        # a job label or note may hold "[...]" (a variant, an interval): text, not markup
        table.add_row(*(escape(str(c)) for c in cells), style=TONES[tone])
    c = counts
    colour = "green" if verdict == "pass" else "red"
    summary = (
        f"[{colour}][bold]{verdict.upper()}[/bold][/{colour}]: {c['jobs_compared']} job(s) "
        f"compared, {c['metric_regressions']} metric regression(s), {c['failed_jobs']} failed, "
        f"{c['metric_improvements']} improvement(s), {c['missing_jobs']} missing, "
        f"{c['extra_jobs']} extra, {c['not_gated_changes']} not-gated change(s)"
    )
    if not table.rows:
        summary += " (every compared metric within tolerance)"
    return [table, summary] if table.rows else [summary]
