"""Rerun the CPU smoke set defined in smoke.toml and gate it against the records beside it.

    python results/reference/cpu-smoke/smoke.py             # run + compare; exit 0/1/2
    python results/reference/cpu-smoke/smoke.py --update    # run + make it the reference

Exit codes are those of ``bench compare``: 0 pass, 1 regression (or a failed job), 2 bad input.
The run goes to ``results/runs/cpu-smoke/`` (deleted first, so that nothing is resumed or read
from a cache), the verdict to ``compare.md`` and ``compare.json`` in it; on GitHub Actions the
Markdown is also appended to the job summary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
DEFINITION = HERE / "smoke.toml"


def bench(*args: str) -> int:
    """``bench ARGS`` with this interpreter (no PATH lookup); its exit code."""
    cmd = [sys.executable, "-m", "bench.cli", *args]
    print("+ bench " + " ".join(args), flush=True)
    return subprocess.run(cmd, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="make the rerun the reference")
    parser.add_argument(
        "--out", type=Path, default=Path("results/runs/cpu-smoke"), help="run folder"
    )
    args = parser.parse_args()
    definition = tomllib.loads(DEFINITION.read_text(encoding="utf-8"))["smoke"]
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    for run in definition["run"]:
        sets = [x for value in run.get("set", []) for x in ("--set", value)]
        code = bench(
            "run", "--methods", run["methods"], *definition["options"], *sets,
            "--results-dir", str(out.parent), "--run-id", out.name, "--name", "cpu-smoke",
        )  # fmt: skip
        if code not in (0, 1):  # 1: a job failed; compare reports it as a regression
            return code
    flags = ["--update"] if args.update else []
    code = bench(
        "compare", os.path.relpath(HERE), str(out), "--config", os.path.relpath(DEFINITION),
        "--markdown", str(out / "compare.md"), "--json", str(out / "compare.json"), *flags,
    )  # fmt: skip
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and (out / "compare.md").is_file():
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write((out / "compare.md").read_text(encoding="utf-8") + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
