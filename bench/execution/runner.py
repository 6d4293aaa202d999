"""Expand a run into jobs, run each one, time it, and write one record per job.

Per job: seed everything -> load the dataset at the method's input spec -> hold out the
calibration normals (:mod:`bench.evaluation.protocol`) -> fit on the rest -> predict (timed: whole
test set for throughput, then single-image latency repeats after warm-up; the calibration images are
predicted untimed) -> metrics under the threshold protocol, with bootstrap intervals -> one
atomic record. A finished job is skipped on the next run unless ``force``;
a job that raises is recorded as failed and the grid goes on (unless ``fail_fast``). Each job is
claimed (a per-job lock) while it runs, so two processes sharing a run folder split the grid
instead of computing a job twice; a job claimed by the other process is waited for at the end.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import traceback
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd
import torch

from bench import __version__
from bench.datasets import make_dataset
from bench.datasets.base import Dataset
from bench.evaluation.examples import example_maps
from bench.evaluation.protocol import (
    CalibrationSplit,
    ThresholdProtocol,
    calibration_split,
    evaluate,
)
from bench.execution.config import JobSpec, RunConfig, expand_jobs, resolve_device
from bench.execution.provenance import device_name, environment, git_commit, process_info
from bench.interface import ImageSet, Method, Prediction, RunContext
from bench.methods import registry
from bench.store.runs import RunStore, _atomic_write_text, open_run_folder
from bench.util.errors import BenchError
from bench.util.seeding import seed_everything
from bench.util.timing import PeakMemory, measure_latency, timed

if TYPE_CHECKING:
    from bench.execution.launchers import Launcher

DEFAULT_RESULTS = Path("results/runs")

ProgressFn = Callable[[str, float], None]


def _now() -> str:
    # Milliseconds: two runs started within one second must still sort in order (history).
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RunOutcome:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    # Jobs handed to a batch system and not waited for (bench run --launcher slurm --no-wait).
    submitted: int = 0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]


class JobLike(Protocol):
    """What a job record is built from: a :class:`~bench.execution.config.JobSpec`, or a job of
    ``bench speed`` (:class:`bench.execution.speed.SpeedJob`)."""

    @property
    def job_id(self) -> str: ...
    @property
    def params_hash(self) -> str: ...

    method: str
    params: dict[str, object]
    preset: str
    dataset: str
    seed: int
    threshold: ThresholdProtocol


def job_flags(spec: JobLike, detector: Method[Any]) -> list[str]:
    """Marks that every table must show beside the numbers (never silently mixed)."""
    flags = [] if spec.preset == "paper" else [f"preset:{spec.preset}"]
    if spec.threshold.name == "paper":  # own rule, no hold-out: comparable with the paper
        flags.append("protocol:paper")
    elif spec.threshold.rule != "calibrated":  # e.g. "threshold:oracle", labelled wherever shown
        flags.append(f"threshold:{spec.threshold.rule}")
    flags.extend(detector.flags)
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


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """``(kind, message)`` of a failed job: kind ``"input"`` for what the user can fix (bad data
    found while loading, pretrained weights missing offline; the CLI exits with 2) and
    ``"crash"`` for everything else (exit 1)."""
    if isinstance(exc, BenchError):
        return "input", f"{type(exc).__name__}: {exc}"
    seen: BaseException | None = exc
    while seen is not None:  # adapters often wrap the download error
        names = {c.__name__ for c in type(seen).__mro__}
        if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or isinstance(
            seen, urllib.error.URLError
        ):
            reason = " ".join(str(seen).split())[:200]
            return "input", (
                "WeightsUnavailable: pretrained weights are not in the local cache and cannot "
                f"be downloaded ({reason}); expected them under HF_HOME / TORCH_HOME: fetch "
                "them once on a machine with internet, or choose a method without pretrained "
                "weights"
            )
        seen = seen.__cause__ or seen.__context__
    return "crash", f"{type(exc).__name__}: {exc}"


def record_head(spec: JobLike, run_id: str, device: torch.device, cfg: Any) -> dict[str, Any]:
    """The fields every job record starts with: what ran, on what, with which code and when.
    ``cfg`` is the run's configuration (its ``threads`` and ``config_hash`` are recorded)."""
    return {
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
        "started_at": _now(),
        "threshold_rule": spec.threshold.rule,
        # suite | paper (own rule, no hold-out): which protocol made the numbers
        # (bench.evaluation.protocol)
        "protocol": spec.threshold.name,
    }


