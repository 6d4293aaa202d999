"""Launcher overhead and the ``--workers`` speed-up on this machine (issue #13).

1. Per-job overhead: the same grid of N trivial jobs (the test-only ``meandiff`` on the
   synthetic set, image scores only, 1 thread per job) through each launcher, the driver warm
   (method registry loaded, one job run before). ``overhead_ms_per_job`` is
   ``(wall time through the launcher - wall time in-process) / N``: process starts, imports,
   pickling, scheduling and polling, net of whatever running two jobs at once saves. For the
   in-process default it is 0 by definition; its own per-job time is ``wall_s / N``. The same
   with one job splits it into ``fixed_s_per_run`` (worker start-up, paid once per run) and
   ``marginal_ms_per_job`` (what each further job adds). Ray's start-up (``ray.init`` of a
   local instance) is reported apart (``startup_s``) and left out of its wall time: on a
   cluster Ray is already running.
2. A CPU grid (4 ``ddpm_recon`` jobs, quick preset, fewer epochs and DDIM steps) sequentially
   (2 threads per job, the default here, and 1 thread) vs ``--workers 2`` with 1 thread each:
   the wall-time ratios.

Writes a JSON file and prints a table; the machine's load average is recorded beside the
numbers (they are only comparable under the same load)::

    python benchmarks/launchers.py --out benchmarks/launchers.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _seconds(record: dict[str, Any]) -> float:
    start = dt.datetime.fromisoformat(record["started_at"])
    end = dt.datetime.fromisoformat(record["finished_at"])
    return (end - start).total_seconds()


def timed_grid(cfg: Any, opts: Any, results: Path, run_id: str) -> dict[str, Any]:
    """Run the grid through the launcher ``opts`` asks for; wall time and in-job time."""
    from bench.execution import runner
    from bench.execution.launchers import make_launcher

    launcher = make_launcher(opts)
    startup = 0.0
    try:
        if launcher is not None and opts.launcher == "ray":
            t0 = time.perf_counter()
            launcher.target_device(cfg)  # ray.init: apart from the per-job cost
            startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        outcome = runner.run(cfg, results_dir=results, run_id=run_id, launcher=launcher)
        wall = time.perf_counter() - t0
    finally:
        if launcher is not None:
            launcher.close()
    failed = [r for r in outcome.records if r.get("status") != "ok"]
    if failed:
        raise SystemExit(f"{run_id}: {len(failed)} job(s) failed: {failed[0].get('error')}")
    return {
        "jobs": len(outcome.records),
        "wall_s": round(wall, 3),
        "startup_s": round(startup, 3),
        "in_jobs_s": round(sum(_seconds(r) for r in outcome.records), 3),
        "auroc": [r["metrics"]["auroc"] for r in outcome.records],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="trivial jobs per launcher")
    parser.add_argument("--grid-epochs", type=int, default=1, help="ddpm_recon epochs per job")
    parser.add_argument("--grid-steps", type=int, default=2, help="ddpm_recon DDIM steps")
    parser.add_argument("--skip-grid", action="store_true", help="only the overhead part")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "launchers.json")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import register_meandiff

    from bench.execution.config import RunConfig
    from bench.execution.launchers import LauncherOptions

    register_meandiff()
    launchers = {
        "local": LauncherOptions(),
        "local --workers 2": LauncherOptions(workers=2),
        "ray (local instance)": LauncherOptions(launcher="ray"),
        "slurm (submitit local)": LauncherOptions(launcher="slurm", slurm_cluster="local"),
    }
    report: dict[str, Any] = {
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
        "load_average_before": os.getloadavg(),
        "overhead": {},
    }
    trivial = RunConfig(
        methods=["meandiff"],
        seeds=list(range(args.jobs)),
        sets={"meandiff": {"maps": "false"}},
        threads=1,
        timing_repeats=1,
    )
    with tempfile.TemporaryDirectory() as scratch:
        from bench.methods import registry

        registry.methods()  # a warm driver: every launcher pays the same for what is left
        warm = RunConfig(**{**trivial.__dict__, "seeds": [999]})
        timed_grid(warm, LauncherOptions(), Path(scratch), "warm-up")
        # N jobs and 1 job through each launcher: the difference separates what a launcher
        # costs once per run (starting worker processes, their imports) from what it costs
        # per job (dispatch, pickling, one process per job under SLURM).
        single = RunConfig(**{**trivial.__dict__, "seeds": [0]})
        reference: dict[str, Any] = {}
        for i, (name, opts) in enumerate(launchers.items()):
            row = timed_grid(trivial, opts, Path(scratch), f"trivial-{i}")
            one = timed_grid(single, opts, Path(scratch), f"single-{i}")
            reference = reference or {"n": row, "one": one}
            n = row["jobs"]
            extra_n = row["wall_s"] - reference["n"]["wall_s"]
            extra_one = one["wall_s"] - reference["one"]["wall_s"]
            row["one_job_wall_s"] = one["wall_s"]
            row["overhead_ms_per_job"] = round(1000 * extra_n / n, 1)
            row["fixed_s_per_run"] = round(extra_one, 2)
            row["marginal_ms_per_job"] = round(1000 * (extra_n - extra_one) / (n - 1), 1)
            row["same_auroc_as_local"] = row["auroc"] == reference["n"]["auroc"]
            report["overhead"][name] = row
            print(
                f"{name:24s} {row['overhead_ms_per_job']:8.1f} ms/job over {n} jobs "
                f"(fixed {row['fixed_s_per_run']:.2f} s/run, marginal "
                f"{row['marginal_ms_per_job']:.1f} ms/job)",
                flush=True,
            )
        if not args.skip_grid:
            grid = {
                "methods": ["ddpm_recon"],
                "seeds": [0, 1, 2, 3],
                "sets": {
                    "ddpm_recon": {"epochs": str(args.grid_epochs), "steps": str(args.grid_steps)}
                },
                "timing_repeats": 1,
            }
            seq = timed_grid(
                RunConfig(**grid, threads=2), LauncherOptions(), Path(scratch), "grid-seq"
            )
            # Sequential with 1 thread too: on a loaded machine a 2-thread job can lose more to
            # its threads waiting for each other than it gains; this isolates the parallelism.
            seq1 = timed_grid(
                RunConfig(**grid, threads=1), LauncherOptions(), Path(scratch), "grid-seq1"
            )
            par = timed_grid(
                RunConfig(**grid, threads=1), LauncherOptions(workers=2), Path(scratch), "grid-w2"
            )
            report["cpu_grid"] = {
                "grid": f"ddpm_recon quick, epochs={args.grid_epochs}, steps={args.grid_steps}, "
                "synthetic, seeds 0-3",
                "sequential_2_threads": seq,
                "sequential_1_thread": seq1,
                "workers_2_x_1_thread": par,
                "ratio_vs_sequential_2_threads": round(seq["wall_s"] / par["wall_s"], 2),
                "ratio_vs_sequential_1_thread": round(seq1["wall_s"] / par["wall_s"], 2),
            }
            print(
                f"CPU grid: sequential {seq['wall_s']} s (2 threads), {seq1['wall_s']} s "
                f"(1 thread); --workers 2: {par['wall_s']} s",
                flush=True,
            )
    report["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
