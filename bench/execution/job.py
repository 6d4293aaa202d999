"""One job, start to finish: what every job of ``bench run``, ``bench ablate`` and ``bench speed``
does, wherever it runs, and the record it writes.

Per job: seed everything -> load the dataset at the method's input spec -> hold out the
calibration normals (:mod:`bench.evaluation.protocol`) -> fit on the rest (timed, peak memory)
-> predict the evaluated test images (timed) -> predict the calibration images (part of the
protocol, not of inference: untimed, and before the timing phase so that they never depend on
it) -> the timing phase -> metrics under the threshold protocol, with bootstrap intervals ->
per-image scores and example maps -> one atomic record. A job that raises is recorded as
failed (``error_kind``, ``error``, ``traceback``): :func:`run_job` never raises for a failure
inside the job, so a grid goes on.

The timing phase is what differs between the commands (a :class:`Timing`): ``bench run``
times single-image latency (:class:`LatencyTiming`); ``bench speed`` sweeps batch sizes
(:class:`bench.execution.speed.SweepTiming`). The in-process runner
(:mod:`bench.execution.runner`) and every launcher's worker
(:func:`bench.execution.launchers.common.execute_job`) call :func:`run_job`, so a record is the
same whichever of them computed it.
"""

from __future__ import annotations

import datetime as dt
import math
import traceback
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pandas as pd
import torch

from bench.datasets import make_dataset
from bench.datasets.base import Dataset
from bench.evaluation.examples import example_maps
from bench.evaluation.protocol import (
    CalibrationSplit,
    ThresholdProtocol,
    calibration_split,
    evaluate,
)
from bench.execution.config import JobsConfig, RunConfig
from bench.execution.provenance import device_name, git_commit, process_info
from bench.interface import ImageSet, InputSpec, Method, Prediction, RunContext
from bench.methods import registry
from bench.store.runs import RunStore, _atomic_write_text
from bench.util.errors import BenchError
from bench.util.flags import Flag
from bench.util.seeding import seed_everything
from bench.util.timing import PeakMemory, Stopwatch, measure_latency, timed
from bench.util.version import __version__

#: A job's progress callback: a message and the fraction of the job done.
ProgressFn = Callable[[str, float], None]


def now() -> str:
    """UTC now, to the millisecond: two runs started within one second must still sort in
    order (``bench history``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def silent(message: str, fraction: float) -> None:
    """The progress callback of a job nobody watches."""
    return None


class JobLike(Protocol):
    """What a job record is built from: a :class:`~bench.execution.config.JobSpec`, or a job of
    ``bench speed`` (:class:`bench.execution.speed.SpeedJob`)."""

    @property
    def job_id(self) -> str: ...
    @property
    def params_hash(self) -> str: ...
    @property
    def record_extra(self) -> dict[str, object]:
        """Keys copied into the job's record that are not part of its identity."""
        ...

    def label(self) -> str: ...

    method: str
    params: dict[str, object]
    preset: str
    dataset: str
    seed: int
    threshold: ThresholdProtocol


def job_flags(spec: JobLike, detector: Method[Any]) -> list[str]:
    """Marks that every table must show beside the numbers (never silently mixed)."""
    flags = [] if spec.preset == "paper" else [Flag.of(Flag.PRESET_PREFIX, spec.preset)]
    if spec.threshold.name == "paper":  # own rule, no hold-out: comparable with the paper
        flags.append(Flag.PROTOCOL_PAPER)
    elif spec.threshold.rule != "calibrated":  # e.g. "threshold:oracle", labelled wherever shown
        flags.append(Flag.of(Flag.THRESHOLD_PREFIX, spec.threshold.rule))
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
        "started_at": now(),
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
        flags.append(Flag.of(Flag.CALIBRATION_PREFIX, split.n_calibration))
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
UNDEFINED_FLAG = Flag.UNDEFINED
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


@dataclass(frozen=True)
class FitPredict:
    """The clocks and memory peaks of a job's fit and of its timed predict."""

    fit_clock: Stopwatch
    fit_mem: PeakMemory
    predict_clock: Stopwatch
    predict_mem: PeakMemory


class Timing:
    """The timing phase of a job, and what a command's jobs do differently around it.

    :meth:`measure` makes the timed calls on the fitted detector (after fit, the timed
    predict and the untimed calibration predict); :meth:`fields` turns them into the record's
    ``timing`` and ``gflops_per_image`` (and any block of its own) after the metrics. The
    other hooks default to ``bench run``'s behaviour. Instances are pickled into launcher
    tasks: keep them plain data.
    """

    #: Progress messages at the pipeline's steps ("load", "fit", "predict", "evaluate"):
    #: (message, fraction of the job); a step not named here is silent.
    notes: ClassVar[dict[str, tuple[str, float]]] = {}
    #: Whether a record says where an in-process job ran (``launcher``: host, pid); a
    #: launcher's job always says so.
    records_local_launcher: ClassVar[bool] = True

    def note(self, progress: ProgressFn, step: str) -> None:
        if step in self.notes:
            progress(*self.notes[step])

    def load(self, dataset: Dataset, spec: JobLike, split: str, input_spec: InputSpec) -> ImageSet:
        """One split of the job's dataset at the method's input spec."""
        return dataset.load(split, input_spec, spec.seed)

    def evaluated(self, test: ImageSet, seed: int) -> ImageSet:
        """The test images the job scores and times: all of them."""
        return test

    def method_progress(self, progress: ProgressFn) -> ProgressFn:
        """The progress callback the method reports to (through its RunContext)."""
        return progress

    def measure(
        self, detector: Any, test: ImageSet, device: torch.device, progress: ProgressFn
    ) -> Any:
        """The timed calls of ``detector.predict`` on ``test`` (the evaluated images)."""
        raise NotImplementedError

    def fields(
        self, measured: Any, detector: Any, test: ImageSet, costs: FitPredict, device_name: str
    ) -> dict[str, Any]:
        """Record fields from :meth:`measure`'s result and the fit / predict costs; computed
        after the metrics (counting FLOPs runs the model once more, untimed)."""
        raise NotImplementedError

    def release(self, device: torch.device) -> None:
        """Free what a finished (or failed) job left behind; nothing by default."""
        return None