def job_context(
    spec: JobLike, device: torch.device, store: RunStore, progress: ProgressFn
) -> RunContext:
    """The method's view of its job: seed, device, scratch folder, the run's shared cache."""
    return RunContext(
        seed=spec.seed,
        device=device,
        work_dir=store.run_dir / "work" / spec.job_id,
        cache_dir=store.run_dir / "cache",
        progress=progress,
    )


def data_fields(
    dataset: Dataset, train: ImageSet, split: CalibrationSplit, test: ImageSet
) -> dict[str, Any]:
    """What the job saw: the dataset, the fit / calibration split, the evaluated images."""
    return {
        "dataset_family": dataset.family,
        "category": dataset.category,
        "image_size": list(test.image_size),
        "channels": test.channels,
        "n_train": len(train),
        "n_fit": len(split.fit_index),
        "n_calibration": split.n_calibration,
        "n_test": len(test),
        "n_test_anomalous": int(test.labels.sum()),
    }


def evaluation_fields(
    spec: JobLike,
    detector: Method[Any],
    test: ImageSet,
    pred: Prediction,
    split: CalibrationSplit,
    cal_pred: Prediction | None,
) -> dict[str, Any]:
    """Metrics under the threshold protocol and what the detector says of itself (fit info,
    inference, flags): the record fields that do not depend on how the job was timed."""
    protocol = spec.threshold
    cal_scores = None if cal_pred is None else cal_pred.scores
    if cal_scores is not None and tuple(cal_scores.shape) != (split.n_calibration,):
        raise ValueError(
            f"prediction scores of the {split.n_calibration} calibration images must be "
            f"({split.n_calibration},), got {tuple(cal_scores.shape)}"
        )
    result = evaluate(test, pred, cal_scores, protocol, spec.seed)
    flags = job_flags(spec, detector)
    if split.n_calibration < split.wanted:  # too few training images for the full hold-out
        flags.append(f"calibration:n={split.n_calibration}")
    undefined = undefined_metrics(result.metrics, test)
    if undefined:  # null in the record, "--" in every table, and said so (bench run warns)
        flags.append(UNDEFINED_FLAG)
    return {
        "metrics": result.metrics,
        "undefined_metrics": undefined,
        "metrics_ci": result.metrics_ci,
        "per_defect": result.per_defect,
        "threshold": result.thresholds[protocol.rule],
        "thresholds": result.thresholds,
        "calibration": {
            "fraction": protocol.calibration_fraction,
            "target_fpr": protocol.target_fpr,
            "quantile_method": "numpy inverted_cdf; anomalous if score > threshold",
            "n": split.n_calibration,
            "names_sha256": split.names_sha256,
            **result.calibration,
        },
        "fit_info": detector.fit_info_,
        # How inference is done and what it costs besides time (e.g. U-Net evaluations/image).
        "inference": dict(detector.inference_info),
        "flags": flags,
    }


#: Flag of a record with headline metrics that are undefined on its test set (null, not 0).
UNDEFINED_FLAG = "metrics:undefined"
#: The metrics every table shows; an undefined one among them is named in the record.
HEADLINE_METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "ap", "f1_max")


def undefined_metrics(metrics: dict[str, float], test: ImageSet) -> dict[str, str]:
    """Headline metric -> why it is undefined (NaN, stored as null) on this test set."""
    n_anomalous = int(test.labels.sum())
    if n_anomalous == 0:
        why = "no anomalous test image"
    elif n_anomalous == len(test):
        why = "no normal test image"
    else:
        why = "undefined on this test set"
    return {
        name: why
        for name in HEADLINE_METRICS
        if name in metrics and (metrics[name] is None or not math.isfinite(metrics[name]))
    }


