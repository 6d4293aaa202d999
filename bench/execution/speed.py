"""Time every method on one device in one process: fit, quality, latency and throughput.

Per (dataset, method, variant) job, in this order: seed -> load the data at the method's input
spec -> hold out the calibration normals (:mod:`bench.evaluation.protocol`, as ``bench run`` does)
-> fit (timed, peak memory) -> predict the evaluation images once (quality under the threshold
protocol; ``eval_images`` > 0 scores a seeded, label-stratified subset of the test set to bound
the time of slow variants) -> for each batch size, ``warmup`` untimed calls of
``predict`` on that many test images (cycled when the test set is smaller), one pilot call
(peak memory is read there, so that no sampling thread runs while the clock does), then timed
calls, each synchronised (:func:`bench.util.timing.measure_latency`): ``repeats`` of them at batch 1
(the latency: median and p95), and at larger batches as many as fit in ``budget_s`` seconds
(at least :data:`MIN_REPEATS`, at most ``repeats``; at most 2 warm-up calls, which is enough
for new shapes). ``auto`` is the whole evaluation set in one call (at most
:data:`AUTO_BATCH_CAP` images): the method's own batching. A batch size whose calls would
take longer than ``budget_s / MIN_REPEATS`` each (estimated from the batch before it) is
skipped and marked so in the record: patch-mode RADAR in fp32 would otherwise spend minutes
per variant on batches that cannot be faster per image than the ones measured.

Each job writes one record (``kind: "speed"``) with the runner's fields (``timing``,
``metrics``, ``gflops_per_image``, ``fit_info``, ``inference``, ``flags``, ...) so ``bench report``
reads it like any other, plus a ``speed`` block: every batch size's numbers, the best images/s,
and the FLOP floor (:mod:`bench.execution.speed_floor`). In the ``timing`` block ``ms_per_image``
and ``ms_per_image_p95`` are batch 1, ``images_per_s`` the best batch. RADAR's variants share one
trained U-Net through the run's cache (:data:`bench.methods.radar.detector.TRAINING_FIELDS`), so a
ladder trains once.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.datasets import make_dataset
from bench.datasets.base import Dataset
from bench.evaluation.protocol import (
    DEFAULT_CALIBRATION_FRACTION,
    DEFAULT_RULE,
    DEFAULT_TARGET_FPR,
    ThresholdProtocol,
    calibration_split,
)
from bench.execution.config import default_threads, resolve_device
from bench.execution.provenance import device_name, environment, git_commit
from bench.execution.runner import (
    data_fields,
    describe_failure,
    evaluation_fields,
    job_context,
    record_head,
    write_side_files,
)
from bench.execution.speed_floor import floor_ms, peak_for
from bench.execution.speed_ladder import Ladder, check_variants, rungs_for
from bench.interface import ImageSet, InputSpec, Method
from bench.methods import registry
from bench.store.runs import RunStore, open_run_folder
from bench.util.errors import ConfigError
from bench.util.hashing import stable_hash
from bench.util.seeding import seed_everything
from bench.util.timing import PeakMemory, Stopwatch, measure_latency, timed

DEFAULT_RESULTS = Path("results/runs")
DEFAULT_BATCHES = "1,8,32,64,auto"
MIN_REPEATS = 3
AUTO_BATCH_CAP = 256

Batch = int | str  # a number of images, or "auto"
ProgressFn = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def parse_batches(text: str) -> list[Batch]:
    """``"1,8,32,auto"`` -> ``[1, 8, 32, "auto"]``; batch 1 is always measured (the latency)."""
    out: list[Batch] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "auto":
            out.append("auto")
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"--batches {text!r}: expected positive integers or auto, got {part}")
        out.append(value)
    if 1 not in out:
        out.insert(0, 1)
    return list(dict.fromkeys(out))


@dataclass
class SpeedConfig:
    """What ``bench speed`` was asked for."""

    methods: list[str]
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    preset: str = "auto"
    device: str = "auto"
    sets: dict[str, dict[str, str]] = field(default_factory=dict)
    variants: str = "none"
    repeats: int = 50
    warmup: int = 5
    batches: list[Batch] = field(default_factory=lambda: parse_batches(DEFAULT_BATCHES))
    budget_s: float = 20.0
    eval_images: int = 0  # 0 = the whole test set
    seed: int = 0
    threads: int = field(default_factory=default_threads)
    peak_tflops: float | None = None  # None: from the device name (bench.execution.speed_floor)
    data_root: Path | None = None
    threshold: str = DEFAULT_RULE
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION
    target_fpr: float = DEFAULT_TARGET_FPR

    def __post_init__(self) -> None:
        for flag, value, low in (
            ("--repeats", self.repeats, 1),
            ("--warmup", self.warmup, 0),
            ("--eval-images", self.eval_images, 0),
            ("--threads", self.threads, 1),
            ("--seed", self.seed, 0),
        ):
            if value < low:
                raise ConfigError(f"{flag} {value}: expected an integer >= {low}")
        if not self.budget_s > 0:
            raise ConfigError(f"--budget-s {self.budget_s}: expected a positive number of seconds")
        check_variants(self.variants)
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ConfigError(f"--peak-tflops {self.peak_tflops}: expected a positive number")

    @property
    def protocol(self) -> ThresholdProtocol:
        return ThresholdProtocol(self.threshold, self.calibration_fraction, self.target_fpr)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["data_root"] = None if self.data_root is None else str(self.data_root)
        return d

    @property
    def config_hash(self) -> str:
        return stable_hash(self.to_json())

    def default_run_id(self) -> str:
        label = "-".join(["speed", *self.methods[:3], *(d.split(":")[-1] for d in self.datasets)])
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60]
        return f"{label}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass
class SpeedOutcome:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def eval_subset(test: ImageSet, n: int, seed: int) -> ImageSet:
    """``n`` test images, each label in its share (at least one of each present), seeded."""
    if n <= 0 or n >= len(test):
        return test
    rng = np.random.default_rng(seed)
    labels = test.labels.numpy()
    keep: list[int] = []
    for label in np.unique(labels):
        pool = np.flatnonzero(labels == label)
        k = max(1, round(n * len(pool) / len(labels)))
        keep += rng.choice(pool, size=min(k, len(pool)), replace=False).tolist()
    return test.subset(sorted(keep))


def cycled(images: ImageSet, batch: int) -> ImageSet:
    """``batch`` images taken in order from ``images``, starting again at the first if needed."""
    return images.subset([i % len(images) for i in range(batch)])


def time_batch(
    predict: Callable[[ImageSet], object],
    images: ImageSet,
    device: torch.device,
    repeats: int,
    warmup: int,
    budget_s: float,
) -> dict[str, Any]:
    """Warm-up, a pilot call (peak memory), then the timed calls of one batch size."""
    batch = len(images)
    if batch > 1:
        warmup = min(warmup, 2)
    for _ in range(warmup):
        predict(images)
    with PeakMemory(device) as mem, timed(device) as pilot:
        predict(images)
    if batch > 1:
        fit_in_budget = math.ceil(budget_s / max(pilot.elapsed, 1e-9))
        repeats = max(MIN_REPEATS, min(repeats, fit_in_budget))
    stats = measure_latency(lambda: predict(images), device, repeats, warmup=0)
    return {
        "batch": batch,
        "repeats": len(stats.repeats),
        "median_ms": stats.median_ms,
        "p95_ms": stats.p95_ms,
        "mean_ms": stats.mean_ms,
        "ms_per_image": stats.median_ms / batch,
        "images_per_s": batch * 1000.0 / max(stats.median_ms, 1e-12),
        "peak_mem_mb": mem.peak_mb,
        "latency_ms": list(stats.repeats),
    }


@dataclass(frozen=True)
class SpeedJob:
    method: str
    variant: str
    params: dict[str, object]
    preset: str
    dataset: str
    seed: int
    device_type: str
    data_root: str | None
    threshold: ThresholdProtocol

    @property
    def job_id(self) -> str:
        return stable_hash(
            {
                "kind": "speed",
                "method": self.method,
                "variant": self.variant,
                "params": self.params,
                "dataset": self.dataset,
                "data_root": self.data_root,
                "seed": self.seed,
                "device_type": self.device_type,
                "threshold": self.threshold.identity(),
            },
            16,
        )

    @property
    def params_hash(self) -> str:
        return stable_hash({"method": self.method, "params": self.params})


# The splits loaded for the dataset being measured, by (dataset, split, input spec, seed): every
# variant of a method reads the same images, and decoding a real dataset takes seconds.
_LOADED: dict[tuple[str, str, InputSpec, int], ImageSet] = {}


def _load(dataset: Dataset, spec: str, split: str, input_spec: InputSpec, seed: int) -> ImageSet:
    key = (spec, split, input_spec, seed)
    if key not in _LOADED:
        _LOADED[key] = dataset.load(split, input_spec, seed)
    return _LOADED[key]


def _free(device: torch.device) -> None:
    """Drop what a finished job left: compiled graphs (dynamo's per-code cache would otherwise
    fill up across variants and fall back to eager), cached GPU blocks."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_job(
    job: SpeedJob,
    cfg: SpeedConfig,
    device: torch.device,
    store: RunStore,
    run_id: str,
    progress: ProgressFn,
) -> dict[str, Any]:
    """Fit, score and time one job; the record (status ``failed`` with the error if it broke)."""
    record: dict[str, Any] = {
        "kind": "speed",
        "variant": job.variant,
        **record_head(job, run_id, device, cfg),
    }
    detector = None
    try:
        seed_everything(job.seed, cfg.threads)
        dataset = make_dataset(job.dataset, cfg.data_root)
        params = registry.build_params(job.method, "paper", job.params)
        detector = registry.build_detector(job.method, params)
        ctx = job_context(job, device, store, _throttled(progress))
        progress("loading data")
        train = _load(dataset, job.dataset, "train", detector.input_spec, job.seed)
        test = _load(dataset, job.dataset, "test", detector.input_spec, job.seed)
        split = calibration_split(train.names, job.threshold.calibration_fraction, job.seed)
        calibration = train.subset(split.calibration_index) if split.n_calibration else None
        scored = eval_subset(test, cfg.eval_images, job.seed)
        record.update(data_fields(dataset, train, split, scored))
        progress("fitting")
        with PeakMemory(device) as fit_mem, timed(device) as fit_clock:
            detector.fit(train.subset(split.fit_index), ctx)
        progress("scoring the test images")
        with PeakMemory(device) as predict_mem, timed(device) as predict_clock:
            pred = detector.predict(scored)
        cal_pred = detector.predict(calibration) if calibration is not None else None
        rows: list[dict[str, Any]] = []
        seconds_per_image = 0.0  # of the last batch size measured
        for batch in cfg.batches:
            size = min(len(scored), AUTO_BATCH_CAP) if batch == "auto" else int(batch)
            per_call = size * seconds_per_image
            if per_call > cfg.budget_s / MIN_REPEATS:
                rows.append(
                    {
                        "label": str(batch),
                        "batch": size,
                        "skipped": f"about {per_call:.1f} s per call, over --budget-s "
                        f"{cfg.budget_s:g} / {MIN_REPEATS}",
                    }
                )
                continue
            progress(f"timing batch {batch}")
            row = time_batch(
                detector.predict,
                cycled(scored, size),
                device,
                cfg.repeats,
                cfg.warmup,
                cfg.budget_s,
            )
            rows.append({"label": str(batch), **row})
            seconds_per_image = row["ms_per_image"] / 1000.0
        record.update(
            _speed_fields(
                rows, detector, test, cfg, record["device_name"], fit_mem, predict_mem, fit_clock
            )
        )
        record["timing"]["predict_s"] = predict_clock.elapsed
        record.update(evaluation_fields(job, detector, scored, pred, split, cal_pred))
        if cfg.eval_images and len(scored) < len(test):
            record["flags"].append(f"eval:subset={len(scored)}/{len(test)}")
        write_side_files(store, job.job_id, scored, pred, calibration, cal_pred)
        record["status"] = "ok"
        record["error"] = record["error_kind"] = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed variant is a result too; the others go on
        record["status"] = "failed"
        record["error_kind"], record["error"] = describe_failure(exc)
        record["traceback"] = traceback.format_exc()
    finally:
        del detector
        _free(device)
    record["finished_at"] = _now()
    store.write_record(record)
    return record


