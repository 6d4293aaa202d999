"""Expand a run into jobs, run each one, time it, and write one record per job.

Per job: seed everything -> load the dataset at the method's input spec -> fit -> predict
(timed: whole test set for throughput, then single-image latency repeats after warm-up) ->
metrics -> one atomic record. A finished job is skipped on the next run unless ``force``;
a job that raises is recorded as failed and the grid goes on (unless ``fail_fast``).
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench import __version__, registry
from bench.config import JobSpec, RunConfig, expand_jobs, resolve_device
from bench.datasets import make_dataset
from bench.interface import ImageSet, Prediction, RunContext
from bench.metrics import compute_metrics
from bench.provenance import device_name, environment, git_commit
from bench.seeding import seed_everything
from bench.store import RunStore
from bench.timing import PeakMemory, measure_latency, timed

DEFAULT_RESULTS = Path("results/runs")

ProgressFn = Callable[[str, float], None]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunOutcome:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


def job_flags(spec: JobSpec, detector: object) -> list[str]:
    """Marks that every table must show beside the numbers (never silently mixed)."""
    flags = [] if spec.preset == "paper" else [f"preset:{spec.preset}"]
    flags.extend(getattr(detector, "flags", []))
    return flags


def scores_frame(test: ImageSet, pred: Prediction) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "name": test.names,
            "defect_type": test.defect_types,
            "label": test.labels.tolist(),
            "score": pred.scores.double().tolist(),
        }
    )
    if pred.decisions is not None:
        frame["decision"] = pred.decisions.long().tolist()
    return frame


def run_job(
    spec: JobSpec,
    cfg: RunConfig,
    device: torch.device,
    store: RunStore,
    run_id: str,
    progress: ProgressFn,
) -> dict[str, Any]:
    """Run one job and write its record; never raises for a failure inside the job."""
    started = _now()
    record: dict[str, Any] = {
        "job_id": spec.job_id,
        "run_id": run_id,
        "method": spec.method,
        "params": spec.params,
        "params_hash": spec.params_hash,
        "preset": spec.preset,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "device": str(device),
        "device_name": device_name(device),
        "threads": cfg.threads,
        "config_hash": cfg.config_hash,
        "bench_version": __version__,
        "git_commit": git_commit(Path.cwd()),
        "started_at": started,
    }
    try:
        seed_everything(spec.seed, cfg.threads)
        dataset = make_dataset(spec.dataset, cfg.data_root)
        params = registry.build_params(spec.method, "paper", spec.params)
        detector = registry.build_detector(spec.method, params)
        ctx = RunContext(
            seed=spec.seed,
            device=device,
            work_dir=store.run_dir / "work" / spec.job_id,
            cache_dir=store.run_dir / "cache",
            progress=progress,
        )
        progress("loading data", 0.0)
        train = dataset.load("train", detector.input_spec, spec.seed)
        test = dataset.load("test", detector.input_spec, spec.seed)
        record.update(
            dataset_family=dataset.family,
            category=dataset.category,
            image_size=list(test.image_size),
            channels=test.channels,
            n_train=len(train),
            n_test=len(test),
            n_test_anomalous=int(test.labels.sum()),
        )

        with PeakMemory(device) as fit_mem, timed(device) as fit_clock:
            detector.fit(train, ctx)
        progress("predicting", 0.9)
        with PeakMemory(device) as predict_mem, timed(device) as predict_clock:
            pred = detector.predict(test)
        single = test.subset([0])
        latency = measure_latency(
            lambda: detector.predict(single), device, cfg.timing_repeats, cfg.timing_warmup
        )
        progress("scoring", 0.98)
        record["metrics"] = compute_metrics(test, pred)
        record["timing"] = {
            "fit_s": fit_clock.elapsed,
            "predict_s": predict_clock.elapsed,
            "images_per_s": len(test) / max(predict_clock.elapsed, 1e-12),
            "ms_per_image": latency.median_ms,
            "ms_per_image_p95": latency.p95_ms,
            "latency_batch": 1,
            "latency_repeats": len(latency.repeats),
            "peak_mem_mb": max(fit_mem.peak_mb, predict_mem.peak_mb),
            "peak_mem_kind": fit_mem.kind,
        }
        gflops = getattr(detector, "gflops_per_image", None)
        record["gflops_per_image"] = gflops(test.image_size) if callable(gflops) else None
        record["fit_info"] = getattr(detector, "fit_info_", {})
        # How inference is done and what it costs besides time (e.g. U-Net evaluations/image).
        record["inference"] = dict(getattr(detector, "inference_info", {}) or {})
        record["flags"] = job_flags(spec, detector)
        store.write_scores(spec.job_id, scores_frame(test, pred))
        record["status"] = "ok"
        record["error"] = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed job is a result too; the grid goes on
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    record["finished_at"] = _now()
    store.write_record(record)
    return record


def prepare(cfg: RunConfig) -> tuple[torch.device, list[JobSpec]]:
    """Validate everything that can be checked before any work starts."""
    device = resolve_device(cfg.device)
    for spec in cfg.datasets:
        make_dataset(spec, cfg.data_root)
    return device, expand_jobs(cfg, device)


def run(
    cfg: RunConfig,
    results_dir: Path = DEFAULT_RESULTS,
    run_id: str | None = None,
    force: bool = False,
    fail_fast: bool = False,
    on_job_start: Callable[[JobSpec, int, int], ProgressFn] | None = None,
    on_job_end: Callable[[dict[str, Any] | None], None] | None = None,
) -> RunOutcome:
    """Run (or resume) a grid; records land in ``results_dir/<run_id>/``."""
    device, jobs = prepare(cfg)
    run_id = run_id or cfg.default_run_id()
    store = RunStore(Path(results_dir) / run_id)
    previous = store.read_manifest() or {}
    manifest = {
        "run_id": run_id,
        "config": cfg.to_json(),
        "config_hash": cfg.config_hash,
        "preset": registry.resolve_preset(cfg.preset, device.type),
        "seeds": cfg.seeds,
        "device": str(device),
        "device_name": device_name(device),
        "git_commit": git_commit(Path.cwd()),
        "environment": environment(),
        "jobs": [spec.job_id for spec in jobs],
        "created_at": previous.get("created_at", _now()),
        "resumed_at": _now() if previous else None,
        "finished_at": None,
    }
    store.write_manifest(manifest)
    outcome = RunOutcome(run_dir=store.run_dir)
    try:
        for i, spec in enumerate(jobs):
            if not force and store.is_done(spec.job_id):
                outcome.skipped += 1
                outcome.records.append(store.read_record(spec.job_id) or {})
                if on_job_end:
                    on_job_end(None)
                continue
            progress = on_job_start(spec, i, len(jobs)) if on_job_start else _silent
            record = run_job(spec, cfg, device, store, run_id, progress)
            outcome.records.append(record)
            if on_job_end:
                on_job_end(record)
            if fail_fast and record["status"] != "ok":
                break
    finally:
        # Also on Ctrl-C: what finished is already on disk; keep the derived files in step.
        store.export_csv()
        manifest["finished_at"] = _now()
        store.write_manifest(manifest)
    return outcome


def _silent(message: str, fraction: float) -> None:
    return None
