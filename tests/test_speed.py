"""``bench speed`` end to end on a tiny config, and its parts: batches, the ladder, the floor.

No timed assertions: the numbers are checked for existence, sign and consistency (p95 >= median,
images/s = batch / median time, ...), never against a speed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import bench_output as bench

from bench.execution.speed import SpeedConfig, cycled, eval_subset, parse_batches
from bench.execution.speed_floor import floor_ms, peak_for
from bench.execution.speed_ladder import Ladder, Rung, radar_ladder, rungs_for
from bench.reports.speed import speed_label
from bench.util.errors import ConfigError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_RADAR = [
    "radar.image_size=32",
    "radar.patch_size=16",
    "radar.block_out_channels=8,16",
    "radar.norm_num_groups=8",
    "radar.train_steps=4",
    "radar.batch_size=8",
    "radar.infer_stride=8",
    "radar.scorer_images=10",
]


def test_batches_parse_and_always_hold_one() -> None:
    assert parse_batches("8,auto") == [1, 8, "auto"]
    assert parse_batches("1,4,4,64") == [1, 4, 64]
    for bad in ("0", "8,x", "-2"):
        with pytest.raises(ConfigError, match=r"^--batches .*expected positive integers or auto"):
            parse_batches(bad)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [({"repeats": 0}, "--repeats"), ({"warmup": -1}, "--warmup"), ({"budget_s": 0}, "--budget")],
)
def test_bad_settings_are_one_line_config_errors(changes: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{flag}"):
        SpeedConfig(methods=["radar"], **changes)


def test_ladder_keeps_only_what_makes_it_faster() -> None:
    ladder = Ladder()
    steps = [  # ms per image by batch size
        (Rung("plain"), {1: 10.0}),
        (Rung("bf16", {"infer_precision": "bf16"}), {1: 9.0, 8: 8.0}),  # faster at 1: kept
        (Rung("channels_last", {"channels_last": True}), {1: 8.5, 8: 9.0}),  # slower at 8
        (Rung("auto_batch", {"infer_batch": 0}), {1: 9.5, 8: 4.0}),  # builds on bf16 alone
        (Rung("full", {"inference": "full"}, speed_only=False), {1: 1.0, 8: 0.5}),  # never base
    ]
    seen = []
    for rung, ms in steps:
        changes = ladder.changes_for(rung)
        seen.append((changes, ladder.record(rung, changes, ms)))
    assert seen[2][0] == {"infer_precision": "bf16", "channels_last": True}
    assert seen[3][0] == {"infer_precision": "bf16", "infer_batch": 0}
    assert seen[4][0] == {"infer_precision": "bf16", "infer_batch": 0, "inference": "full"}
    kept = [info["kept"] for _, info in seen]
    assert kept == [True, True, False, True, False]
    # Compared at the largest batch both measured: bf16 against plain at 1, the rest at 8.
    assert [info["compared_at_batch"] for _, info in seen] == [None, 1, 8, 8, 8]
    assert seen[2][1]["builds_on"] == "bf16" and seen[2][1]["speedup_vs_builds_on"] == 8 / 9
    assert ladder.best_name == "auto_batch" and ladder.best_ms == {1: 9.5, 8: 4.0}
    failed = ladder.record(Rung("compile", {"compile": "default"}), {}, None)
    assert not failed["kept"] and failed["speedup_vs_builds_on"] is None


def test_ladders_per_device_and_method() -> None:
    cpu = [r.name for r in radar_ladder("cpu")]
    assert cpu[0] == "plain" and cpu[-1] == "full" and "compile" not in cpu
    cuda = [r.name for r in radar_ladder("cuda")]
    assert {"tf32", "compile", "cuda_graphs"} <= set(cuda)
    assert [r.name for r in rungs_for("patchcore", "ladder", "cuda")] == ["base"]
    picked = [r.name for r in rungs_for("radar", "ladder:cuda_graphs,full", "cuda")]
    assert picked == ["plain", "cuda_graphs", "full"]
    for bad in ("all", "ladder:turbo", "none:bf16"):
        with pytest.raises(ConfigError, match=r"^--variants"):
            rungs_for("radar", bad, "cpu")


def test_floor_and_peaks() -> None:
    assert floor_ms(2935.0, 790.0) == pytest.approx(3.715, rel=1e-3)  # issue #8: 3.7 ms
    assert floor_ms(None, 790.0) is None and floor_ms(7.0, None) is None
    assert peak_for("NVIDIA H200")[0] == 790.0 and peak_for("Intel Xeon (2 threads)")[0] is None


def test_eval_subset_keeps_both_labels_and_cycling_repeats() -> None:
    from bench.datasets import make_dataset
    from bench.interface import InputSpec

    test = make_dataset("synthetic", None).load("test", InputSpec((16, 16), True), 0)
    part = eval_subset(test, 12, seed=0)
    assert len(part) == 12 and set(part.labels.tolist()) == {0, 1}
    assert part.names == eval_subset(test, 12, seed=0).names  # seeded
    assert eval_subset(test, 0, seed=0) is test
    batch = cycled(part, 30)
    assert len(batch) == 30 and batch.names[12] == part.names[0]


def test_label_names_variant_mode_and_precision() -> None:
    rec = {"method": "radar", "variant": "full", "inference.mode": "full"}
    assert speed_label(rec) == "radar [full] full"


def test_speed_command_writes_records_that_report_renders(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    meandiff: str,
) -> None:
    import bench.execution.speed as speed

    # A two-rung ladder (the CPU ladder has five): plain patches, then the whole image.
    two = [Rung("plain"), Rung("full", {"inference": "full"}, speed_only=False)]
    monkeypatch.setattr(
        speed, "rungs_for", lambda m, v, d: two if m == "radar" else rungs_for(m, v, d)
    )
    sets = [x for s in TINY_RADAR for x in ("--set", s)]
    args = ["speed", "--methods", f"{meandiff},radar", "--datasets", "synthetic"]
    args += ["--device", "cpu", "--threads", "1", "--preset", "quick", "--repeats", "2"]
    # A budget far above the calls' real cost: on a loaded machine a tight one skips batches
    # (a wall-clock decision), and the record's shape, not the skip rule, is under test here.
    args += ["--warmup", "1", "--batches", "3,auto", "--budget-s", "120", "--eval-images", "12"]
    args += ["--variants", "ladder", "--peak-tflops", "0.5", *sets]
    args += ["--results-dir", str(tmp_path), "--run-id", "speed"]
    code, out, err = bench(args, capsys)
    assert code == 0, err
    assert "bench speed" in out
    run = tmp_path / "speed"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "speed" and len(manifest["jobs"]) == 3
    records = [json.loads(p.read_text()) for p in run.glob("jobs/*.json")]
    by_variant = {(r["method"], r["variant"]): r for r in records}
    assert set(by_variant) == {(meandiff, "base"), ("radar", "plain"), ("radar", "full")}
    for rec in records:
        assert rec["status"] == "ok", rec.get("error")
        assert rec["kind"] == "speed" and rec["n_test"] == 12
        t, s = rec["timing"], rec["speed"]
        assert [b["batch"] for b in s["batches"]] == [1, 3, 12]  # auto = the 12 scored images
        for b in s["batches"]:
            assert b["p95_ms"] >= b["median_ms"] > 0 and b["repeats"] >= 2
            assert b["images_per_s"] == pytest.approx(b["batch"] * 1000 / b["median_ms"])
            assert b["ms_per_image"] == pytest.approx(b["median_ms"] / b["batch"])
        assert t["ms_per_image"] == s["batches"][0]["median_ms"]
        assert t["ms_per_image_p95"] >= t["ms_per_image"] and len(t["latency_ms"]) == 2
        assert t["images_per_s"] == max(b["images_per_s"] for b in s["batches"])
        assert t["images_per_s"] >= t["images_per_s_batch1"] > 0
        assert t["fit_s"] > 0 and t["peak_mem_mb"] > 0 and t["predict_s"] > 0
        assert 0 <= rec["metrics"]["auroc"] <= 1 and "eval:subset=12/60" in rec["flags"]
        assert (run / "jobs" / f"{rec['job_id']}.scores.csv").exists()
    plain, full = by_variant["radar", "plain"], by_variant["radar", "full"]
    assert plain["gflops_per_image"] > full["gflops_per_image"] > 0
    assert plain["speed"]["floor_ms"] == pytest.approx(plain["gflops_per_image"] / 0.5)
    ratio = plain["timing"]["ms_per_image_best"] / plain["speed"]["floor_ms"]
    assert plain["speed"]["ratio_to_floor"] == pytest.approx(ratio)
    assert plain["fit_info"]["train_patches_per_s"] > 0
    # The ladder: full builds on plain, changes the output (never kept), reuses the U-Net.
    assert plain["ladder"]["kept"] and plain["ladder"]["builds_on"] is None
    assert full["ladder"]["builds_on"] == "plain" and not full["ladder"]["kept"]
    assert full["params"]["inference"] == "full" and full["inference"]["patches_per_image"] == 1
    assert full["fit_info"]["unet_from_cache"]

    code, out, err = bench(["report", str(run), "--out", str(tmp_path / "report")], capsys)
    assert code == 0, err
    speed_md = (tmp_path / "report" / "tables" / "speed.md").read_text()
    for row in ("radar [plain] patches/fp32", "radar [full] full/fp32", meandiff, "x floor"):
        assert row in speed_md
    figures = {p.name for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert {"speed_latency.png", "speed_throughput.png", "latency.png"} <= figures


def test_speed_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = bench(["speed", "--batches", "0", "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: --batches") and "Traceback" not in err
    args = ["speed", "--variants", "every", "--device", "cpu", "--results-dir", str(tmp_path)]
    code, _, err = bench(args, capsys)
    assert code == 2 and "--variants 'every'" in err
    assert not any(tmp_path.iterdir())  # refused before any run folder was made


def _one_speed_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, method: str, run_id: str, *flags: str
) -> dict:
    """`bench speed` of one method on the synthetic set, 1 thread, no warm-up: its one record."""
    args = ["speed", "--methods", method, "--datasets", "synthetic", "--device", "cpu"]
    args += ["--threads", "1", "--warmup", "0", *flags]
    args += ["--results-dir", str(tmp_path), "--run-id", run_id]
    code, _, err = bench(args, capsys)
    assert code == 0, err
    (path,) = (tmp_path / run_id).glob("jobs/*.json")
    return json.loads(path.read_text())


def test_batches_over_the_budget_are_skipped_and_say_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], meandiff: str
) -> None:
    # A budget no call can meet: every batch after batch 1 is estimated over it and skipped,
    # whatever the machine's speed (batch 1, the latency, is always measured).
    flags = ["--repeats", "2", "--batches", "4,auto", "--budget-s", "1e-9", "--eval-images", "12"]
    batches = _one_speed_job(capsys, tmp_path, meandiff, "tight", *flags)["speed"]["batches"]
    assert batches[0]["batch"] == 1 and "median_ms" in batches[0]
    assert [b["batch"] for b in batches[1:]] == [4, 12]
    assert all("over --budget-s" in b["skipped"] for b in batches[1:])


def test_no_calibration_hold_out_scores_the_methods_own_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], meandiff: str
) -> None:
    """`--calibration-fraction 0` (its help: 0 = none) was refused by the calibrated rule: with
    no hold-out every training image fits and F1 is the method's own decision, on record."""
    flags = [
        "--repeats",
        "1",
        "--batches",
        "1",
        "--calibration-fraction",
        "0",
        "--eval-images",
        "4",
    ]
    rec = _one_speed_job(capsys, tmp_path, meandiff, "own", *flags)
    assert rec["status"] == "ok" and rec["threshold_rule"] == "own"
    assert rec["n_calibration"] == 0 and rec["n_fit"] == 60


