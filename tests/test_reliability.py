"""Reliability guarantees of ``bench run`` (issue #9), each proved here or where noted.

1. Bad input -> one line ``error: ...`` naming what, where and what was expected, exit code 2,
   no traceback (``--debug`` shows it). ``BAD_INPUT`` is the table of cases: add new ones there.
   Also in tests/test_cli.py (unknown method/parameter, wrong type, t out of range, seeds,
   preset, missing data root), tests/test_datasets.py (loader-level messages),
   tests/test_registry.py and tests/test_radar.py (parameter validation).
2. Nothing lost: SIGKILL mid-grid then rerun resumes; Ctrl-C saves what finished (exit 130);
   --fail-fast; unreadable records are recomputed. (Failed jobs recorded and the grid going on:
   tests/test_cli.py.)
3. Determinism: bit-identical records and score files for the same seed (RADAR and meandiff);
   the manifest records torch.backends flags and thread counts.
4. Memory: a (simulated) CUDA out-of-memory inside RADAR inference halves the batch and retries
   (the chunking logic itself: tests/test_radar.py).
5. Concurrency: two processes running the same command into one folder compute each job once
   and leave one record per job.
(6. Loader fuzzing: tests/test_loader_fuzz.py.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import bench_output as bench
from PIL import Image

from bench import cli
from bench.execution.job import describe_failure
from bench.interface import ImageSet, InputSpec, Method, Prediction, RunContext
from bench.methods.registry import MethodEntry, register_method
from bench.store.runs import RunStore
from bench.util.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/jobs/*.json"))]


# ---------------------------------------------------------------------------------------------
# Tiny folder datasets (MVTec layout), broken in one way each


def layout(root: Path, n_train: int = 4, size: tuple[int, int] = (20, 30)) -> Path:
    """train/good, test/good, test/crack with 0/255 masks in ground_truth/crack."""
    rng = np.random.default_rng(0)
    h, w = size

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(path)

    for i in range(n_train):
        image(root / "train/good" / f"{i:03d}.png")
    for kind in ("good", "crack"):
        for i in range(2):
            image(root / "test" / kind / f"{i:03d}.png")
    for i in range(2):
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[4:12, 5:15] = 255
        (root / "ground_truth/crack").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "ground_truth/crack" / f"{i:03d}_mask.png")
    return root


def no_data_root(root: Path) -> Path:
    return root / "does-not-exist"


def no_train_folder(root: Path) -> Path:
    layout(root)
    for p in (root / "train/good").iterdir():
        p.unlink()
    (root / "train/good").rmdir()
    return root


def empty_train(root: Path) -> Path:
    layout(root)
    for p in (root / "train/good").iterdir():
        p.unlink()
    (root / "train/good/notes.txt").write_text("not an image")
    return root


def no_test_folder(root: Path) -> Path:
    layout(root)
    for p in sorted(root.glob("test/*/*")):
        p.unlink()
    for d in root.glob("test/*"):
        d.rmdir()
    (root / "test").rmdir()
    return root


def missing_mask(root: Path) -> Path:
    layout(root)
    (root / "ground_truth/crack/001_mask.png").unlink()
    return root


def badly_named_mask(root: Path) -> Path:
    layout(root)
    (root / "ground_truth/crack/001_mask.png").rename(root / "ground_truth/crack/001.png")
    return root


def truncated_test_image(root: Path) -> Path:
    layout(root)
    path = root / "test/crack/001.png"
    path.write_bytes(path.read_bytes()[:60])
    return root


def garbage_train_image(root: Path) -> Path:
    layout(root)
    (root / "train/good/002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    return root


def mask_of_another_size(root: Path) -> Path:
    layout(root)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(
        root / "ground_truth/crack/000_mask.png"
    )
    return root


def mixed_gray_rgb(root: Path) -> Path:
    """Not an error: grayscale, RGB, RGBA and palette files side by side load as one set."""
    layout(root)
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    rgb.save(root / "train/good/001.png")
    rgb.convert("RGBA").save(root / "test/good/001.png")
    rgb.convert("P").save(root / "test/crack/000.png")
    return root


MEANDIFF_RUN = ["run", "--methods", "meandiff", "--timing-repeats", "1", "--device", "cpu"]


def folder_run(make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        root = make(tmp / "data")
        return [*MEANDIFF_RUN, "--datasets", "prints3d", "--data-root", str(root)]

    return argv


def args(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [*MEANDIFF_RUN, *extra]


#: (id, argv builder, text the one error line must contain, whether it fails before any job).
BAD_INPUT: list[tuple[str, Callable[[Path], list[str]], str, bool]] = [
    ("unknown-dataset", args("--datasets", "synthtic"), "did you mean 'synthetic'?", True),
    ("unknown-texture", args("--datasets", "synthetic:brik"), "did you mean 'brick'?", True),
    ("unknown-set-method", args("--set", "radar.t=3"), "'radar' is not in --methods", True),
    ("malformed-set", args("--set", "meandiff.scale"), "expected METHOD.PARAM=VALUE", True),
    ("wrong-type", args("--set", "meandiff.scale=big"), "meandiff.scale='big'", True),
    ("out-of-range", args("--set", "meandiff.image_size=2"), "image_size must be >= 4", True),
    (
        "radar-patch-larger-than-image",
        lambda tmp: ["run", "--methods", "radar", "--set", "radar.patch_size=200"],
        "radar.patch_size must be between 1 and image_size (100), got 200",
        True,
    ),
    (
        "radar-t-negative",
        lambda tmp: ["run", "--methods", "radar", "--set", "radar.t=-1"],
        "radar.t must be in 0..num_train_timesteps-1 (0..999), got -1",
        True,
    ),
    (
        "radar-contamination-zero",
        lambda tmp: ["run", "--methods", "radar", "--set", "radar.contamination=0"],
        "radar.contamination must be in (0, 0.5], got 0.0",
        True,
    ),
    (
        "radar-contamination-above-half",
        lambda tmp: ["run", "--methods", "radar", "--set", "radar.contamination=0.51"],
        "radar.contamination must be in (0, 0.5], got 0.51",
        True,
    ),
    ("bad-device", args("--device", "tpu"), "--device 'tpu': expected auto, cpu, cuda", True),
    ("threads", args("--threads", "0"), "--threads 0: expected a positive integer", True),
    ("repeats", args("--timing-repeats", "0"), "--timing-repeats 0", True),
    ("prints3d-no-root", args("--datasets", "prints3d"), "--data-root (or BENCH_DATA)", True),
    ("missing-data-root", folder_run(no_data_root), "does-not-exist: folder not found", True),
    ("no-train-folder", folder_run(no_train_folder), "train/good: folder not found", True),
    ("empty-train-set", folder_run(empty_train), "train/good: no images", True),
    ("no-test-folder", folder_run(no_test_folder), "test: folder not found", True),
    ("missing-mask", folder_run(missing_mask), "001.png: anomalous test image has no mask", True),
    ("badly-named-mask", folder_run(badly_named_mask), "does not end in _mask", True),
    # Found while a job loads its data: the job is recorded as failed, the line names the file.
    ("truncated-image", folder_run(truncated_test_image), "crack/001.png: cannot read", False),
    ("garbage-image", folder_run(garbage_train_image), "good/002.png: cannot read", False),
    ("mask-size", folder_run(mask_of_another_size), "mask is 10x10 but its image", False),
]


def test_unwritable_results_folder_is_one_line(tmp_path, capsys, meandiff):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    code, _, err = bench([*MEANDIFF_RUN, "--results-dir", str(blocker)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    line = err.strip()
    assert line.startswith(f"error: --results-dir {blocker}: cannot create ")
    assert "expected a writable folder" in line


@pytest.mark.parametrize(
    ("argv", "expected", "up_front"),
    [pytest.param(a, e, u, id=i) for i, a, e, u in BAD_INPUT],
)
def test_bad_input_is_one_line_exit_2_without_traceback(
    argv, expected, up_front, tmp_path, capsys, meandiff, monkeypatch
):
    monkeypatch.delenv("BENCH_DATA", raising=False)
    results = tmp_path / "results"
    code, out, err = bench([*argv(tmp_path), "--results-dir", str(results)], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out + err
    if up_front:
        assert not results.exists(), "nothing is written before the input is valid"
    else:
        (rec,) = records(results)
        assert rec["status"] == "failed" and rec["error_kind"] == "input"
        assert expected in rec["error"] and "Traceback" in rec["traceback"]


def test_cuda_without_cuda_is_one_line(tmp_path, capsys, meandiff, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = bench([*MEANDIFF_RUN[:-2], "--device", "cuda"], capsys)
    assert code == 2
    assert err.strip() == (
        "error: --device cuda: CUDA is not available on this machine "
        "(use --device cpu or --device auto)"
    )


def test_debug_shows_the_traceback(capsys):
    old = sys.argv
    sys.argv = ["bench", "--debug", "run", "--methods", "radr"]
    try:
        with pytest.raises(ConfigError, match="did you mean 'radar'"):
            cli.main()
    finally:
        sys.argv = old


def test_debug_shows_the_traceback_of_a_failed_job(tmp_path, capsys, meandiff):
    argv = folder_run(truncated_test_image)(tmp_path)
    code, _, err = bench(["--debug", *argv, "--results-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and "\nerror: meandiff on prints3d seed 0: DataError: " in f"\n{err}"
    assert "Traceback (most recent call last)" in err and "read_image" in err


def test_mixed_grayscale_and_rgb_is_handled(tmp_path, capsys, meandiff):
    root = mixed_gray_rgb(tmp_path / "data")
    results = tmp_path / "results"
    argv = [*MEANDIFF_RUN, "--datasets", "prints3d", "--data-root", str(root)]
    code, _, err = bench([*argv, "--results-dir", str(results)], capsys)
    assert code == 0, err
    (rec,) = records(results)
    assert rec["status"] == "ok" and rec["n_train"] == 4 and rec["n_test"] == 4
    assert rec["channels"] == 1 and rec["metrics"]["pixel_auroc"] is not None


# -- pretrained weights that are not there offline ---------------------------------------------


class _NeedsWeights(Method[Any]):
    """A detector whose fit fetches weights from the Hugging Face Hub, as timm/anomalib do."""

    name = "needsweights"

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec((16, 16), grayscale=True)

    def fit(self, train: ImageSet, ctx: RunContext) -> _NeedsWeights:
        from huggingface_hub import hf_hub_download

        hf_hub_download("timm/resnet18.a1_in1k", "model.safetensors", cache_dir=ctx.cache_dir)
        return self

    def predict(self, test: ImageSet) -> Prediction:
        raise AssertionError("never reached")


def test_missing_pretrained_weights_offline(tmp_path, capsys, monkeypatch):
    from dataclasses import make_dataclass

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    params = make_dataclass("NeedsWeightsParams", [("dummy", int, 0)])
    register_method(MethodEntry("needsweights", params, _NeedsWeights, "test-only", {}))
    results = tmp_path / "results"
    argv = ["run", "--methods", "needsweights", "--preset", "paper", "--device", "cpu"]
    code, _, err = bench([*argv, "--results-dir", str(results)], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: needsweights on synthetic seed 0: WeightsUnavailable: ")
    assert "not in the local cache" in line and "HF_HOME" in line
    (rec,) = records(results)
    assert rec["status"] == "failed" and rec["error_kind"] == "input"


def test_failures_are_classified():
    import urllib.error

    assert describe_failure(ConfigError("x"))[0] == "input"
    assert describe_failure(urllib.error.URLError("no route"))[0] == "input"
    try:  # the download error wrapped by an adapter is still recognised
        try:
            raise urllib.error.URLError("offline")
        except urllib.error.URLError as exc:
            raise RuntimeError("could not build backbone") from exc
    except RuntimeError as wrapped:
        assert describe_failure(wrapped)[0] == "input"
    assert describe_failure(ValueError("bug")) == ("crash", "ValueError: bug")


# ---------------------------------------------------------------------------------------------
# 2. Nothing lost


# `bench` with meandiff registered. The built-in methods are left unloaded on purpose: importing
# them (diffusers, anomalib) would cost each subprocess ~10 s of CPU and is not under test here.
DRIVER = (
    "import sys; sys.path.insert(0, 'tests'); from helpers import register_meandiff; "
    "import bench.methods.registry as r; r._BUILTINS_LOADED = True; register_meandiff(); "
    "from bench.cli import main; sys.argv = ['bench', *sys.argv[1:]]; main()"
)


def grid(results: Path, seeds: str = "0-2") -> list[str]:
    # No maps: the pixel metrics would import anomalib (seconds of CPU per subprocess).
    sets = ["--set", "meandiff.maps=false"]
    return [*MEANDIFF_RUN, *sets, "--seeds", seeds, "--results-dir", str(results)]


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, *argv],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def traced(trace: Path) -> list[tuple[int, int]]:
    if not trace.exists():
        return []
    return [tuple(map(int, line.split())) for line in trace.read_text().splitlines()]


def test_sigkill_mid_grid_then_rerun_resumes(tmp_path, capsys, meandiff, monkeypatch):
    results, trace = tmp_path / "results", tmp_path / "trace.txt"
    # Seed 1 (the second job) sleeps, so the kill lands inside it, after seed 0's record.
    env = {"MEANDIFF_TRACE": str(trace), "MEANDIFF_SLEEP_S": "300", "MEANDIFF_SLEEP_SEED": "1"}
    proc = spawn(grid(results), env)
    wait_for(lambda: [s for s, _ in traced(trace)] == [0, 1], proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert [r["seed"] for r in records(results)] == [0]
    first = records(results)[0]

    monkeypatch.setenv("MEANDIFF_TRACE", str(trace))
    code, out, err = bench(grid(results), capsys)
    assert code == 0, err
    assert "1 already done, skipped" in out
    # seed 0 was not rerun; the killed seed 1 was, and seed 2 ran for the first time
    assert [s for s, pid in traced(trace) if pid == os.getpid()] == [1, 2]
    recs = records(results)
    assert sorted(r["seed"] for r in recs) == [0, 1, 2]
    assert all(r["status"] == "ok" for r in recs)
    assert next(r for r in recs if r["seed"] == 0) == first  # untouched
    (run_dir,) = results.iterdir()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert len(pd.read_csv(run_dir / "records.csv")) == 3
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert sorted(manifest["jobs"]) == sorted(r["job_id"] for r in recs)
    assert manifest["resumed_at"] and manifest["finished_at"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_saves_what_finished(sig, tmp_path):
    """Ctrl-C, or the SIGTERM a batch scheduler sends, stops cleanly after saving."""
    results, trace = tmp_path / "results", tmp_path / "trace.txt"
    env = {"MEANDIFF_TRACE": str(trace), "MEANDIFF_SLEEP_S": "300", "MEANDIFF_SLEEP_SEED": "1"}
    proc = spawn(grid(results), env)
    wait_for(lambda: [s for s, _ in traced(trace)] == [0, 1], proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished jobs are saved" in err and "Traceback" not in err
    (run_dir,) = results.iterdir()
    assert [r["seed"] for r in records(results)] == [0]
    assert len(pd.read_csv(run_dir / "records.csv")) == 1
    # Stopped, not finished (issue #24): the manifest and `bench status` say so.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["finished_at"] is None and manifest["interrupted_at"]
    status = subprocess.run(
        [sys.executable, "-c", DRIVER, "status", str(run_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "interrupted" in status.stdout and "finished" not in status.stdout


def test_fail_fast_stops_at_the_first_failure(tmp_path, capsys, meandiff):
    results = tmp_path / "results"
    argv = [*grid(results), "--set", "meandiff.fail=true"]
    code, _, err = bench([*argv, "--fail-fast"], capsys)
    assert code == 1 and err.count("failed: meandiff") == 1
    (rec,) = records(results)
    assert rec["status"] == "failed" and rec["error_kind"] == "crash"
    assert rec["error"] == "RuntimeError: asked to fail"
    # without --fail-fast the grid goes on: the failed job is retried, the rest run too
    code, _, err = bench(argv, capsys)
    assert code == 1 and err.count("failed: meandiff") == 3
    assert len(records(results)) == 3


def test_unreadable_record_is_recomputed_not_fatal(tmp_path, capsys, meandiff):
    results = tmp_path / "results"
    assert bench(grid(results, "0"), capsys)[0] == 0
    (path,) = results.glob("*/jobs/*.json")
    path.write_text('{"job_id": "trunc')  # e.g. written by a tool without atomic writes
    code, out, err = bench(grid(results, "0"), capsys)
    assert code == 0 and "skipped" not in out
    assert json.loads(path.read_text())["status"] == "ok"
    # Said once (issue #24: it was said twice), and kept aside, not deleted.
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert path.name in warning and "not valid JSON" in warning
    (aside,) = path.parent.glob(f"{path.name}.damaged-*")
    assert aside.read_text() == '{"job_id": "trunc'


def test_claims_exclude_each_other(tmp_path):
    store = RunStore(tmp_path)
    with store.claim("a") as mine:
        assert mine
        with store.claim("a") as other, store.claim("b") as free:
            assert not other and free
    with store.claim("a") as again:
        assert again


# ---------------------------------------------------------------------------------------------
# 3. Determinism


TINY_RADAR = [
    "radar.image_size=32",
    "radar.patch_size=16",
    "radar.block_out_channels=8,16",
    "radar.norm_num_groups=8",
    "radar.train_steps=10",
    "radar.batch_size=8",
    "radar.infer_stride=8",
    "radar.n_estimators=20",
    "radar.scorer_images=0",
]


def _numbers(run_dir: Path) -> dict[int, tuple[dict, bytes]]:
    """seed -> (metrics, scores CSV bytes) of every record in a run folder."""
    out = {}
    for rec in (json.loads(p.read_text()) for p in sorted(run_dir.glob("jobs/*.json"))):
        assert rec["status"] == "ok", rec.get("error")
        scores = (run_dir / "jobs" / f"{rec['job_id']}.scores.csv").read_bytes()
        out[rec["seed"]] = (rec["metrics"], scores)
    return out


@pytest.mark.parametrize("method", ["radar", "meandiff"])
def test_same_seed_same_bits_other_seed_other_noise(method, tmp_path, capsys, meandiff):
    sets = [a for s in TINY_RADAR for a in ("--set", s)] if method == "radar" else []
    base = ["run", "--methods", method, "--device", "cpu", "--timing-repeats", "1", *sets]
    base += ["--threads", "1"]
    for name, seeds in (("a", "0,1"), ("b", "0")):
        code, _, err = bench(
            [*base, "--seeds", seeds, "--results-dir", str(tmp_path / name)], capsys
        )
        assert code == 0, err
    (run_a,), (run_b,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    a, b = _numbers(run_a), _numbers(run_b)
    assert a[0] == b[0]  # metrics dict equal and score files equal byte for byte
    assert a[0][1] != a[1][1]  # another seed, other training noise

    manifest = json.loads((run_a / "manifest.json").read_text())
    env = manifest["environment"]
    assert env["torch_threads"] == 1 and env["torch_flags"]["num_threads"] == 1
    for flag in (
        "cudnn_deterministic",
        "cudnn_benchmark",
        "cuda_matmul_allow_tf32",
        "cudnn_allow_tf32",
        "deterministic_algorithms",
        "num_interop_threads",
    ):
        assert flag in env["torch_flags"]
    assert all(json.loads(p.read_text())["threads"] == 1 for p in run_a.glob("jobs/*.json"))


# ---------------------------------------------------------------------------------------------
# 4. Memory: a CUDA out-of-memory in RADAR inference halves the batch


def test_radar_inference_halves_its_batch_on_out_of_memory(caplog):
    from bench.methods.radar.detector import Radar, RadarParams

    params = RadarParams(
        image_size=32,
        patch_size=16,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        train_steps=2,
        batch_size=4,
        infer_stride=8,
        infer_batch=64,
        n_estimators=10,
    )
    gen = torch.Generator().manual_seed(0)
    names = [f"good/{i}.png" for i in range(6)]
    x = torch.rand(6, 1, 32, 32, generator=gen)
    images = ImageSet(x, torch.zeros(6, dtype=torch.long), None, names)
    ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
    radar = Radar(params).fit(images, ctx)
    reference = radar.predict(images)

    forward = radar.unet_.forward
    sizes: list[int] = []

    def small_memory(sample, timestep, *a, **k):
        sizes.append(len(sample))
        if len(sample) > 5:  # what torch raises when the GPU runs out of memory
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(sample, timestep, *a, **k)

    radar.unet_.forward = small_memory
    with caplog.at_level(logging.WARNING, logger="bench.methods.radar.patches"):
        halved = radar.predict(images)
    # 6 images x 9 patches: 54 (all there are of the 64) -> 32 -> 16 -> 8 -> 4, then 4 kept
    assert sizes[:5] == [54, 32, 16, 8, 4] and max(sizes[4:]) == 4 and radar.infer_batch_ == 4
    assert "retrying with 32" in caplog.text and "retrying with 4" in caplog.text
    torch.testing.assert_close(halved.maps, reference.maps, rtol=1e-4, atol=1e-5)
    assert torch.equal(halved.decisions, reference.decisions)


# ---------------------------------------------------------------------------------------------
# 5. Concurrency: two processes, one results folder, the same run id


def test_two_processes_share_a_results_folder(tmp_path):
    """Same command, same run id, started one after the other: B skips the job A is running,
    does the rest, waits for A's job at the end; each job is computed once, by one of them."""
    results, trace, gate = tmp_path / "results", tmp_path / "trace.txt", tmp_path / "gate"
    env = {"MEANDIFF_TRACE": str(trace), "MEANDIFF_GATE": str(gate), "MEANDIFF_SLEEP_SEED": "0"}
    argv = [*grid(results, "0-3"), "--run-id", "shared"]
    a = spawn(argv, env)
    wait_for(lambda: len(traced(trace)) == 1, a)  # A holds seed 0 until the gate opens
    b = spawn(argv, env)
    wait_for(lambda: len(traced(trace)) == 4, b)  # B did seeds 1-3 and now waits for seed 0
    gate.touch()
    outputs = [p.communicate(timeout=300) for p in (a, b)]
    assert [p.returncode for p in (a, b)] == [0, 0], outputs
    assert traced(trace) == [(0, a.pid), (1, b.pid), (2, b.pid), (3, b.pid)]
    assert "3 already done, skipped" in outputs[0][0]  # A found B's records
    assert "1 already done, skipped" in outputs[1][0]  # B waited for A's
    recs = records(results)
    assert sorted(r["seed"] for r in recs) == [0, 1, 2, 3]
    assert all(r["status"] == "ok" for r in recs)
    run_dir = results / "shared"
    csv = pd.read_csv(run_dir / "records.csv")
    assert sorted(csv["seed"]) == [0, 1, 2, 3]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert sorted(manifest["jobs"]) == sorted(r["job_id"] for r in recs)
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