def _speed_fields(
    rows: list[dict[str, Any]],
    detector: Method[Any],
    test: ImageSet,
    cfg: SpeedConfig,
    name: str,
    fit_mem: PeakMemory,
    predict_mem: PeakMemory,
    fit_clock: Stopwatch,
) -> dict[str, Any]:
    """The record's ``timing``, ``gflops_per_image`` and ``speed`` blocks from the batch rows."""
    measured = [r for r in rows if "skipped" not in r]
    one = next(r for r in measured if r["batch"] == 1)
    best = max(measured, key=lambda r: r["images_per_s"])
    gflops = detector.gflops_per_image(test.image_size)
    peak, source = (cfg.peak_tflops, "--peak-tflops") if cfg.peak_tflops else peak_for(name)
    floor = floor_ms(gflops, peak)
    peak_mem = max([fit_mem.peak_mb, predict_mem.peak_mb, *(r["peak_mem_mb"] for r in measured)])
    timing = {
        "fit_s": fit_clock.elapsed,
        "images_per_s": best["images_per_s"],
        "ms_per_image": one["median_ms"],
        "ms_per_image_p95": one["p95_ms"],
        "latency_batch": 1,
        "latency_repeats": one["repeats"],
        "latency_ms": one["latency_ms"],
        "images_per_s_batch1": one["images_per_s"],
        "best_batch": best["batch"],
        "ms_per_image_best": best["ms_per_image"],
        "peak_mem_mb": peak_mem,
        "peak_mem_kind": fit_mem.kind,
    }
    speed = {
        "batches": [{k: v for k, v in r.items() if k != "latency_ms"} for r in rows],
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "budget_s": cfg.budget_s,
        "peak_tflops": peak,
        "peak_source": source,
        "floor_ms": floor,
        # How far from the hardware: measured ms per image (best batch) over the FLOP floor.
        "ratio_to_floor": None if floor is None else best["ms_per_image"] / floor,
        "achieved_tflops": None if not gflops else gflops / best["ms_per_image"],
    }
    return {"timing": timing, "gflops_per_image": gflops, "speed": speed}