@pytest.mark.skipif(not (SHARED_DATA / "mtd").is_dir(), reason="../shared/data/mtd not present")
def test_the_paper_size_cpu_run_and_its_ratio_table(tmp_path: Path) -> None:
    """results/perf/cpu_paper_size.sh at the quick preset (the same command, methods, variants
    and settings as the paper-size run), then the README's table from its records."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cpu-paper-size"
    env = {
        **os.environ,
        "SMOKE": "1",
        "OUT": str(out),
        "SHARED": str(SHARED_DATA / "mtd" / "magnetic_tile"),
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", str(root / "results/perf/cpu_paper_size.sh")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    sys.path.insert(0, str(root / "results" / "perf"))
    try:
        import paper_ratios
    finally:
        sys.path.pop(0)
    table = paper_ratios.rows(out)
    assert sorted(zip(table["method"], table["mode"], strict=True)) == [
        ("ddpm_recon", "multi_step"),
        ("diffusionad", "one_step_norm_guided"),
        ("padim", "-"),
        ("patchcore", "-"),
        ("radar", "full"),
        ("radar", "patches"),
    ]
    ddpm = table[table["method"] == "ddpm_recon"].iloc[0]
    assert ddpm["note"] == "extrapolated: 2 of 250 steps timed"
    patchcore = table[table["method"] == "patchcore"].iloc[0]
    assert patchcore["time vs patchcore"] == 1.0 and patchcore["FLOPs vs patchcore"] == 1.0
    assert (table["achieved GFLOP/s"] > 0).all()
    assert "| radar | patches |" in paper_ratios.markdown(table)
