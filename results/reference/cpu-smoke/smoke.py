"""Rerun the CPU smoke set defined in smoke.toml and gate it against the records beside it.

    python results/reference/cpu-smoke/smoke.py             # run twice, gate, check determinism
    python results/reference/cpu-smoke/smoke.py --no-rerun  # run once, gate only
    python results/reference/cpu-smoke/smoke.py --update    # run once + make it the reference

Two checks, for two different promises:

1. The regression gate: ``bench compare`` of the run with the committed reference, at the
   tolerances of smoke.toml's ``[compare]`` (two-sided, far above the float noise between CPU
   types and far below any change of behaviour), so that a reference recorded on one CPU type
   holds on another.
2. Same-machine determinism: the definition runs a second time into ``<out>-rerun`` and every
   number the two runs computed must be bit-identical (:func:`bench.compare.gate.rerun_differences`,
   tolerance 0).

Exit codes: 0 pass, 1 regression, a failed job or a determinism break, 2 bad input. The runs go
to ``results/runs/cpu-smoke/`` and ``results/runs/cpu-smoke-rerun/`` (deleted first, so that
nothing is resumed or read from a cache), the verdict to ``compare.md`` and ``compare.json`` in
the first; on GitHub Actions the Markdown is also appended to the job summary.
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


def run_definition(definition: dict, out: Path) -> int:
    """Run every ``[[smoke.run]]`` into the fresh folder ``out``; 0, or the first exit code
    that is neither 0 nor 1 (1: a job failed, which the comparison reports)."""
    shutil.rmtree(out, ignore_errors=True)
    for run in definition["run"]:
        sets = [x for value in run.get("set", []) for x in ("--set", value)]
        code = bench(
            "run", "--methods", run["methods"], *definition["options"], *sets,
            "--results-dir", str(out.parent), "--run-id", out.name, "--name", "cpu-smoke",
        )  # fmt: skip
        if code not in (0, 1):
            return code
    return 0


def check_determinism(first: Path, second: Path) -> int:
    """0 when the two runs computed bit-identical numbers, else 1 with one line per job."""
    from bench.compare.gate import rerun_differences

    differences = rerun_differences(first, second)
    for line in differences:
        print(f"determinism: {line}", file=sys.stderr)
    if differences:
        print(
            f"determinism: FAIL, {len(differences)} job(s) of {first} and {second} differ on "
            "the same machine (same seeds, same thread count)", file=sys.stderr,
        )  # fmt: skip
        return 1
    print(f"determinism: PASS ({first} and {second} bit-identical)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="make the run the reference")
    parser.add_argument(
        "--no-rerun", action="store_true", help="skip the same-machine determinism rerun"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results/runs/cpu-smoke"), help="run folder"
    )
    args = parser.parse_args()
    definition = tomllib.loads(DEFINITION.read_text(encoding="utf-8"))["smoke"]
    out: Path = args.out
    code = run_definition(definition, out)
    if code:
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
    if args.update or args.no_rerun or code == 2:
        return code
    rerun = out.with_name(out.name + "-rerun")
    rerun_code = run_definition(definition, rerun)
    if rerun_code:
        return rerun_code
    return max(code, check_determinism(out, rerun))


if __name__ == "__main__":
    sys.exit(main())
