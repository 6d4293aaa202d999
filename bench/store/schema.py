"""What a job record and a run manifest must look like to be used: the type of every field
that the suite's readers rely on (JSON Schema, checked with :mod:`jsonschema`).

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
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

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
    "required": ["job_id", "status", "method", "dataset", "seed"],
    "properties": {
        "job_id": {"type": "string", "minLength": 1},
        "run_id": _STR_OR_NULL,
        "status": {"enum": ["ok", "failed"]},
        "method": {"type": "string", "minLength": 1},
        "dataset": {"type": "string", "minLength": 1},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
        "kind": _STR,
        "variant": _STR,
        "params": _OBJECT,
        "params_hash": _STR,
        "preset": _STR,
        "device": _STR,
        "device_name": _STR_OR_NULL,
        "threads": _INT,
        "config_hash": _STR,
        "git_commit": _STR_OR_NULL,
        "started_at": _STR,
        "finished_at": _STR,
        "threshold_rule": _STR,
        "threshold": _NUM_OR_NULL,
        "thresholds": _NUMBERS,
        "error": _STR_OR_NULL,
        "error_kind": _STR_OR_NULL,
        "traceback": _STR_OR_NULL,
        "flags": {"type": "array", "items": _STR},
        "undefined_metrics": {"type": "object", "additionalProperties": _STR},
        "launcher": _OBJECT,
        "metrics": _NUMBERS,
        "metrics_ci": {
            "type": "object",
            "additionalProperties": {
                "type": ["array", "null"],
                "items": _NUM_OR_NULL,
                "minItems": 2,
                "maxItems": 2,
            },
        },
        "per_defect": {"type": "object", "additionalProperties": _NUMBERS},
        "timing": {
            "type": "object",
            "properties": {
                **{
                    name: _NUM_OR_NULL
                    for name in (
                        "fit_s",
                        "predict_s",
                        "images_per_s",
                        "ms_per_image",
                        "ms_per_image_p95",
                        "peak_mem_mb",
                        "latency_batch",
                        "latency_repeats",
                    )
                },
                "latency_ms": {"type": "array", "items": {"type": "number"}},
                "peak_mem_kind": _STR_OR_NULL,
            },
        },
        "gflops_per_image": _NUM_OR_NULL,
        "image_size": {"type": "array", "items": _INT},
        **{name: _INT for name in ("n_train", "n_fit", "n_calibration", "n_test")},
        "n_test_anomalous": _INT,
        "calibration": _OBJECT,
        "fit_info": _OBJECT,
        "inference": _OBJECT,
    },
    # An ok record is one with results: the tables and the compare gate read its metrics.
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"required": ["metrics"]},
}

#: Keys that make a JSON object a bench manifest (``bench run`` and ``bench speed`` write both):
#: an object without them belongs to something else and is never overwritten.
MANIFEST_MARKERS = ("run_id", "config_hash")

#: Run manifests (``manifest.json``).
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(MANIFEST_MARKERS),
    "properties": {
        "run_id": {"type": "string", "minLength": 1},
        "config_hash": _STR,
        "name": _STR_OR_NULL,
        "kind": _STR,
        "config": _OBJECT,
        "jobs": {"type": "array", "items": _STR},
        "job_labels": {"type": "object", "additionalProperties": _STR},
        "seeds": {"type": "array", "items": _INT},
        "created_at": _STR_OR_NULL,
        "resumed_at": _STR_OR_NULL,
        "finished_at": _STR_OR_NULL,
        "interrupted_at": _STR_OR_NULL,
        "git_commit": _STR_OR_NULL,
        "device": _STR,
        "device_name": _STR_OR_NULL,
        "launcher": _OBJECT,
        "earlier_configs": {"type": "array", "items": _OBJECT},
    },
}

_RECORD = Draft202012Validator(RECORD_SCHEMA)
_MANIFEST = Draft202012Validator(MANIFEST_SCHEMA)

_JSON_TYPES = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _first_error(validator: Draft202012Validator, value: Any) -> str | None:
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{where}: {message}" if where else message


def record_problem(record: Any, job_id: str | None = None) -> str | None:
    """What is wrong with ``record`` as the job record of ``job_id`` (None: nothing)."""
    if not isinstance(record, dict):
        return f"not a job record: a JSON {_json_type(record)}, expected an object"
    problem = _first_error(_RECORD, record)
    if problem is None and job_id is not None and record["job_id"] != job_id:
        return f"job_id {record['job_id']!r} is not the job of this file ({job_id!r})"
    return problem


def is_bench_manifest(manifest: Any) -> bool:
    """Whether a parsed JSON value claims to be a bench manifest (its fields may still be
    damaged): an object with the marker keys."""
    return isinstance(manifest, dict) and all(k in manifest for k in MANIFEST_MARKERS)


def manifest_problem(manifest: Any) -> str | None:
    """What is wrong with ``manifest`` as a bench run manifest (None: nothing)."""
    if not isinstance(manifest, dict):
        return f"not a run manifest: a JSON {_json_type(manifest)}, expected an object"
    return _first_error(_MANIFEST, manifest)
