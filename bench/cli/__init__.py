"""The ``bench`` command line: the Typer app, assembled from one module per command group.

``run`` (run, ablate), ``speed``, ``status`` (status, show, history), ``report`` (report,
compare, export) and ``data`` (data download|synthetic, prepare, list); the options they share
are in :mod:`bench.cli.options`. A command parses its options, calls the layer below and hands the
result to :mod:`bench.reports.console`; the rules (exit codes, threads) are in
:mod:`bench.execution.policy`. Everything heavy is imported inside the commands, so that
``bench --help`` is fast.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings

import click
import typer

from bench.cli import data, options, report, run, speed, status
from bench.reports import console
from bench.util.errors import BenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark image anomaly detectors: RADAR, diffusion reconstruction, anomalib.",
)
for name, command in (
    ("speed", speed.speed),
    ("run", run.run),
    ("ablate", run.ablate),
    ("status", status.status),
    ("prepare", data.prepare),
    ("list", data.list_),
    ("show", status.show),
    ("report", report.report),
    ("compare", report.compare),
    ("export", report.export),
    ("history", status.history),
):
    app.command(name)(command)
data_app = typer.Typer(no_args_is_help=True, help="Get or generate datasets.")
data_app.command("download")(data.download)
data_app.command("synthetic")(data.synthetic)
app.add_typer(data_app, name="data")


def main() -> None:
    debug = options.debug = "--debug" in sys.argv[1:]
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
        console.problem(f"error: {exc}")
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.show("aborted", err=True)
        sys.exit(130)
    except _USAGE_ERRORS as exc:
        # one line, like every other error: click's own show() prints the usage block too
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        console.problem(f"error: {where}{exc.format_message().rstrip('.')} (see --help)")
        sys.exit(exc.exit_code)
    finally:
        bench_log.removeHandler(handler)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's usage-error base and typer's own copy of click (typer >= 0.29 vendors click:
    its errors, an unknown option among them, are not click's classes)."""
    found: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as vendored
    except ImportError:  # an older typer on plain click
        return tuple(found)
    return (*found, vendored)


_USAGE_ERRORS = _usage_error_types()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


__all__ = ["app", "main"]
