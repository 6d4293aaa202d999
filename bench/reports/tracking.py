"""Stored runs into an MLflow tracking store: one MLflow run per job, nested under one parent
run per bench run, so that the suite's results sit beside a lab's other experiments.

What goes where (the record is the source; nothing is recomputed):

* params: every effective parameter of the job (``params.<name>``) plus the job's identity
  (method, dataset, category, seed, preset, threshold rule, image size);
* metrics: every image and pixel metric (``auroc``, ``pixel_aupro``, ...), its bootstrap
  interval bounds (``auroc.ci_low``, ``auroc.ci_high``), the timings (``timing.fit_s``,
  ``timing.ms_per_image``, ...), GFLOP/image and the training compute where recorded;
* tags: ``bench.job_id`` and ``bench.run_id`` (how an export finds what it wrote before), method,
  dataset, seed, preset, flags, threshold rule, git commit, device, status;
* artifacts: the job's record, its per-image scores CSV and, where the job kept example maps,
  its qualitative figure (the same thumbnail grid as the report's).

Exporting twice does not duplicate anything: a job whose ``bench.job_id`` tag is already in the
experiment is skipped (MLflow params are write-once, so a changed record is a new bench run,
not an edit). MLflow is an optional extra (``pip install "radar-bench[mlflow]"``); without it
:func:`require_mlflow` stops with a one-line error naming the extra.

>>> default_tracking_uri("results")
'sqlite:///results/mlruns/mlflow.db'
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.reports.load import RunData, grid_long
from bench.reports.qualitative import qualitative_grid
from bench.store.runs import RunStore, read_record_file, records_frame
from bench.util.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: The experiment that exports go to unless told otherwise.
DEFAULT_EXPERIMENT = "radar-bench"
JOB_TAG = "bench.job_id"
RUN_TAG = "bench.run_id"
KIND_TAG = "bench.kind"  # "run" (a bench run: the parent) or "job"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag (what the UI folds runs under)

# MLflow's limits per log_batch call and per value.
_BATCH_METRICS, _BATCH_PARAMS, _BATCH_TAGS = 1000, 100, 100
_MAX_PARAM_CHARS = 6000
_MAX_TAG_CHARS = 8000

#: Record fields copied into params beside ``params.*``: the job's identity.
IDENTITY_FIELDS = (
    "method",
    "dataset",
    "category",
    "seed",
    "preset",
    "protocol",
    "threshold_rule",
    "image_size",
    "channels",
    "threads",
)
#: Record fields copied into tags.
TAG_FIELDS = (
    "method",
    "dataset",
    "category",
    "seed",
    "preset",
    "threshold_rule",
    "git_commit",
    "device",
    "device_name",
    "status",
    "kind",
)
#: Numeric blocks of the record logged as metrics with this prefix.
METRIC_BLOCKS = (("timing", "timing."), ("fit_info", "fit."), ("inference", "inference."))


def require_mlflow() -> None:
    """A one-line error, naming the extra, when MLflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError('--mlflow needs the mlflow package: pip install "radar-bench[mlflow]"')


def default_tracking_uri(results_dir: str | Path = "results") -> str:
    """A local SQLite store in ``<results_dir>/mlruns/``: no server needed (MLflow's plain
    ``./mlruns`` file store is in maintenance mode and refuses to start by default)."""
    return tracking_uri(Path(results_dir) / "mlruns")


def tracking_uri(value: str | Path) -> str:
    """What ``--uri`` / ``--mlflow-uri`` name: a URI with a scheme as it is (a server, a
    database); a ``.db`` file as a SQLite store; any other path as a folder holding the local
    SQLite store ``mlflow.db`` (MLflow's plain folder store refuses to start by default).

    >>> tracking_uri("/tmp/x"), tracking_uri("runs.db"), tracking_uri("http://host:5000")
    ('sqlite:////tmp/x/mlflow.db', 'sqlite:///runs.db', 'http://host:5000')
    """
    text = str(value)
    if "://" in text or text.startswith(("databricks", "file:")):
        return text
    path = Path(text)
    return f"sqlite:///{(path if path.suffix == '.db' else path / 'mlflow.db').as_posix()}"


