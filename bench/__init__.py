"""radar-bench: RADAR beside anomalib and diffusion-reconstruction baselines, one interface.

From Python (what the ``bench`` command itself calls; see :mod:`bench.api`)::

    import bench
    frame = bench.run("radar,iforest", "synthetic", [0, 1], preset="quick")
    frame = bench.load_runs("results/reference/cpu-smoke")
    page = bench.report("results/reference/cpu-smoke", "report/")
    verdict = bench.compare_runs("results/reference/cpu-smoke", "results/runs/cpu-smoke")

(``compare_runs``, not ``compare``: :mod:`bench.compare` is the regression gate's package.)
``import bench`` stays light: the API's modules (torch, the methods) load on first use.
"""

from __future__ import annotations

from typing import Any

from bench.util.version import __version__

__all__ = ["__version__", "compare_runs", "load_runs", "report", "run", "run_config"]


def __getattr__(name: str) -> Any:
    if name in {"compare_runs", "load_runs", "report", "run", "run_config"}:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