def run_speed(
    cfg: SpeedConfig,
    results_dir: Path = DEFAULT_RESULTS,
    run_id: str | None = None,
    name: str | None = None,
    on_job_start: Callable[[str, str, str], ProgressFn] | None = None,
    on_job_end: Callable[[dict[str, Any]], None] | None = None,
) -> SpeedOutcome:
    """Every (dataset, method, variant) job of ``cfg``, in order, into one run folder."""
    device = resolve_device(cfg.device)
    preset = registry.resolve_preset(cfg.preset, device.type)
    _ = cfg.protocol  # validates --threshold and friends before any work
    for method in cfg.sets:
        registry.get_method(method)
    for method in cfg.methods:  # a typo in --set fails here, not after an hour of fitting
        registry.build_params(method, preset, cfg.sets.get(method))
    for spec in cfg.datasets:
        make_dataset(spec, cfg.data_root)
    run_id = run_id or cfg.default_run_id()
    store = open_run_folder(Path(results_dir), run_id)  # a safe name, never a foreign folder
    torch.set_num_threads(cfg.threads)
    # A second `bench speed` into the same run folder adds to it (and reuses its trained U-Nets):
    # the jobs, configs and creation time of the earlier ones are kept.
    before = store.read_manifest() or {}
    config = {**cfg.to_json(), "sets": cfg.sets}
    manifest = {
        "run_id": run_id,
        "kind": "speed",
        "name": name or before.get("name"),
        "config": config,
        "earlier_configs": [*before.get("earlier_configs", []), before["config"]]
        if before.get("config")
        else [],
        "config_hash": cfg.config_hash,
        "preset": preset,
        "seeds": [cfg.seed],
        "device": str(device),
        "device_name": device_name(device),
        "git_commit": git_commit(Path.cwd()),
        "environment": environment(),
        "created_at": before.get("created_at", _now()),
        "resumed_at": _now() if before else None,
        "finished_at": None,
        "jobs": list(before.get("jobs", [])),
    }
    store.write_manifest(manifest)
    outcome = SpeedOutcome(store.run_dir)
    root = None if cfg.data_root is None else str(Path(cfg.data_root).resolve())
    try:
        for dataset in cfg.datasets:
            for method in cfg.methods:
                ladder = Ladder()
                for rung in rungs_for(method, cfg.variants, device.type):
                    changes = ladder.changes_for(rung)
                    overrides = {**cfg.sets.get(method, {}), **changes}
                    params = registry.build_params(method, preset, overrides)
                    job = SpeedJob(
                        method,
                        rung.name,
                        registry.params_dict(params),
                        preset,
                        dataset,
                        cfg.seed,
                        device.type,
                        None if dataset.startswith("synthetic") else root,
                        cfg.protocol,
                    )
                    progress = on_job_start(method, rung.name, dataset) if on_job_start else _silent
                    record = measure_job(job, cfg, device, store, run_id, progress)
                    ms = {
                        b["batch"]: b["ms_per_image"]
                        for b in (record.get("speed") or {}).get("batches", [])
                        if "skipped" not in b
                    }
                    if rung.name != "base":
                        record["ladder"] = ladder.record(rung, changes, ms)
                        store.write_record(record)
                    outcome.records.append(record)
                    if job.job_id not in manifest["jobs"]:
                        manifest["jobs"].append(job.job_id)
                    if on_job_end:
                        on_job_end(record)
            _LOADED.clear()
    finally:
        _LOADED.clear()
        manifest["finished_at"] = _now()
        store.write_manifest(manifest)
        store.export_csv()
    return outcome


def _silent(message: str) -> None:
    return None


def _throttled(progress: ProgressFn, step: float = 0.1) -> Callable[[str, float], None]:
    """A method's progress callback that passes on one message per ``step`` of progress."""
    last = [-1.0]

    def report(message: str, fraction: float) -> None:
        if fraction >= 1.0 or fraction - last[0] >= step:
            last[0] = fraction
            progress(message)

    return report
