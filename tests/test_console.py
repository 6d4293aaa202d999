"""The console renderer (bench.reports.console) prints what the commands printed before it
existed, byte for byte: the snapshots in console_snapshots/ were rendered by the commands'
own table code before it moved (run/show summary, speed, status, compare verdict, history)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.compare import gate
from bench.compare.settings import CompareSettings
from bench.execution.status import JobStatus, RunStatus
from bench.reports import console

SNAPSHOTS = Path(__file__).parent / "console_snapshots"

RECORDS: list[dict[str, Any]] = [
    {
        "job_id": "a1",
        "method": "padim",
        "dataset": "mvtec:bottle",
        "seed": 0,
        "preset": "paper",
        "status": "ok",
        "flags": ["weights:random"],
        "threshold_rule": "calibrated",
        "metrics": {
            "accuracy": 0.9,
            "precision": 0.85,
            "recall": None,
            "f1": 0.8,
            "auroc": 0.91234,
            "pixel_auroc": 0.95,
        },
        "metrics_ci": {"auroc": [0.85, 0.96], "accuracy": [None, None], "f1": [0.7, 0.88]},
        "undefined_metrics": {"recall": "no anomalous test image"},
        "timing": {"fit_s": 12.34, "ms_per_image": 3.21},
    },
    {
        "job_id": "b2",
        "method": "patchcore",
        "dataset": "mvtec:bottle",
        "seed": 0,
        "preset": "quick",
        "status": "ok",
        "flags": ["preset:quick", "backbone:efficientnet_lite0 (ImageNet)"],
        "threshold_rule": "own",
        "metrics": {"accuracy": 0.5, "f1": 0.66666, "auroc": 0.7},
        "timing": {"fit_s": 0.04, "ms_per_image": 1234.567},
    },
    {
        "job_id": "c3",
        "method": "radar",
        "dataset": "synthetic",
        "seed": 1,
        "preset": "quick",
        "status": "failed",
        "error": "boom [x]",
    },
]
SPEED: list[dict[str, Any]] = [
    {
        "method": "radar",
        "variant": "bf16",
        "dataset": "synthetic",
        "status": "ok",
        "inference": {"mode": "patches", "precision": "bf16"},
        "timing": {
            "ms_per_image": 1.234,
            "ms_per_image_p95": 2.5,
            "images_per_s_batch1": 810.4,
            "images_per_s": 3000.25,
            "best_batch": 64,
            "peak_mem_mb": 1023.6,
            "fit_s": 99.95,
        },
        "gflops_per_image": 12.34,
        "speed": {"ratio_to_floor": 3.14},
        "metrics": {"f1": 0.5, "auroc": 0.75},
    },
    {"method": "pca", "variant": "base", "dataset": "synthetic", "status": "failed"},
]
HISTORY: list[dict[str, Any]] = [
    {
        "run": "before",
        "started": "2026-01-02T03:04:05.678+00:00",
        "commit": "abc-dirty",
        "method": "pca #123456",
        "dataset": "synthetic",
        "seeds": "0,1",
        "ok": "2/2",
        "auroc": 0.91234,
        "fit_s": 1.26,
        "peak_mem_mb": None,
    },
    {
        "run": "after",
        "started": None,
        "commit": None,
        "method": "radar (quick) #abcdef",
        "dataset": "mvtec:tile",
        "seeds": "",
        "ok": "0/1",
        "auroc": float("nan"),
        "fit_s": 0.0,
        "peak_mem_mb": 12.0,
    },
]


def render(items: list[Any], width: int) -> str:
    out = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    for item in items:
        out.print(item)
    return out.export_text()


def snapshot(name: str) -> str:
    return (SNAPSHOTS / f"{name}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("width", [160, 100])
def test_summary_and_speed_tables(width):
    assert render([console.summary_table(RECORDS)], width) == snapshot(f"summary-{width}")
    one_rule = [RECORDS[0], RECORDS[2]]
    assert render([console.summary_table(one_rule)], width) == snapshot(f"summary-one-rule-{width}")
    assert render([console.speed_table(SPEED)], width) == snapshot(f"speed-{width}")


def test_an_ablations_rows_name_their_grid_values():
    """bench show of an ablation: every row is "radar", the variant column tells them apart
    (tuples as --grid takes them, markup-looking values printed as they are)."""
    base = {**RECORDS[0], "method": "radar", "flags": []}
    grid = [
        {"t": 1, "scorer": "iforest"},
        {"t": 5, "scorer": "gaussian"},
        {"t": 1, "block_out_channels": [16, 32, 32]},
        {"t": 1, "scorer": "[bold]"},
    ]
    records = [{**base, "job_id": str(i), "varied": v} for i, v in enumerate(grid)]
    text = render([console.summary_table(records)], 220)
    header = next(line for line in text.splitlines() if "method" in line)
    assert header.replace("┃", " ").split()[:3] == ["method", "variant", "dataset"]
    for needle in ("t=1, scorer=iforest", "t=5, scorer=gaussian", "block_out_channels=(16,32,32)"):
        assert sum(needle in line for line in text.splitlines()) == 1, needle
    assert "scorer=[bold]" in text
    # a run with one configuration per method has no variant column (the snapshots above)
    assert "variant" not in render([console.summary_table(RECORDS)], 220)


def test_history_table():
    table = console.history_table(Path("/r"), HISTORY, ("auroc", "fit_s", "peak_mem_mb"))
    assert render([table], 160) == snapshot("history")


class Job(JobStatus):
    """A job's status with a fixed SLURM log (no log file to read)."""

    def log_tail(self, lines: int) -> list[str]:
        return ["slurm says", "bye"][:lines] if self.slurm else []


