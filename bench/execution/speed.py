"""``bench speed``: time every method on one device, through the runner's job pipeline.

A ``bench speed`` job is a job of the runner (:class:`bench.execution.runner.JobLoop` and the
one-job pipeline :func:`bench.execution.job.run_job`: seed, load at the method's input spec,
hold out the calibration normals as ``bench run`` does, fit (timed, peak memory), predict the
evaluation images once (quality under the threshold protocol), one record; claims and the
launchers apply as for ``bench run``) with its own timing phase, :class:`SweepTiming`, in place
of the single-image latency. ``eval_images`` > 0 scores a seeded, label-stratified subset of the
test set to bound the time of slow variants. Then, for each batch size, ``warmup`` untimed calls
of ``predict`` on that many test images (cycled when the test set is smaller), one pilot call
(peak memory is read there, so that no sampling thread runs while the clock does), then timed
calls, each synchronised (:func:`bench.util.timing.measure_latency`): ``repeats`` of them at
batch 1 (the latency: median and p95), and at larger batches as many as fit in ``budget_s``
seconds (at least :data:`MIN_REPEATS`, at most ``repeats``; at most 2 warm-up calls, which is
enough for new shapes). ``auto`` is the whole evaluation set in one call (at most
:data:`AUTO_BATCH_CAP` images): the method's own batching. A batch size whose calls would
take longer than ``budget_s / MIN_REPEATS`` each (estimated from the batch before it) is
skipped and marked so in the record: patch-mode RADAR in fp32 would otherwise spend minutes
per variant on batches that cannot be faster per image than the ones measured.

Jobs run in order, one at a time, per (dataset, method, variant): a ladder rung
(:mod:`bench.execution.speed_ladder`) builds on the fastest rung measured before it, and jobs
timed side by side would disturb each other. Every job is measured again on every call
(``force``): its identity, shared with resuming, leaves out the timing settings.

Each job writes one record (``kind: "speed"``) with the runner's fields (``timing``,
``metrics``, ``gflops_per_image``, ``fit_info``, ``inference``, ``flags``, ...) so ``bench report``
reads it like any other, plus a ``speed`` block: every batch size's numbers, the best images/s,
and the FLOP floor (:mod:`bench.execution.speed_floor`). In the ``timing`` block ``ms_per_image``
and ``ms_per_image_p95`` are batch 1, ``images_per_s`` the best batch. RADAR's variants share one
trained U-Net through the run's cache (:data:`bench.methods.radar.detector.TRAINING_FIELDS`), so a
ladder trains once. The run's manifest (``kind: "speed"``) keeps the configurations of earlier
``bench speed`` calls into the same folder.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from bench.datasets import make_dataset
from bench.datasets.base import Dataset
from bench.evaluation.protocol import ThresholdProtocol
from bench.execution.config import JobsConfig, resolve_device
from bench.execution.job import FitPredict, JobLike, ProgressFn, Timing, now, silent
from bench.execution.runner import DEFAULT_RESULTS, JobLoop, RunOutcome, manifest_head
from bench.execution.speed_floor import floor_ms, peak_for
from bench.execution.speed_ladder import Ladder, check_variants, rungs_for
from bench.interface import ImageSet, InputSpec, Method
from bench.methods import registry
from bench.store.runs import open_run_folder
from bench.util.errors import ConfigError
from bench.util.hashing import stable_hash
from bench.util.timing import PeakMemory, Stopwatch, measure_latency, timed

if TYPE_CHECKING:
    from bench.execution.launchers import Launcher

__all__ = [
    "DEFAULT_RESULTS",
    "SpeedConfig",
    "SpeedJob",
    "SweepTiming",
    "cycled",
    "eval_subset",
    "parse_batches",
    "run_speed",
    "speed_job",
    "time_batch",
]

DEFAULT_BATCHES = "1,8,32,64,auto"
MIN_REPEATS = 3
AUTO_BATCH_CAP = 256

Batch = int | str  # a number of images, or "auto"
#: What ``bench speed`` shows of a job's progress: its messages.
MessageFn = Callable[[str], None]


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
class SpeedConfig(JobsConfig):
    """What ``bench speed`` was asked for: the fields of every run, and how to time."""

    variants: str = "none"
    repeats: int = 50
    warmup: int = 5
    batches: list[Batch] = field(default_factory=lambda: parse_batches(DEFAULT_BATCHES))
    budget_s: float = 20.0
    eval_images: int = 0  # 0 = the whole test set
    seed: int = 0
    peak_tflops: float | None = None  # None: from the device name (bench.execution.speed_floor)

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
    def seeds(self) -> list[int]:
        return [self.seed]

    @property
    def config_hash(self) -> str:
        return stable_hash(self.to_json())

    def default_run_id(self) -> str:
        label = "-".join(["speed", *self.methods[:3], *(d.split(":")[-1] for d in self.datasets)])
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60]
        return f"{label}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


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

    @property
    def record_extra(self) -> dict[str, object]:
        return {"kind": "speed", "variant": self.variant}

    def label(self) -> str:
        return f"{self.method} [{self.variant}] · {self.dataset}"


def speed_job(
    cfg: SpeedConfig,
    method: str,
    variant: str,
    changes: dict[str, Any],
    preset: str,
    dataset: str,
    device_type: str,
) -> SpeedJob:
    """The job of one (method, variant, dataset): the preset, ``--set``, then the variant's
    changes on top (a ladder rung's, which depend on the rungs measured before it)."""
    params = registry.build_params(method, preset, {**cfg.sets.get(method, {}), **changes})
    return SpeedJob(
        method,
        variant,
        registry.params_dict(params),
        preset,
        dataset,
        cfg.seed,
        device_type,
        cfg.job_data_root(dataset),
        cfg.protocol,
    )


# The splits loaded for the dataset being measured, by (dataset, split, input spec, seed): every
# variant of a method reads the same images, and decoding a real dataset takes seconds. Only one
# dataset's splits are kept: jobs come dataset by dataset.
_LOADED: dict[tuple[str, str, InputSpec, int], ImageSet] = {}


def _load(dataset: Dataset, spec: str, split: str, input_spec: InputSpec, seed: int) -> ImageSet:
    key = (spec, split, input_spec, seed)
    if any(other[0] != spec for other in _LOADED):
        _LOADED.clear()
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


@dataclass(frozen=True)
class SweepTiming(Timing):
    """``bench speed``'s timing phase: latency repeats and the batch sweep (module docstring)."""

    cfg: SpeedConfig

    notes: ClassVar[dict[str, tuple[str, float]]] = {
        "load": ("loading data", 0.0),
        "fit": ("fitting", 0.0),
        "predict": ("scoring the test images", 0.9),
    }
    records_local_launcher: ClassVar[bool] = False

    def load(self, dataset: Dataset, spec: JobLike, split: str, input_spec: InputSpec) -> ImageSet:
        return _load(dataset, spec.dataset, split, input_spec, spec.seed)

    def evaluated(self, test: ImageSet, seed: int) -> ImageSet:
        return eval_subset(test, self.cfg.eval_images, seed)

    def method_progress(self, progress: ProgressFn) -> ProgressFn:
        return _throttled(progress)

    def measure(
        self, detector: Any, test: ImageSet, device: torch.device, progress: ProgressFn
    ) -> list[dict[str, Any]]:
        cfg, scored = self.cfg, test
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
            progress(f"timing batch {batch}", 0.95)
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
        return rows

    def fields(
        self,
        measured: list[dict[str, Any]],
        detector: Any,
        test: ImageSet,
        costs: FitPredict,
        device_name: str,
    ) -> dict[str, Any]:
        out = _speed_fields(
            measured, detector, test, self.cfg, device_name, costs.fit_mem, costs.predict_mem,
            costs.fit_clock,
        )  # fmt: skip
        out["timing"]["predict_s"] = costs.predict_clock.elapsed
        return out

    def release(self, device: torch.device) -> None:
        _free(device)


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
    on_job_start: Callable[[str, str, str], MessageFn] | None = None,
    on_job_end: Callable[[dict[str, Any]], None] | None = None,
    force: bool = True,
    launcher: Launcher | None = None,
) -> RunOutcome:
    """Every (dataset, method, variant) job of ``cfg``, in order, into one run folder.

    ``force`` (``bench speed``): measure every job again, even one with a finished record in
    the folder (a job's identity leaves out the timing settings, so that record may hold other
    measurements); ``False`` resumes instead, skipping finished jobs. ``launcher``
    (:mod:`bench.execution.launchers`) runs each job elsewhere, still one at a time.
    """
    target = launcher.target_device(cfg) if launcher is not None else None
    device = resolve_device(cfg.device) if target is None else target
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
    manifest = {
        **manifest_head(cfg, run_id, device, cfg.seeds),
        "kind": "speed",
        "name": name or before.get("name"),
        "earlier_configs": [*before.get("earlier_configs", []), before["config"]]
        if before.get("config")
        else [],
        "created_at": before.get("created_at", now()),
        "resumed_at": now() if before else None,
        "finished_at": None,
        "jobs": list(before.get("jobs", [])),
        **({"launcher": launcher.describe()} if launcher is not None else {}),
    }
    store.write_manifest(manifest)

    def start(job: SpeedJob, index: int, total: int) -> ProgressFn:
        if on_job_start is None:
            return silent
        show = on_job_start(job.method, job.variant, job.dataset)
        return lambda message, fraction: show(message)

    loop = JobLoop(store, cfg, device, run_id, SweepTiming(cfg), force, start)
    try:
        for dataset in cfg.datasets:
            for method in cfg.methods:
                ladder = Ladder()
                for rung in rungs_for(method, cfg.variants, device.type):
                    changes = ladder.changes_for(rung)
                    job = speed_job(cfg, method, rung.name, changes, preset, dataset, device.type)
                    seen = len(loop.outcome.records)
                    loop.run([job], launcher)
                    if len(loop.outcome.records) == seen:  # submitted, not waited for
                        continue
                    record = loop.outcome.records[-1]
                    ms = {
                        b["batch"]: b["ms_per_image"]
                        for b in (record.get("speed") or {}).get("batches", [])
                        if "skipped" not in b
                    }
                    if rung.name != "base":
                        record["ladder"] = ladder.record(rung, changes, ms)
                        store.write_record(record)
                    if job.job_id not in manifest["jobs"]:
                        manifest["jobs"].append(job.job_id)
                    if on_job_end:
                        on_job_end(record)
    finally:
        _LOADED.clear()
        manifest["finished_at"] = now()
        store.write_manifest(manifest)
        store.export_csv()
    return loop.outcome


def _throttled(progress: ProgressFn, step: float = 0.1) -> ProgressFn:
    """A method's progress callback that passes on one message per ``step`` of progress."""
    last = [-1.0]

    def report(message: str, fraction: float) -> None:
        if fraction >= 1.0 or fraction - last[0] >= step:
            last[0] = fraction
            progress(message, fraction)

    return report
