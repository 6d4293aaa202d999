"""What a job record and a run manifest hold: the name of every field and flag, and the type
of every field that the suite's readers rely on (JSON Schema, checked with :mod:`jsonschema`).

The names are spelled here once, grouped as the record nests them (:class:`Field`, then
:class:`Timing`, :class:`Speed`, ... for the keys inside a field; :class:`Flag` for the flags):
every writer and reader uses them (``rec[Field.METRICS]``, ``flat(Field.TIMING, Timing.FIT_S)``
for a ``records_frame`` column, ``Flag.of(Flag.PRESET_PREFIX, "quick")``) instead of
repeating ``"metrics"`` or ``"preset:"``, so that a field cannot be written under one spelling
and read under another.

Records are written by this suite, but a run folder lives on a shared disk for months: a file
may be truncated by a full disk, edited by hand, or replaced by another tool. Every reader goes
through :func:`bench.store.runs.read_record_file` /
:meth:`bench.store.runs.RunStore.read_manifest`, which
check a file against these schemas, so that the rest of the code can trust the types
(``metrics`` values are numbers or null, ``seed`` is an integer, ...) instead of guarding each
use. Fields not listed here are kept as they are and never relied on.

>>> record_problem({"job_id": "a", "status": "ok", "method": "m", "dataset": "d", "seed": 0,
...                 "metrics": {"auroc": "abc"}})
"metrics.auroc: 'abc' is not of type 'number', 'null'"
>>> record_problem([], "a")
'not a job record: a JSON array, expected an object'
>>> flat(Field.TIMING, Timing.FIT_S), Flag.of(Flag.PRESET_PREFIX, "quick")
('timing.fit_s', 'preset:quick')
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

# The method contract spells the flags (methods may not import the store); re-exported here so
# that every reader finds fields and flags in this one module.
from bench.util.flags import Flag as Flag

if TYPE_CHECKING:  # jsonschema is imported when a file is first checked: `bench --help` is fast
    from jsonschema import Draft202012Validator


class Field:
    """The top-level fields of a job record (``jobs/<job-id>.json``); a run manifest shares
    some (:class:`Manifest`)."""

    JOB_ID = "job_id"
    RUN_ID = "run_id"
    STATUS = "status"  # a Status
    METHOD = "method"
    DATASET = "dataset"
    SEED = "seed"
    KIND = "kind"  # Kind.SPEED for a record of `bench speed`; absent in one of `bench run`
    VARIANT = "variant"  # `bench speed`: the fast-path variant ("base", "bf16", ...)
    PARAMS = "params"
    PARAMS_HASH = "params_hash"
    PRESET = "preset"
    DEVICE = "device"
    DEVICE_NAME = "device_name"
    THREADS = "threads"
    CONFIG_HASH = "config_hash"
    BENCH_VERSION = "bench_version"
    GIT_COMMIT = "git_commit"
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    PROTOCOL = "protocol"
    THRESHOLD_RULE = "threshold_rule"
    THRESHOLD = "threshold"
    THRESHOLDS = "thresholds"
    ERROR = "error"
    ERROR_KIND = "error_kind"  # an ErrorKind
    TRACEBACK = "traceback"
    FLAGS = "flags"  # see Flag
    UNDEFINED_METRICS = "undefined_metrics"
    LAUNCHER = "launcher"  # keys: LauncherInfo
    METRICS = "metrics"
    METRICS_CI = "metrics_ci"
    PER_DEFECT = "per_defect"
    TIMING = "timing"  # keys: Timing
    GFLOPS_PER_IMAGE = "gflops_per_image"
    DATASET_FAMILY = "dataset_family"
    CATEGORY = "category"
    IMAGE_SIZE = "image_size"
    CHANNELS = "channels"
    N_TRAIN = "n_train"
    N_FIT = "n_fit"
    N_CALIBRATION = "n_calibration"
    N_TEST = "n_test"
    N_TEST_ANOMALOUS = "n_test_anomalous"
    CALIBRATION = "calibration"
    FIT_INFO = "fit_info"  # keys: FitInfo
    INFERENCE = "inference"  # keys: Inference
    SPEED = "speed"  # `bench speed`: batch sweep, FLOP floor; keys: Speed
    VARIED = "varied"  # `bench ablate`: {param: value} of the grid parameters in this job
    ABLATION = "ablation"  # `bench ablate`: keys: AblationInfo


class Status:
    """Values of :attr:`Field.STATUS`."""

    OK = "ok"
    FAILED = "failed"


class ErrorKind:
    """Values of :attr:`Field.ERROR_KIND`."""

    INPUT = "input"  # the user can fix it (bad data, weights missing offline): exit 2
    CRASH = "crash"


class Kind:
    """Values of :attr:`Field.KIND`."""

    SPEED = "speed"


class Timing:
    """Keys inside :attr:`Field.TIMING`."""

    FIT_S = "fit_s"
    PREDICT_S = "predict_s"
    IMAGES_PER_S = "images_per_s"
    IMAGES_PER_S_BATCH1 = "images_per_s_batch1"
    MS_PER_IMAGE = "ms_per_image"
    MS_PER_IMAGE_P95 = "ms_per_image_p95"
    MS_PER_IMAGE_BEST = "ms_per_image_best"  # `bench speed`: at the best batch size
    PEAK_MEM_MB = "peak_mem_mb"
    PEAK_MEM_KIND = "peak_mem_kind"
    LATENCY_BATCH = "latency_batch"
    LATENCY_REPEATS = "latency_repeats"
    LATENCY_MS = "latency_ms"
    BEST_BATCH = "best_batch"


class Inference:
    """Keys inside :attr:`Field.INFERENCE`."""

    MODE = "mode"
    PRECISION = "precision"


class Speed:
    """Keys inside :attr:`Field.SPEED`."""

    RATIO_TO_FLOOR = "ratio_to_floor"
    PEAK_TFLOPS = "peak_tflops"
    PEAK_SOURCE = "peak_source"
    BATCHES = "batches"


class FitInfo:
    """Keys inside :attr:`Field.FIT_INFO` that readers use."""

    TRAIN_GFLOPS = "train_gflops"
    TRAIN_SECONDS = "train_seconds"
    TRAIN_PEAK_MEM_MB = "train_peak_mem_mb"
    LOSS_CURVE = "loss_curve"  # [[step, loss, seconds], ...]


class LauncherInfo:
    """Keys inside :attr:`Field.LAUNCHER` (where a job ran)."""

    NAME = "name"


class AblationInfo:
    """Keys inside :attr:`Field.ABLATION` of a record and the run manifest's entry of
    ``bench ablate`` (``{METHOD, MODE, GRID: {param: [values]}, BASE: {param: value}}``), and
    the values of its MODE."""

    METHOD = "method"
    MODE = "mode"
    GRID = "grid"
    BASE = "base"
    CARTESIAN = "cartesian"  # every combination of the grid values
    ONE_AT_A_TIME = "one_at_a_time"  # one parameter varied at a time, the others at base


class Manifest:
    """The fields of a run manifest (``manifest.json``)."""

    RUN_ID = Field.RUN_ID
    CONFIG_HASH = Field.CONFIG_HASH
    KIND = Field.KIND
    DEVICE = Field.DEVICE
    DEVICE_NAME = Field.DEVICE_NAME
    GIT_COMMIT = Field.GIT_COMMIT
    FINISHED_AT = Field.FINISHED_AT
    LAUNCHER = Field.LAUNCHER
    PRESET = Field.PRESET
    NAME = "name"
    CONFIG = "config"  # keys: Config
    JOBS = "jobs"
    JOB_LABELS = "job_labels"
    SEEDS = "seeds"
    CREATED_AT = "created_at"
    RESUMED_AT = "resumed_at"
    INTERRUPTED_AT = "interrupted_at"
    EARLIER_CONFIGS = "earlier_configs"
    ENVIRONMENT = "environment"


class Config:
    """Keys of a manifest's :attr:`Manifest.CONFIG` that readers use (the run's flags)."""

    METHODS = "methods"
    DATASETS = "datasets"
    SETS = "sets"


def flat(*keys: str) -> str:
    """The column of a nested field in :func:`bench.store.runs.records_frame`
    (``flat(Field.METRICS, "f1")`` is ``"metrics.f1"``)."""
    return ".".join(keys)


# -- types -----------------------------------------------------------------------------------
#: Largest seed every seeded library accepts (numpy, scikit-learn's ``random_state``).
MAX_SEED = 2**32 - 1

_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_NUM_OR_NULL = {"type": ["number", "null"]}
_INT = {"type": "integer"}
_OBJECT = {"type": "object"}
_NUMBERS = {"type": "object", "additionalProperties": _NUM_OR_NULL}

#: Job records (``jobs/<job-id>.json``): written by :mod:`bench.execution.runner` and
#: ``bench speed``.
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [Field.JOB_ID, Field.STATUS, Field.METHOD, Field.DATASET, Field.SEED],
    "properties": {
        Field.JOB_ID: {"type": "string", "minLength": 1},
        Field.RUN_ID: _STR_OR_NULL,
        Field.STATUS: {"enum": [Status.OK, Status.FAILED]},
        Field.METHOD: {"type": "string", "minLength": 1},
        Field.DATASET: {"type": "string", "minLength": 1},
        Field.SEED: {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
        Field.KIND: _STR,
        Field.VARIANT: _STR,
        Field.PARAMS: _OBJECT,
        Field.PARAMS_HASH: _STR,
        Field.PRESET: _STR,
        Field.DEVICE: _STR,
        Field.DEVICE_NAME: _STR_OR_NULL,
        Field.THREADS: _INT,
        Field.CONFIG_HASH: _STR,
        Field.GIT_COMMIT: _STR_OR_NULL,
        Field.STARTED_AT: _STR,
        Field.FINISHED_AT: _STR,
        Field.THRESHOLD_RULE: _STR,
        Field.THRESHOLD: _NUM_OR_NULL,
        Field.THRESHOLDS: _NUMBERS,
        Field.ERROR: _STR_OR_NULL,
        Field.ERROR_KIND: _STR_OR_NULL,
        Field.TRACEBACK: _STR_OR_NULL,
        Field.FLAGS: {"type": "array", "items": _STR},
        Field.UNDEFINED_METRICS: {"type": "object", "additionalProperties": _STR},
        Field.LAUNCHER: _OBJECT,
        Field.METRICS: _NUMBERS,
        Field.METRICS_CI: {
            "type": "object",
            "additionalProperties": {
                "type": ["array", "null"],
                "items": _NUM_OR_NULL,
                "minItems": 2,
                "maxItems": 2,
            },
        },
        Field.PER_DEFECT: {"type": "object", "additionalProperties": _NUMBERS},
        Field.TIMING: {
            "type": "object",
            "properties": {
                **{
                    name: _NUM_OR_NULL
                    for name in (
                        Timing.FIT_S,
                        Timing.PREDICT_S,
                        Timing.IMAGES_PER_S,
                        Timing.MS_PER_IMAGE,
                        Timing.MS_PER_IMAGE_P95,
                        Timing.PEAK_MEM_MB,
                        Timing.LATENCY_BATCH,
                        Timing.LATENCY_REPEATS,
                    )
                },
                Timing.LATENCY_MS: {"type": "array", "items": {"type": "number"}},
                Timing.PEAK_MEM_KIND: _STR_OR_NULL,
            },
        },
        Field.GFLOPS_PER_IMAGE: _NUM_OR_NULL,
        Field.IMAGE_SIZE: {"type": "array", "items": _INT},
        **{name: _INT for name in (Field.N_TRAIN, Field.N_FIT, Field.N_CALIBRATION, Field.N_TEST)},
        Field.N_TEST_ANOMALOUS: _INT,
        Field.CALIBRATION: _OBJECT,
        Field.FIT_INFO: _OBJECT,
        Field.INFERENCE: _OBJECT,
    },
    # An ok record is one with results: the tables and the compare gate read its metrics.
    "if": {"properties": {Field.STATUS: {"const": Status.OK}}},
    "then": {"required": [Field.METRICS]},
}

#: Keys that make a JSON object a bench manifest (``bench run`` and ``bench speed`` write both):
#: an object without them belongs to something else and is never overwritten.
MANIFEST_MARKERS = (Manifest.RUN_ID, Manifest.CONFIG_HASH)

#: Run manifests (``manifest.json``).
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(MANIFEST_MARKERS),
    "properties": {
        Manifest.RUN_ID: {"type": "string", "minLength": 1},
        Manifest.CONFIG_HASH: _STR,
        Manifest.NAME: _STR_OR_NULL,
        Manifest.KIND: _STR,
        Manifest.CONFIG: _OBJECT,
        Manifest.JOBS: {"type": "array", "items": _STR},
        Manifest.JOB_LABELS: {"type": "object", "additionalProperties": _STR},
        Manifest.SEEDS: {"type": "array", "items": _INT},
        Manifest.CREATED_AT: _STR_OR_NULL,
        Manifest.RESUMED_AT: _STR_OR_NULL,
        Manifest.FINISHED_AT: _STR_OR_NULL,
        Manifest.INTERRUPTED_AT: _STR_OR_NULL,
        Manifest.GIT_COMMIT: _STR_OR_NULL,
        Manifest.DEVICE: _STR,
        Manifest.DEVICE_NAME: _STR_OR_NULL,
        Manifest.LAUNCHER: _OBJECT,
        Manifest.EARLIER_CONFIGS: {"type": "array", "items": _OBJECT},
    },
}


@cache
def _validator(schema_name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"record": RECORD_SCHEMA, "manifest": MANIFEST_SCHEMA}[schema_name])


_JSON_TYPES = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _first_error(schema_name: str, value: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(_validator(schema_name).iter_errors(value))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{where}: {message}" if where else message


def record_problem(record: Any, job_id: str | None = None) -> str | None:
    """What is wrong with ``record`` as the job record of ``job_id`` (None: nothing)."""
    if not isinstance(record, dict):
        return f"not a job record: a JSON {_json_type(record)}, expected an object"
    problem = _first_error("record", record)
    if problem is None and job_id is not None and record[Field.JOB_ID] != job_id:
        return f"job_id {record[Field.JOB_ID]!r} is not the job of this file ({job_id!r})"
    return problem


def is_bench_manifest(manifest: Any) -> bool:
    """Whether a parsed JSON value claims to be a bench manifest (its fields may still be
    damaged): an object with the marker keys."""
    return isinstance(manifest, dict) and all(k in manifest for k in MANIFEST_MARKERS)


def manifest_problem(manifest: Any) -> str | None:
    """What is wrong with ``manifest`` as a bench run manifest (None: nothing)."""
    if not isinstance(manifest, dict):
        return f"not a run manifest: a JSON {_json_type(manifest)}, expected an object"
    return _first_error("manifest", manifest)