def undefined_warning(record: dict[str, Any]) -> str | None:
    """One line about a record's undefined metrics (None when it has none)."""
    undefined = record.get("undefined_metrics") or {}
    if not undefined:
        return None
    reasons = sorted(set(undefined.values()))
    return (
        f"{record.get('method')} on {record.get('dataset')} seed {record.get('seed')}: "
        f"{', '.join(undefined)} undefined ({'; '.join(reasons)}): stored as null, shown as --"
    )


def write_side_files(
    store: RunStore,
    job_id: str,
    test: ImageSet,
    pred: Prediction,
    calibration: ImageSet | None,
    cal_pred: Prediction | None,
) -> None:
    """The job's per-image scores (test and calibration) and its example maps."""
    store.write_scores(job_id, scores_frame(test, pred))
    if calibration is not None and cal_pred is not None:
        _atomic_write_text(
            store.jobs_dir / f"{job_id}.calibration.csv",
            scores_frame(calibration, cal_pred).to_csv(index=False),
        )
    store.write_maps(job_id, example_maps(test, pred))


def run_job(
    spec: JobSpec,
    cfg: RunConfig,
    device: torch.device,
    store: RunStore,
    run_id: str,
    progress: ProgressFn,
    launcher: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one job and write its record; never raises for a failure inside the job.
    ``launcher`` says what ran it (``{"name": "ray", "node": ...}``; default in-process local)."""
    record: dict[str, Any] = {
        **record_head(spec, run_id, device, cfg),
        # Where it ran: in this process unless a launcher says otherwise (README: provenance).
        "launcher": launcher or {"name": "local", **process_info()},
        **spec.record_extra,
    }
    try:
        seed_everything(spec.seed, cfg.threads)
        dataset = make_dataset(spec.dataset, cfg.data_root)
        params = registry.build_params(spec.method, "paper", spec.params)
        detector = registry.build_detector(spec.method, params)
        ctx = job_context(spec, device, store, progress)
        progress("loading data", 0.0)
        train = dataset.load("train", detector.input_spec, spec.seed)
        test = dataset.load("test", detector.input_spec, spec.seed)
        # The threshold protocol's hold-out: the same normal images for every method of a seed,
        # kept out of fit; their scores set the calibrated threshold (bench.evaluation.protocol).
        protocol = spec.threshold
        split = calibration_split(train.names, protocol.calibration_fraction, spec.seed)
        calibration = train.subset(split.calibration_index) if split.n_calibration else None
        record.update(data_fields(dataset, train, split, test))

        with PeakMemory(device) as fit_mem, timed(device) as fit_clock:
            detector.fit(train.subset(split.fit_index), ctx)
        progress("predicting", 0.9)
        with PeakMemory(device) as predict_mem, timed(device) as predict_clock:
            pred = detector.predict(test)
        # Part of the protocol, not of inference: untimed, and before the latency repeats so
        # that it never depends on how many there were.
        cal_pred = detector.predict(calibration) if calibration is not None else None
        single = test.subset([0])
        latency = measure_latency(
            lambda: detector.predict(single), device, cfg.timing_repeats, cfg.timing_warmup
        )
        progress("scoring", 0.98)
        record.update(evaluation_fields(spec, detector, test, pred, split, cal_pred))
        record["timing"] = {
            "fit_s": fit_clock.elapsed,
            "predict_s": predict_clock.elapsed,
            "images_per_s": len(test) / max(predict_clock.elapsed, 1e-12),
            "ms_per_image": latency.median_ms,
            "ms_per_image_p95": latency.p95_ms,
            "latency_batch": 1,
            "latency_repeats": len(latency.repeats),
            "latency_ms": list(latency.repeats),  # every timed call: error bars in reports
            "peak_mem_mb": max(fit_mem.peak_mb, predict_mem.peak_mb),
            "peak_mem_kind": fit_mem.kind,
        }
        record["gflops_per_image"] = detector.gflops_per_image(test.image_size)
        write_side_files(store, spec.job_id, test, pred, calibration, cal_pred)
        record["status"] = "ok"
        record["error"] = record["error_kind"] = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed job is a result too; the grid goes on
        record["status"] = "failed"
        record["error_kind"], record["error"] = describe_failure(exc)
        record["traceback"] = traceback.format_exc()
    record["finished_at"] = _now()
    store.write_record(record)
    return record


def prepare(
    cfg: RunConfig, device: torch.device | None = None
) -> tuple[torch.device, list[JobSpec]]:
    """Validate everything that can be checked before any work starts. ``device``: the one
    the jobs will run on when that is not this machine's (a launcher's GPU nodes)."""
    device = resolve_device(cfg.device) if device is None else device
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
    job_list: list[JobSpec] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    name: str | None = None,
    launcher: Launcher | None = None,
) -> RunOutcome:
    """Run (or resume) a grid; records land in ``results_dir/<run_id>/``.

    ``name`` labels the run in its manifest (``bench history``, ``bench compare NAME``); without
    ``run_id`` the folder is then ``<name>-<config hash>``, so that two named runs of one config
    (before and after a change) do not resume each other.

    ``job_list`` replaces the jobs expanded from ``cfg`` (``bench ablate`` builds its own grid);
    ``manifest_extra`` adds keys to the manifest (e.g. ``"ablation"``: the grid).

    ``launcher`` (:mod:`bench.execution.launchers`: worker processes, Ray, SLURM) runs the jobs
    that are not done yet elsewhere, each through
    :func:`bench.execution.launchers.common.execute_job`;
    without it they run here, one after the other.
    """
    device, jobs = prepare(cfg, launcher.target_device(cfg) if launcher is not None else None)
    if job_list is not None:
        jobs = job_list
    if launcher is None or launcher.name == "local":
        # Knowable now, not after each job has loaded its data (remote nodes have their own
        # caches: there `bench prepare` is the check).
        from bench.execution.prepare import require_weights

        require_weights(jobs)
    if run_id is None and name:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".-_")[:60] or "run"
        run_id = f"{label}-{cfg.config_hash[:8]}"
    run_id = run_id or cfg.default_run_id()
    store = open_run_folder(Path(results_dir), run_id)  # a safe name, never a foreign folder
    started = _now()
    # The manifest records the thread count the jobs run with (seed_everything sets it per job).
    torch.set_num_threads(cfg.threads)
    fresh = {
        "run_id": run_id,
        "config": cfg.to_json(),
        "config_hash": cfg.config_hash,
        "preset": registry.resolve_preset(cfg.preset, device.type),
        "seeds": cfg.seeds,
        "device": str(device),
        "device_name": device_name(device),
        "git_commit": git_commit(Path.cwd()),
        "environment": environment(),
        "finished_at": None,
        "launcher": launcher.describe() if launcher is not None else {"name": "local"},
        **(manifest_extra or {}),
    }

    def merge(previous: dict[str, Any] | None) -> dict[str, Any]:
        # Another process may share this folder: keep its jobs and the first creation time.
        # Without a usable manifest (none yet, or a damaged one set aside), the job list is
        # rebuilt from the records on disk and this run's configuration.
        old = previous or {}
        on_disk = [] if previous else [r["job_id"] for r in store.records()]
        ids = [*old.get("jobs", []), *on_disk, *(spec.job_id for spec in jobs)]
        return {
            **fresh,
            "jobs": list(dict.fromkeys(ids)),
            "created_at": old.get("created_at", started),
            "resumed_at": started if previous else None,
            "name": name or old.get("name"),
            # What `bench status` shows for jobs that have no record yet.
            "job_labels": {**old.get("job_labels", {}), **{s.job_id: s.label() for s in jobs}},
        }

    store.update_manifest(merge)
    outcome = RunOutcome(run_dir=store.run_dir)

    def stamp(job_id: str) -> int | None:
        path = store.record_path(job_id)
        return path.stat().st_mtime_ns if path.exists() else None

    # With --force only a record rewritten since this run started counts as done (by a
    # concurrent process that claimed the job first).
    stamps_at_start = {spec.job_id: stamp(spec.job_id) for spec in jobs} if force else {}

    def finished(job_id: str) -> dict[str, Any] | None:
        rec = store.read_record(job_id)
        if rec is None or rec.get("status") != "ok":
            return None
        return rec if not force or stamp(job_id) != stamps_at_start[job_id] else None

    def attempt(index: int, spec: JobSpec, wait: bool) -> bool:
        """Run or skip one job; False when another live process holds it (try it later)."""
        rec = finished(spec.job_id)
        if rec is None:
            with store.claim(spec.job_id, wait=wait) as mine:
                if not mine:
                    return False
                rec = finished(spec.job_id)  # it may have finished while we were not looking
                if rec is None:
                    progress = on_job_start(spec, index, len(jobs)) if on_job_start else _silent
                    record = run_job(spec, cfg, device, store, run_id, progress)
                    outcome.records.append(record)
                    if on_job_end:
                        on_job_end(record)
                    return True
        outcome.skipped += 1
        outcome.records.append(rec)
        if on_job_end:
            on_job_end(None)
        return True

    interrupted = False
    try:
        if launcher is not None:
            _launch(launcher, jobs, cfg, device, store, run_id, finished, stamps_at_start,
                    outcome, on_job_end, fail_fast)  # fmt: skip
            return outcome
        held_elsewhere: list[tuple[int, JobSpec]] = []
        for i, spec in enumerate(jobs):
            if not attempt(i, spec, wait=False):
                held_elsewhere.append((i, spec))
            elif fail_fast and outcome.failed:
                break
        else:
            # Wait for jobs another process was running; if it died or failed, run them here.
            for i, spec in held_elsewhere:
                attempt(i, spec, wait=True)
                if fail_fast and outcome.failed:
                    break
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (bench.cli turns it into this)
        interrupted = True
        raise
    finally:
        # Also on Ctrl-C: what finished is already on disk; keep the derived files in step.
        store.export_csv()
        # A run stopped by a signal did not finish (`bench status` says "interrupted"); jobs
        # submitted and not waited for are not finished either: `bench status` follows them.
        end = None if outcome.submitted or interrupted else _now()
        stopped = _now() if interrupted else None
        store.update_manifest(
            lambda m: {**(m or fresh), "finished_at": end, "interrupted_at": stopped}
        )
    return outcome


def _launch(
    launcher: Launcher,
    jobs: list[JobSpec],
    cfg: RunConfig,
    device: torch.device,
    store: RunStore,
    run_id: str,
    finished: Callable[[str], dict[str, Any] | None],
    stamps_at_start: dict[str, int | None],
    outcome: RunOutcome,
    on_job_end: Callable[[dict[str, Any] | None], None] | None,
    fail_fast: bool,
) -> None:
    """Hand the jobs that are not done to ``launcher``; collect its records in job order."""
    from bench.execution.launchers.common import JobResult, make_tasks

    todo: list[JobSpec] = []
    for spec in jobs:
        rec = finished(spec.job_id)
        if rec is None:
            todo.append(spec)
            continue
        outcome.skipped += 1
        outcome.records.append(rec)
        if on_job_end:
            on_job_end(None)

    def report(result: JobResult) -> None:
        outcome.records.append(result.record)
        outcome.skipped += 0 if result.ran else 1
        if on_job_end:
            on_job_end(result.record if result.ran else None)

    tasks = make_tasks(todo, cfg, device, store.run_dir, run_id, stamps_at_start)
    outcome.submitted = launcher.launch(tasks, store, report, fail_fast) if tasks else 0
    order = {spec.job_id: i for i, spec in enumerate(jobs)}
    outcome.records.sort(key=lambda r: order.get(r.get("job_id", ""), len(order)))


def _silent(message: str, fraction: float) -> None:
    return None
