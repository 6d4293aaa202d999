"""``bench report`` (tables, figures, an HTML page from stored records) and ``bench compare``
(the regression gate)."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.cli import options
from bench.reports import console


def report(
    source: Path = typer.Argument(
        ..., help="A run id (under --results-dir), a run folder, a folder of runs or records.csv."
    ),
    out: Path = typer.Option(Path("reports"), "--out", help="Folder for tables, figures, HTML."),
    results_dir: Path = options.results_dir(options.LOOKED_UP),
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
    from bench.util.errors import ConfigError

    path = source if source.exists() else results_dir / source
    if not path.exists():
        raise ConfigError(f"{source}: neither a results folder/file nor a run id in {results_dir}")
    if not 0 <= digits <= 6:
        raise ConfigError(f"--digits {digits}: expected an integer from 0 to 6")
    if interval not in ("std", "bootstrap"):
        raise ConfigError(f"--interval {interval!r}: expected std or bootstrap")
    result = write_report(path, out, digits, interval)
    n_figures = len(result.files.get("png", []))
    console.show(f"report: {result.index} ({len(result.tables)} tables, {n_figures} figures)")
    for reason in result.skipped:
        console.say(f"not drawn: {reason}")


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

    from bench.compare import gate
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
        result = gate.compare_paths(base_path, cand_path, settings)
        for renderable in console.verdict_renderables(
            f"bench compare: {result.baseline} -> {result.candidate}",
            gate.VERDICT_COLUMNS,
            gate.verdict_rows(result, everything=show_all),
            result.verdict,
            result.counts(),
        ):
            console.show(renderable)
        gate.write_reports(result, markdown, json_out)
        console.regressions(result.reasons())
        code = result.exit_code
    if update:
        n = gate.update_reference(base_path, cand_path)
        console.show(f"updated {base_path}: {n} record(s) from {cand_path}")
        code = 0
    raise typer.Exit(code)


def export(
    source: Path = typer.Argument(..., help="A run id (under --results-dir) or a run folder."),
    to: str = typer.Option("mlflow", "--to", help="Where to: mlflow (the only target today)."),
    uri: str | None = typer.Option(
        None,
        "--uri",
        help="Tracking URI, or a folder for a local SQLite store in it (default: "
        "<results-dir>/mlruns/); any MLflow server URI works the same way.",
    ),
    experiment: str = typer.Option("radar-bench", "--experiment", help="MLflow experiment."),
    results_dir: Path = options.results_dir(options.LOOKED_UP),
) -> None:
    """Export a stored run to MLflow: one MLflow run per job; exporting twice adds nothing."""
    from bench.reports.tracking import default_tracking_uri, export_run, require_mlflow
    from bench.util.errors import ConfigError

    if to != "mlflow":
        raise ConfigError(f"--to {to!r}: expected mlflow")
    require_mlflow()
    path = source if source.exists() else results_dir / source
    if not path.exists():
        raise ConfigError(f"{source}: neither a run folder nor a run id in {results_dir}")
    result = export_run(path, uri or default_tracking_uri(results_dir), experiment)
    console.show(f"mlflow: {result.summary()} in {result.uri}")