def test_status():
    done = {**RECORDS[0], "launcher": {"name": "local", "worker": 2, "host": "n1"}}
    failed = {**RECORDS[2], "traceback": "Traceback:\n  x\nValueError: boom"}
    jobs = [
        Job("a1", "padim · mvtec:bottle · seed 0", "done", done),
        Job("c3", "radar · synthetic · seed 1", "failed", failed, error="boom [x]"),
        Job("d4", "d4", "pending", slurm={"slurm_job_id": "7_1", "stderr": "/x/err"},
            slurm_state="PENDING"),
        Job("e5", "e5", "failed", None, slurm={"slurm_job_id": "7_2", "stderr": "/x/e"},
            slurm_state="TIMEOUT", error="SLURM job 7_2 ended TIMEOUT without a record"),
    ]  # fmt: skip
    finished = {"launcher": {"name": "slurm"}, "finished_at": "2026-01-02T03:04:05.6+00:00"}
    stopped = {"interrupted_at": "2026-01-02T03:04:05"}
    cases = [
        ("status-finished", RunStatus(Path("/r/run"), jobs, finished), True, 1),
        ("status-interrupted", RunStatus(Path("/r/run"), jobs[:2], stopped), False, 10),
        ("status-running", RunStatus(Path("/r/run")), True, 0),
    ]
    for name, status, verbose, lines in cases:
        shown = console.status_renderables(status, verbose=verbose, lines=lines)
        assert render(shown, 120) == snapshot(name), name


def verdict(cmp: gate.Comparison, everything: bool) -> str:
    title = f"bench compare: {cmp.baseline} -> {cmp.candidate}"
    rows = gate.verdict_rows(cmp, everything)
    shown = console.verdict_renderables(
        title, gate.VERDICT_COLUMNS, rows, cmp.verdict, cmp.counts()
    )
    return render(shown, 160)


def test_compare_verdict():
    base = [{**r, "params_hash": "h", "device_name": "cpu"} for r in RECORDS]
    cand = [dict(r) for r in base]
    cand[0] = {
        **cand[0],
        "metrics": {**cand[0]["metrics"], "auroc": 0.8, "f1": 0.80001},
        "timing": {"fit_s": 40.0, "ms_per_image": 3.0},
    }
    cand[1] = {**cand[1], "status": "failed", "error": "gone [y]"}
    cand.append({**base[0], "seed": 5, "job_id": "z"})
    cand = [c for c in cand if c["job_id"] != "c3"]
    warn = CompareSettings(missing_jobs="warn")
    for name, settings in (("fail", CompareSettings()), ("warn", warn)):
        cmp = gate.compare_records(base, cand, settings)
        for everything in (False, True):
            assert verdict(cmp, everything) == snapshot(f"verdict-{name}-{everything}")
    assert verdict(gate.compare_records(base[:1], base[:1]), False) == snapshot("verdict-pass")


def test_one_line_problems_are_never_wrapped_nor_parsed(capsys):
    line = "error: " + "x" * 300 + " [bold]not markup[/bold]"
    console.problem(line)
    assert capsys.readouterr().err == line + "\n"


def test_verdict_cells_are_text_not_markup():
    """A job label or note with brackets (a variant, an error text) is printed as it is."""
    rows = [(["radar [irf] · synthetic", "auroc", "0.9", "0.8", "-0.1", "[bold]x", "worse"], "bad")]
    columns = ["job", "metric", "baseline", "candidate", "change", "note", "outcome"]
    names = ["jobs_compared", "metric_regressions", "failed_jobs", "metric_improvements"]
    counts = dict.fromkeys([*names, "missing_jobs", "extra_jobs", "not_gated_changes"], 0)
    text = render(console.verdict_renderables("t", columns, rows, "fail", counts), 200)
    assert "radar [irf] · synthetic" in text and "[bold]x" in text