@dataclass
class ExportResult:
    """What one export did: MLflow run ids of the jobs it logged and of those already there."""

    experiment_id: str
    parent_run_id: str
    uri: str  # the tracking URI, resolved (a folder -> its SQLite store)
    logged: dict[str, str] = field(default_factory=dict)  # job id -> MLflow run id
    skipped: dict[str, str] = field(default_factory=dict)  # job id -> existing MLflow run id

    def summary(self) -> str:
        return (
            f"{len(self.logged)} job(s) logged, {len(self.skipped)} already there "
            f"(experiment {self.experiment_id}, parent run {self.parent_run_id})"
        )


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:_MAX_PARAM_CHARS]


def job_params(record: Mapping[str, Any]) -> dict[str, str]:
    """Every effective parameter (``params.<name>``) and the job's identity, as MLflow text."""
    out = {k: _param_text(record[k]) for k in IDENTITY_FIELDS if record.get(k) is not None}
    for name, value in (record.get("params") or {}).items():
        out[f"params.{name}"] = _param_text(value)
    return out


def job_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """Image and pixel metrics with interval bounds, timings, fit/inference numbers, GFLOP."""
    out: dict[str, float] = {}
    for name, value in (record.get("metrics") or {}).items():
        if (v := _finite(value)) is not None:
            out[name] = v
    for name, bounds in (record.get("metrics_ci") or {}).items():
        if isinstance(bounds, list | tuple) and len(bounds) == 2:
            for suffix, bound in zip(("ci_low", "ci_high"), bounds, strict=True):
                if (v := _finite(bound)) is not None:
                    out[f"{name}.{suffix}"] = v
    for block, prefix in METRIC_BLOCKS:
        for name, value in (record.get(block) or {}).items():
            if (v := _finite(value)) is not None:
                out[prefix + name] = v
    for name in ("gflops_per_image", "threshold", "n_test", "n_fit", "n_calibration"):
        if (v := _finite(record.get(name))) is not None:
            out[name] = v
    return out


def job_tags(record: Mapping[str, Any]) -> dict[str, str]:
    tags = {k: str(record[k])[:_MAX_TAG_CHARS] for k in TAG_FIELDS if record.get(k) is not None}
    tags["flags"] = ", ".join(record.get("flags") or [])
    tags[JOB_TAG] = str(record["job_id"])
    tags[RUN_TAG] = str(record.get("run_id", ""))
    return tags


