"""``bench status``, ``bench show`` and ``bench history``: what is stored, read back."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.cli import options
from bench.reports import console


def status(
    run: str = typer.Argument(..., help="A run id (under --results-dir) or a run folder."),
    results_dir: Path = options.results_dir(options.LOOKED_UP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="A row per job."),
    lines: int = typer.Option(10, "--lines", help="Log lines shown per failed job."),
) -> None:
    """Done / pending / running / failed jobs of a run, wherever it runs; logs of failures."""
    from bench.execution.status import resolve_run_dir, run_status

    state = run_status(resolve_run_dir(run, results_dir))
    for renderable in console.status_renderables(state, verbose=verbose, lines=lines):
        console.show(renderable)


def show(path: Path = typer.Argument(..., help="A run folder.")) -> None:
    """Print the summary table of a stored run."""
    from bench.store.runs import RunStore
    from bench.util.errors import ConfigError

    records = RunStore(path).records()
    if not records:
        raise ConfigError(f"{path}: no job records (expected {path}/jobs/*.json)")
    console.show(console.summary_table(records))


def history(
    root: Path = typer.Argument(Path("results"), help="Folder searched for run folders."),
    name: str | None = options.name("Only runs of this name or id."),
    method: str | None = typer.Option(None, "--method", help="Only this method."),
    last: int | None = typer.Option(None, "--last", help="Only the newest N runs."),
    metrics: str = typer.Option(
        "auroc,pixel_auroc,f1,ms_per_image", "--metrics", help="Headline metrics (seed means)."
    ),
) -> None:
    """Past runs, oldest first: name, date, git commit, seeds, headline metrics."""
    from bench.execution.config import split_names
    from bench.store.history import history_frame
    from bench.util.errors import ConfigError

    names = tuple(split_names(metrics, "--metrics"))
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; expected a folder holding run folders")
    frame = history_frame(root, names, name=name, method=method, last=last)
    if frame.empty:
        console.show(f"no runs under {root}")
        return
    console.show(console.history_table(root, frame.to_dict("records"), names))
