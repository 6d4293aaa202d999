"""radar-bench from Python: run a small grid, read the records, write a report, gate a rerun.

    python examples/from_python.py [OUT_DIR]

Runs IsolationForest and PCA on the built-in synthetic set (2 seeds, quick preset: seconds on
a laptop CPU), so that every line below really runs; swap in "radar" and your data for work.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import bench


def main(out: Path) -> None:
    # 1. Run a grid. The records come back as a DataFrame, one row per job; the run folder
    #    under results_dir resumes: running the same call again recomputes nothing.
    frame = bench.run(
        ["iforest", "pca"],
        "synthetic",
        seeds=[0, 1],
        preset="quick",
        results_dir=out / "runs",
        run_id="example",
    )
    table = frame.groupby("method")[["metrics.auroc", "metrics.f1"]].mean().round(3)
    print(table.to_string())

    # 2. Load stored runs (one or many folders) as one DataFrame.
    runs = bench.load_runs(out / "runs" / "example")
    print(
        f"{len(runs)} jobs, columns like {sorted(c for c in runs if c.startswith('params.'))[:3]}"
    )

    # 3. The report: LaTeX/Markdown/CSV tables, figures and index.html.
    page = bench.report(out / "runs" / "example", out / "report")
    print(f"report: {page}")

    # 4. Gate a candidate against a baseline: the verdict as data.
    verdict = bench.compare_runs(out / "runs" / "example", out / "runs" / "example")
    print(f"verdict: {verdict.verdict} ({verdict.counts()['jobs_compared']} jobs compared)")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-"))
    main(target)
