"""The rules a command applies around a run: CPU threads per job, and what its outcome means
for the exit status. The commands (:mod:`bench.cli`) only pass these on, so that the rules
can be read, and tested, in one place.

Exit statuses: 0 done; 1 a job crashed (or, for ``bench ablate``, failed); 2 bad input, as for
errors found before a run starts (:class:`bench.util.errors.BenchError`); 130 interrupted.

>>> run_exit_code([]), run_exit_code([{"error_kind": "crash"}, {"error_kind": "input"}])
(0, 2)
>>> speed_exit_code([{"error_kind": "crash"}, {"error_kind": "input"}])
1
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from bench.execution.config import RunConfig
from bench.store.schema import ErrorKind, Field
from bench.util.errors import ConfigError

#: Ctrl-C or SIGTERM: finished jobs are saved, a rerun resumes.
EXIT_INTERRUPTED = 130
#: At most this many threads per job when ``--workers`` shares out the cores.
MAX_SHARED_THREADS = 8

Records = Sequence[Mapping[str, Any]]


def apply_job_limits(cfg: RunConfig, threads: int | None, workers: int) -> None:
    """``--threads`` (checked) or, with ``--workers N``, the cores shared out, not
    oversubscribed (the timings would suffer); then ``--timing-repeats`` is checked."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: expected a positive integer")
        cfg.threads = threads
    elif workers > 1:
        cfg.threads = max(1, min(MAX_SHARED_THREADS, (os.cpu_count() or 1) // workers))
    if cfg.timing_repeats < 1:
        raise ConfigError(f"--timing-repeats {cfg.timing_repeats}: expected a positive integer")


def _input_errors(failed: Records) -> list[bool]:
    return [r.get(Field.ERROR_KIND) == ErrorKind.INPUT for r in failed]


def run_exit_code(failed: Records) -> int:
    """``bench run``: 2 when any failed job failed on bad input, 1 when they all crashed."""
    if not failed:
        return 0
    return 2 if any(_input_errors(failed)) else 1


def ablate_exit_code(failed: Records) -> int:
    """``bench ablate``: 1 whenever a job failed."""
    return 1 if failed else 0


def prepare_exit_code(missing: Sequence[object]) -> int:
    """``bench prepare``: 1 while an asset the jobs need is missing."""
    return 1 if missing else 0


def speed_exit_code(failed: Records) -> int:
    """``bench speed``: 2 only when every failed job failed on bad input, else 1."""
    if not failed:
        return 0
    return 2 if all(_input_errors(failed)) else 1
