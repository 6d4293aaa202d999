"""The paper-size CPU cost table of results/perf/README.md, from one `bench speed` run
(results/perf/cpu_paper_size.sh).

    python results/perf/paper_ratios.py [RUN_FOLDER]   # default results/perf/cpu-paper-size

Per method and mode: GFLOP/image, ms/image at batch 1 (the one timed call), images/s, the
measured time and the FLOP count as ratios to PatchCore's (same process, same core: ratios are
what carries to other devices), and the achieved GFLOP/s (FLOPs over time: where a method's time
ratio is far above its FLOP ratio, something other than its network's arithmetic costs the
time). The multi-step DDPM reconstruction ran ``params.steps`` of its paper's 250 steps: its
time and FLOPs are scaled per step and marked extrapolated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.store.runs import load_results

RUN = Path(__file__).parent / "cpu-paper-size"
PAPER_DDPM_STEPS = 250
REFERENCE = "patchcore"


def rows(run: Path) -> pd.DataFrame:
    frame = load_results(run)
    frame = frame[frame["status"] == "ok"]
    out = pd.DataFrame(
        {
            "method": frame["method"],
            "mode": frame.get("inference.mode", pd.Series("-", index=frame.index)).fillna("-"),
            "gflops": frame["gflops_per_image"].astype(float),
            "ms": frame["timing.ms_per_image"].astype(float),
            "note": "",
        }
    )
    steps = frame.get("params.steps")
    multi = (out["method"] == "ddpm_recon") & (steps is not None)
    if multi.any():
        done = steps[multi].astype(float)
        scale = PAPER_DDPM_STEPS / done
        out.loc[multi, "gflops"] *= scale
        out.loc[multi, "ms"] *= scale
        out.loc[multi, "note"] = [
            f"extrapolated: {int(d)} of {PAPER_DDPM_STEPS} steps timed" for d in done
        ]
    ref = out[out["method"] == REFERENCE].iloc[0]
    out["images/s"] = 1000 / out["ms"]
    out[f"time vs {REFERENCE}"] = out["ms"] / ref["ms"]
    out[f"FLOPs vs {REFERENCE}"] = out["gflops"] / ref["gflops"]
    out["achieved GFLOP/s"] = out["gflops"] / (out["ms"] / 1000)
    return out.sort_values("gflops").reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    def cell(value: float) -> str:
        return f"{value:,.3g}" if value < 1000 else f"{value:,.0f}"

    header = [
        "method",
        "mode",
        "GFLOP/image",
        "ms/image",
        "images/s",
        f"time vs {REFERENCE}",
        f"FLOPs vs {REFERENCE}",
        "achieved GFLOP/s",
        "note",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        numbers = [r["gflops"], r["ms"], r["images/s"], r[header[5]], r[header[6]], r[header[7]]]
        lines.append(
            f"| {r['method']} | {r['mode']} | "
            + " | ".join(cell(v) for v in numbers)
            + f" | {r['note']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(rows(Path(sys.argv[1]) if len(sys.argv) > 1 else RUN)))