@dataclass(frozen=True)
class LatencyTiming(Timing):
    """``bench run``: ``warmup`` untimed calls, then ``repeats`` timed calls of ``predict`` on
    the first test image (the latency: median and p95; every call kept for error bars)."""

    repeats: int = 5
    warmup: int = 1

    notes: ClassVar[dict[str, tuple[str, float]]] = {
        "load": ("loading data", 0.0),
        "predict": ("predicting", 0.9),
        "evaluate": ("scoring", 0.98),
    }

    @classmethod
    def of(cls, cfg: RunConfig) -> LatencyTiming:
        """The timing of ``bench run`` / ``bench ablate`` (``--timing-repeats``)."""
        return cls(cfg.timing_repeats, cfg.timing_warmup)

    def measure(
        self, detector: Any, test: ImageSet, device: torch.device, progress: ProgressFn
    ) -> Any:
        single = test.subset([0])
        return measure_latency(lambda: detector.predict(single), device, self.repeats, self.warmup)

    def fields(
        self, measured: Any, detector: Any, test: ImageSet, costs: FitPredict, device_name: str
    ) -> dict[str, Any]:
        latency, fit_mem, predict_mem = measured, costs.fit_mem, costs.predict_mem
        timing = {
            "fit_s": costs.fit_clock.elapsed,
            "predict_s": costs.predict_clock.elapsed,
            "images_per_s": len(test) / max(costs.predict_clock.elapsed, 1e-12),
            "ms_per_image": latency.median_ms,
            "ms_per_image_p95": latency.p95_ms,
            "latency_batch": 1,
            "latency_repeats": len(latency.repeats),
            "latency_ms": list(latency.repeats),  # every timed call: error bars in reports
            "peak_mem_mb": max(fit_mem.peak_mb, predict_mem.peak_mb),
            "peak_mem_kind": fit_mem.kind,
        }
        return {
            "timing": timing,
            "gflops_per_image": detector.gflops_per_image(test.image_size),
        }


def run_job(
    spec: JobLike,
    cfg: JobsConfig,
    device: torch.device,
    store: RunStore,
    run_id: str,
    progress: ProgressFn,
    timing: Timing,
    launcher: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one job and write its record; never raises for a failure inside the job.
    ``launcher`` says what ran it (``{"name": "ray", "node": ...}``; default in-process local)."""
    if not launcher and timing.records_local_launcher:
        launcher = {"name": "local", **process_info()}
    record: dict[str, Any] = {
        **record_head(spec, run_id, device, cfg),
        # Where it ran: in this process unless a launcher says otherwise (README: provenance).
        **({"launcher": launcher} if launcher else {}),
        **spec.record_extra,
    }
    detector = None
    try:
        seed_everything(spec.seed, cfg.threads)
        dataset = make_dataset(spec.dataset, cfg.data_root)
        params = registry.build_params(spec.method, "paper", spec.params)
        detector = registry.build_detector(spec.method, params)
        ctx = job_context(spec, device, store, timing.method_progress(progress))
        timing.note(progress, "load")
        train = timing.load(dataset, spec, "train", detector.input_spec)
        test = timing.load(dataset, spec, "test", detector.input_spec)
        # The threshold protocol's hold-out: the same normal images for every method of a seed,
        # kept out of fit; their scores set the calibrated threshold (bench.evaluation.protocol).
        protocol = spec.threshold
        split = calibration_split(train.names, protocol.calibration_fraction, spec.seed)
        calibration = train.subset(split.calibration_index) if split.n_calibration else None
        scored = timing.evaluated(test, spec.seed)
        record.update(data_fields(dataset, train, split, scored))

        timing.note(progress, "fit")
        with PeakMemory(device) as fit_mem, timed(device) as fit_clock:
            detector.fit(train.subset(split.fit_index), ctx)
        timing.note(progress, "predict")
        with PeakMemory(device) as predict_mem, timed(device) as predict_clock:
            pred = detector.predict(scored)
        # Part of the protocol, not of inference: untimed, and before the timing phase so
        # that it never depends on how many timed calls there were.
        cal_pred = detector.predict(calibration) if calibration is not None else None
        measured = timing.measure(detector, scored, device, progress)
        timing.note(progress, "evaluate")
        record.update(evaluation_fields(spec, detector, scored, pred, split, cal_pred))
        costs = FitPredict(fit_clock, fit_mem, predict_clock, predict_mem)
        record.update(timing.fields(measured, detector, scored, costs, record["device_name"]))
        if len(scored) < len(test):  # a subset bounds the time of slow variants: say so
            record["flags"].append(Flag.of(Flag.EVAL_SUBSET_PREFIX, len(scored), len(test)))
        write_side_files(store, spec.job_id, scored, pred, calibration, cal_pred)
        record["status"] = "ok"
        record["error"] = record["error_kind"] = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed job is a result too; the grid goes on
        record["status"] = "failed"
        record["error_kind"], record["error"] = describe_failure(exc)
        record["traceback"] = traceback.format_exc()
    finally:
        del detector
        timing.release(device)
    record["finished_at"] = now()
    store.write_record(record)
    return record