def _quoted(value: str) -> str:
    """A value inside MLflow's single-quoted filter string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Tracker:
    """One MLflow experiment seen from a bench run: finds or creates the parent run of a bench
    run and logs job records under it, skipping jobs logged before. Used by ``bench export``
    (a stored run afterwards) and ``bench run --mlflow`` (each record as it is written)."""

    def __init__(
        self, uri: str, experiment: str = DEFAULT_EXPERIMENT, flag: str = "--mlflow-uri"
    ) -> None:
        require_mlflow()
        uri = tracking_uri(uri)
        from mlflow import MlflowClient

        # MLflow and alembic announce every schema step at INFO: noise on a bench terminal.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client: MlflowClient = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
        except Exception as exc:  # MLflow raises many types for a bad URI; say which flag
            first = str(exc).split(". ")[0]  # MLflow's own message runs to a paragraph
            raise ConfigError(f"{flag} {uri!r}: cannot open the tracking store ({first})") from None
        self.uri = uri
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=_artifact_location(uri, experiment)
            )
        self._parents: dict[str, str] = {}

    def _find(
        self, tag: str, value: str, parent: str | None = None, kind: str = "job"
    ) -> str | None:
        query = f"tags.`{tag}` = '{_quoted(value)}' and tags.`{KIND_TAG}` = '{kind}'"
        if parent is not None:
            query += f" and tags.`{PARENT_TAG}` = '{parent}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else None

    def parent_run(self, run_id: str, manifest: Mapping[str, Any] | None = None) -> str:
        """The MLflow run that stands for bench run ``run_id`` (created on first use)."""
        if run_id in self._parents:
            return self._parents[run_id]
        parent = self._find(RUN_TAG, run_id, kind="run")
        if parent is None:
            manifest = manifest or {}
            tags = {RUN_TAG: run_id, KIND_TAG: "run"}
            for key in ("git_commit", "command", "preset", "device"):
                if manifest.get(key) is not None:
                    tags[key] = str(manifest[key])[:_MAX_TAG_CHARS]
            parent = self.client.create_run(self.experiment_id, tags=tags, run_name=run_id)
            parent = parent.info.run_id
            self.client.set_terminated(parent, "FINISHED")
        self._parents[run_id] = parent
        return parent

    def log_job(self, record: Mapping[str, Any], run_dir: Path | None = None) -> tuple[str, bool]:
        """Log one job record (and its files from ``run_dir``) under its bench run's parent.
        Returns (MLflow run id, True if logged now / False if it was there already)."""
        from mlflow.entities import Metric, Param, RunTag

        job_id = str(record["job_id"])
        parent = self.parent_run(str(record.get("run_id", "")))
        existing = self._find(JOB_TAG, job_id, parent)
        if existing is not None:
            return existing, False
        tags = {**job_tags(record), KIND_TAG: "job", PARENT_TAG: parent}
        name = f"{record.get('method')} {record.get('dataset')} seed {record.get('seed')}"
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        mlflow_id = run.info.run_id
        stamp = run.info.start_time
        params = [Param(k, v) for k, v in job_params(record).items()]
        metrics = [Metric(k, v, stamp, 0) for k, v in job_metrics(record).items()]
        for chunk in _chunks(params, _BATCH_PARAMS):
            self.client.log_batch(mlflow_id, params=chunk)
        for chunk in _chunks(metrics, _BATCH_METRICS):
            self.client.log_batch(mlflow_id, metrics=chunk)
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        for chunk in _chunks(tag_list, _BATCH_TAGS):
            self.client.log_batch(mlflow_id, tags=chunk)
        if run_dir is not None:
            self._log_files(mlflow_id, record, Path(run_dir))
        status = "FINISHED" if record.get("status") == "ok" else "FAILED"
        self.client.set_terminated(mlflow_id, status)
        return mlflow_id, True

    def _log_files(self, mlflow_id: str, record: Mapping[str, Any], run_dir: Path) -> None:
        job_id = str(record["job_id"])
        jobs = run_dir / "jobs"
        for path in (jobs / f"{job_id}.json", jobs / f"{job_id}.scores.csv"):
            if path.is_file():
                self.client.log_artifact(mlflow_id, str(path))
        figure = _qualitative_png(record, run_dir)
        if figure is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{job_id}.qualitative.png"
                path.write_bytes(figure)
                self.client.log_artifact(mlflow_id, str(path))


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Beside a local SQLite database, not in whatever folder the command ran from."""
    if not uri.startswith("sqlite:///"):
        return None  # a server or other store decides
    root = Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / experiment
    return root.as_uri()


def _qualitative_png(record: Mapping[str, Any], run_dir: Path) -> bytes | None:
    """The job's thumbnail grid (input, ground truth, map) as PNG, from its stored maps."""
    jobs = run_dir / "jobs"
    if not (jobs / f"{record['job_id']}.maps.npz").is_file():
        return None
    data = RunData(run_dir, records_frame([dict(record)]), [], [jobs])
    grid = grid_long(data, data.records, str(record.get("dataset")))
    if grid.empty:
        return None
    fig = qualitative_grid(grid, title=f"{record.get('method')} on {record.get('dataset')}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    return buffer.getvalue()


def export_run(run_dir: str | Path, uri: str, experiment: str = DEFAULT_EXPERIMENT) -> ExportResult:
    """Export every job record of a stored run folder; idempotent (see the module docstring)."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not store.jobs_dir.is_dir():
        raise DataError(f"{run_dir}: not a run folder (expected {run_dir}/jobs/*.json)")
    records = store.records()
    if not records:
        raise DataError(f"{run_dir}: no job records to export (expected jobs/*.json)")
    tracker = Tracker(uri, experiment, flag="--uri")
    manifest = store.read_manifest() or {}
    run_id = str(manifest.get("run_id") or records[0].get("run_id") or run_dir.name)
    result = ExportResult(tracker.experiment_id, tracker.parent_run(run_id, manifest), tracker.uri)
    for record in records:
        record = {**record, "run_id": record.get("run_id") or run_id}
        mlflow_id, new = tracker.log_job(record, run_dir)
        (result.logged if new else result.skipped)[str(record["job_id"])] = mlflow_id
    return result


def log_records(tracker: Tracker, paths: Iterable[Path]) -> list[str]:
    """Log job record files as they are written (``bench run --mlflow``); returns MLflow ids."""
    out = []
    for path in paths:
        record = read_record_file(path)
        if record is not None:
            out.append(tracker.log_job(record, path.parent.parent)[0])
    return out
