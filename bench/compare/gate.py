"""Regression gate: compare a candidate run with a baseline, metric by metric, job by job.

Jobs are matched on ``(method, params_hash, dataset, seed)``. Each metric of a matched pair is
judged by its rule (:mod:`bench.compare.settings`): a quality metric may not get worse by more than
an absolute tolerance; a time or memory figure may not grow by more than a factor, and only when
both jobs ran on the same device (``device_name``), since a ratio across machines measures the
machines. The verdict of the whole comparison is a regression when any gated metric regressed,
a candidate job failed, or (by default) a baseline job is missing from the candidate; extra
candidate jobs are reported and do not fail.

Exit codes of ``bench compare`` (:data:`EXIT_PASS`, :data:`EXIT_REGRESSION`; bad input is
:class:`bench.util.errors.BenchError`'s 2): 0 pass, 1 regression, 2 bad input (a missing folder,
no records, two records of one job, a bad tolerance file).

The same idea as asv's ``asv compare`` and pytest-benchmark's ``--benchmark-compare-fail``,
applied to quality metrics as well as to speed.

>>> a = {"method": "m", "params_hash": "h", "dataset": "d", "seed": 0, "status": "ok",
...      "device_name": "cpu", "metrics": {"auroc": 0.90}, "timing": {}}
>>> b = {**a, "metrics": {"auroc": 0.85}}
>>> compare_records([a], [b]).verdict
'regression'
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.compare.settings import TIMING_METRICS, CompareSettings, MetricRule
from bench.store.runs import RunStore, load_results, read_record_file, records_frame, write_json
from bench.store.schema import Field, FitInfo, Status, flat
from bench.util.errors import DataError
from bench.util.formatting import UNDEFINED, general, signed, significant, slowdown

EXIT_PASS = 0
EXIT_REGRESSION = 1

KEY_FIELDS = (Field.METHOD, Field.PARAMS_HASH, Field.DATASET, Field.SEED)
JobKey = tuple[str, str, str, int]

# Float slack so that a change of exactly the tolerance (0.80 -> 0.78 at 0.02) is not a
# regression because 0.80 - 0.78 is 0.020000000000000018 in binary.
_EPS = 1e-9


# -- reading ---------------------------------------------------------------------------------


def _frame(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.is_file() and path.suffix == ".csv":
        # Hashes such as "012345678901" must stay strings, not become integers.
        try:
            return pd.read_csv(
                path, dtype={Field.PARAMS_HASH: str, Field.JOB_ID: str, Field.RUN_ID: str}
            )
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable records CSV ({exc})") from None
    return load_results(path)  # damaged records: moved aside with a warning, never a crash


def _number(value: Any) -> float | None:
    """A finite float, or None for absent / null / NaN / non-numeric (e.g. a list)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Job:
    """The parts of one record that the comparison needs."""

    method: str
    params_hash: str
    dataset: str
    seed: int
    status: str
    error: str | None
    device_name: str | None
    params: dict[str, Any]
    metrics: dict[str, float | None]
    timing: dict[str, float | None]
    run_id: str | None = None

    @property
    def key(self) -> JobKey:
        return (self.method, self.params_hash, self.dataset, self.seed)


def _job_from_row(row: dict[str, Any], source: Path) -> Job:
    missing = [k for k in KEY_FIELDS if k not in row or pd.isna(row[k])]
    if missing:
        raise DataError(f"{source}: a record lacks {', '.join(missing)} (not a bench record?)")
    # A metric recorded as null (undefined, e.g. AUROC on one class) counts as absent: in a
    # flattened table a record without a metric and one with a null look the same.
    metrics = {_key(k, Field.METRICS): _number(v) for k, v in row.items() if _key(k, Field.METRICS)}
    metrics = {k: v for k, v in metrics.items() if v is not None}
    timing = {name: _number(row.get(flat(Field.TIMING, name))) for name in TIMING_METRICS}
    timing = {k: v for k, v in timing.items() if v is not None}
    params = {_key(k, Field.PARAMS): v for k, v in row.items() if _key(k, Field.PARAMS)}
    error = row.get(Field.ERROR)
    device = row.get(Field.DEVICE_NAME)
    return Job(
        method=str(row[Field.METHOD]),
        params_hash=str(row[Field.PARAMS_HASH]),
        dataset=str(row[Field.DATASET]),
        seed=int(row[Field.SEED]),
        status=str(row.get(Field.STATUS) or "unknown"),
        error=None if _isnan(error) else str(error),
        device_name=None if _isnan(device) else str(device),
        params=params,
        metrics=metrics,
        timing=timing,
        run_id=None if _isnan(row.get(Field.RUN_ID)) else row.get(Field.RUN_ID),
    )


def _key(column: str, field: str) -> str:
    """The key inside ``field`` of a flattened record column (``metrics.f1`` -> ``f1``), or ""
    for a column of another field."""
    prefix = flat(field, "")
    return column[len(prefix) :] if column.startswith(prefix) else ""


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def jobs_from_records(records: list[dict[str, Any]], source: Path | str) -> dict[JobKey, Job]:
    """Records (dicts as stored) -> jobs by key; two records of one job are an error."""
    frame = records_frame(records)
    return _jobs_from_frame(frame, Path(source))


def _jobs_from_frame(frame: pd.DataFrame, source: Path) -> dict[JobKey, Job]:
    jobs: dict[JobKey, Job] = {}
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:
        job = _job_from_row(row, source)
        if job.key in jobs:
            other = jobs[job.key]
            raise DataError(
                f"{source}: two records of {job.method} on {job.dataset} seed {job.seed} "
                f"(params {job.params_hash}; runs {other.run_id} and {job.run_id}); "
                "pass a single run folder"
            )
        jobs[job.key] = job
    return jobs


def load_jobs(path: Path) -> dict[JobKey, Job]:
    """Jobs of a run folder, a folder of runs, a records.csv or one job record, by key."""
    return _jobs_from_frame(_frame(Path(path)), Path(path))


# -- judging ---------------------------------------------------------------------------------


@dataclass
class MetricResult:
    """One metric of one matched job pair. ``change`` is ``candidate - baseline`` for quality
    metrics and the slowdown factor (> 1 is worse) for time and memory."""

    metric: str
    family: str
    direction: str
    baseline: float | None
    candidate: float | None
    change: float | None
    tolerance: float
    gated: bool
    outcome: str  # pass | regression | improvement | changed (better, but two-sided)
    note: str = ""

    @property
    def counts_as_regression(self) -> bool:
        return self.gated and self.outcome in ("regression", "changed")


def judge_quality(rule: MetricRule, base: float | None, cand: float | None) -> MetricResult:
    def result(outcome: str, change: float | None, note: str = "") -> MetricResult:
        return MetricResult(
            rule.name, rule.family, rule.direction, base, cand, change, rule.tolerance,
            rule.gate, outcome, note,
        )  # fmt: skip

    if base is None and cand is None:
        return result("pass", None, "undefined in both")
    if cand is None:
        return result("regression", None, "undefined in the candidate")
    if base is None:
        return result("pass", None, "undefined in the baseline")
    delta = cand - base
    better = delta if rule.direction == "higher" else -delta
    if better < -rule.tolerance - _EPS:
        return result("regression", delta)
    if better > rule.tolerance + _EPS:
        if rule.two_sided:
            return result("changed", delta, "better, but the reference must match: refresh it")
        return result("improvement", delta)
    return result("pass", delta)


def judge_ratio(
    rule: MetricRule, base: float | None, cand: float | None, gated: bool, note: str = ""
) -> MetricResult:
    gated = gated and rule.gate

    def result(outcome: str, factor: float | None, why: str = note) -> MetricResult:
        return MetricResult(
            rule.name, rule.family, rule.direction, base, cand, factor, rule.tolerance, gated,
            outcome, why,
        )  # fmt: skip

    if base is None or cand is None or base <= 0 or cand <= 0:
        return result("pass", None, note or "not comparable (missing or zero)")
    factor = cand / base if rule.direction == "lower" else base / cand
    small = abs(cand - base) <= rule.min_change
    if factor > rule.tolerance * (1 + _EPS) and not small:
        return result("regression", factor)
    if factor * rule.tolerance < 1 - _EPS and not small:
        return result("improvement", factor)
    return result("pass", factor)


@dataclass
class JobResult:
    job: Job  # the candidate (the baseline's identity is the same)
    label: str
    outcome: str  # pass | regression | improvement
    baseline_device: str | None
    timing_gated: bool
    metrics: list[MetricResult] = field(default_factory=list)
    note: str = ""

    @property
    def regressions(self) -> list[MetricResult]:
        return [m for m in self.metrics if m.counts_as_regression]


@dataclass
class Unmatched:
    job: Job
    label: str
    note: str = ""


@dataclass
class Comparison:
    baseline: str
    candidate: str
    settings: CompareSettings
    jobs: list[JobResult]
    missing: list[Unmatched]
    extra: list[Unmatched]

    @property
    def failed_jobs(self) -> list[JobResult]:
        return [j for j in self.jobs if j.job.status != Status.OK and j.outcome == "regression"]

    @property
    def regressed_jobs(self) -> list[JobResult]:
        return [j for j in self.jobs if j.outcome == "regression"]

    @property
    def missing_fails(self) -> bool:
        return bool(self.missing) and self.settings.missing_jobs == "fail"

    @property
    def verdict(self) -> str:
        if self.regressed_jobs or self.missing_fails or not self.jobs:
            return "regression"
        return "pass"

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.verdict == "pass" else EXIT_REGRESSION

    def reasons(self) -> list[str]:
        """Why the verdict is a regression, one line each (empty on a pass)."""
        out = []
        for j in self.regressed_jobs:
            if j.job.status != Status.OK:
                out.append(f"{j.label}: failed in the candidate ({j.note})")
            worse = j.regressions
            if len(worse) == 1:
                out.append(f"{j.label}: {worse[0].metric} {_describe(worse[0])}")
            elif worse:
                shown = ", ".join(f"{m.metric} {_short(m)}" for m in worse[:6])
                more = f", +{len(worse) - 6} more" if len(worse) > 6 else ""
                out.append(f"{j.label}: {len(worse)} metrics out of tolerance ({shown}{more})")
        if self.missing_fails:
            out.append(f"{len(self.missing)} baseline job(s) missing from the candidate")
        if not self.jobs:
            out.append("no job of the baseline is in the candidate: nothing was compared")
        return out

    def counts(self) -> dict[str, int]:
        metrics = [m for j in self.jobs for m in j.metrics]
        return {
            "jobs_compared": len(self.jobs),
            "jobs_regressed": len(self.regressed_jobs),
            "failed_jobs": len(self.failed_jobs),
            "metric_regressions": sum(m.counts_as_regression for m in metrics),
            "metric_improvements": sum(m.gated and m.outcome == "improvement" for m in metrics),
            "not_gated_changes": sum(not m.gated and m.outcome != "pass" for m in metrics),
            "missing_jobs": len(self.missing),
            "extra_jobs": len(self.extra),
        }


def _describe(m: MetricResult) -> str:
    if m.change is None:
        return m.note or m.outcome
    if m.family == "quality":
        sides = " either way" if m.outcome == "changed" else ""
        return (
            f"{significant(m.baseline)} -> {significant(m.candidate)} ({signed(m.change)}; "
            f"tolerance {general(m.tolerance)} abs{sides})"
        )
    return (
        f"{significant(m.baseline)} -> {significant(m.candidate)} ({slowdown(m.change)}; "
        f"tolerance {general(m.tolerance)}x)"
    )


def _short(m: MetricResult) -> str:
    if m.change is None:
        return m.note or m.outcome
    return signed(m.change) if m.family == "quality" else slowdown(m.change)


def _variant_labels(jobs: list[Job]) -> dict[tuple[str, str], str]:
    """``method[p=v,...]`` naming only the parameters that differ between jobs of one method,
    so that two variants of a method are told apart in the tables (else ``method``)."""
    by_method: dict[str, dict[str, dict[str, Any]]] = {}
    for job in jobs:
        by_method.setdefault(job.method, {})[job.params_hash] = job.params
    labels: dict[tuple[str, str], str] = {}
    for method, variants in by_method.items():
        keys = sorted({k for p in variants.values() for k in p})
        varying = [k for k in keys if len({repr(p.get(k)) for p in variants.values()}) > 1]
        for params_hash, params in variants.items():
            if len(variants) == 1:
                labels[method, params_hash] = method
                continue
            shown = ",".join(f"{k}={params.get(k)}" for k in varying[:3])
            labels[method, params_hash] = f"{method}[{shown or params_hash[:8]}]"
    return labels


def _label(job: Job, names: dict[tuple[str, str], str]) -> str:
    return f"{names[job.method, job.params_hash]} · {job.dataset} · seed {job.seed}"


def compare_job(base: Job, cand: Job, settings: CompareSettings, label: str) -> JobResult:
    same_device = base.device_name is not None and base.device_name == cand.device_name
    timing_note = "" if same_device else "not gated: different devices"
    if not settings.gate_timing:
        timing_note = "not gated: timing gate off"
    out = JobResult(cand, label, "pass", base.device_name, same_device and settings.gate_timing)
    if cand.status != Status.OK:
        out.outcome = "regression" if base.status == Status.OK else "pass"
        out.note = cand.error or cand.status
        if base.status != Status.OK:
            out.note = f"failed in both: {out.note}"
        return out
    if base.status != Status.OK:
        out.outcome, out.note = "improvement", "failed in the baseline, ok now"
        return out
    for name in sorted(set(base.metrics) | set(cand.metrics)):
        if name in settings.ignore:
            continue
        rule = settings.rule(name)
        if name not in cand.metrics:
            res = judge_quality(rule, base.metrics[name], None)
            res.note = "missing in the candidate"
        elif name not in base.metrics:
            res = judge_quality(rule, None, cand.metrics[name])
            res.note = "new in the candidate"
        else:
            res = judge_quality(rule, base.metrics[name], cand.metrics[name])
        out.metrics.append(res)
    for name in sorted(set(base.timing) & set(cand.timing)):
        if name in settings.ignore:
            continue
        rule = settings.rule(name)
        out.metrics.append(
            judge_ratio(rule, base.timing[name], cand.timing[name], same_device, timing_note)
        )
    if any(m.counts_as_regression for m in out.metrics):
        out.outcome = "regression"
    elif any(m.gated and m.outcome == "improvement" for m in out.metrics):
        out.outcome = "improvement"
    return out


def _changed_params(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if repr(a.get(k)) != repr(b.get(k)))
    shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:4])
    return shown + (", ..." if len(keys) > 4 else "")


def compare_jobs(
    baseline: dict[JobKey, Job],
    candidate: dict[JobKey, Job],
    settings: CompareSettings | None = None,
    baseline_name: str = "baseline",
    candidate_name: str = "candidate",
) -> Comparison:
    settings = settings or CompareSettings()
    names = _variant_labels([*baseline.values(), *candidate.values()])
    jobs = [
        compare_job(baseline[k], candidate[k], settings, _label(candidate[k], names))
        for k in sorted(baseline.keys() & candidate.keys(), key=str)
    ]
    missing_keys = sorted(baseline.keys() - candidate.keys(), key=str)
    extra_keys = sorted(candidate.keys() - baseline.keys(), key=str)
    # A job "missing" beside an "extra" one of the same method, dataset and seed is usually the
    # same job with changed parameters: say which.
    extra_by_cell = {(k[0], k[2], k[3]): candidate[k] for k in extra_keys}
    missing = []
    for k in missing_keys:
        base = baseline[k]
        twin = extra_by_cell.get((k[0], k[2], k[3]))
        note = f"parameters changed ({_changed_params(base.params, twin.params)})" if twin else ""
        missing.append(Unmatched(base, _label(base, names), note))
    extra = [Unmatched(candidate[k], _label(candidate[k], names)) for k in extra_keys]
    return Comparison(baseline_name, candidate_name, settings, jobs, missing, extra)


def compare_records(
    baseline: list[dict[str, Any]],
    candidate: list[dict[str, Any]],
    settings: CompareSettings | None = None,
) -> Comparison:
    """Compare lists of records (as stored); see :func:`compare_paths` for folders."""
    return compare_jobs(
        jobs_from_records(baseline, "baseline"),
        jobs_from_records(candidate, "candidate"),
        settings,
    )


def compare_paths(
    baseline: Path, candidate: Path, settings: CompareSettings | None = None
) -> Comparison:
    return compare_jobs(
        load_jobs(baseline), load_jobs(candidate), settings, str(baseline), str(candidate)
    )


# -- same-machine determinism ------------------------------------------------------------------

#: Record fields that say when, where and how fast a job ran: they differ between two runs of
#: the same job on the same machine, everything else a job computes must not.
RERUN_VOLATILE_FIELDS = frozenset(
    {
        Field.STARTED_AT,
        Field.FINISHED_AT,
        Field.RUN_ID,
        Field.GIT_COMMIT,
        Field.TIMING,
        Field.LAUNCHER,
        "host",
        "pid",
    }
)
#: Same, for the keys inside nested fields (``fit_info``: train_seconds, train_steps_per_s, ...).
RERUN_VOLATILE_SUFFIXES = ("_seconds", "_per_s", "_mem_mb")


def _computed(value: Any, key: str = "") -> Any:
    """``value`` without its volatile parts: timing keys dropped, the wall-clock column of a
    loss curve (``[step, loss, seconds]`` rows) cut off."""
    if isinstance(value, dict):
        return {
            k: _computed(v, k)
            for k, v in value.items()
            if k not in RERUN_VOLATILE_FIELDS and not k.endswith(RERUN_VOLATILE_SUFFIXES)
        }
    if key == FitInfo.LOSS_CURVE and isinstance(value, list):
        return [row[:2] if isinstance(row, list) else row for row in value]
    if isinstance(value, list):
        return [_computed(v) for v in value]
    return value


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'the first' if k in a else 'the second'} run"
            found = _first_difference(a[k], b[k], f"{where}.{k}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    # repr: exact for floats (round-trip digits) and tells 1 from 1.0 and NaN from None.
    return None if repr(a) == repr(b) else f"{where}: {a!r} != {b!r}"


def _same_arrays(a: Path, b: Path) -> bool:
    """The arrays of two .npz files are bit-identical (the zip bytes are not: they hold the
    write time)."""
    with np.load(a) as x, np.load(b) as y:
        if sorted(x.files) != sorted(y.files):
            return False
        return all(
            x[k].dtype == y[k].dtype and x[k].shape == y[k].shape
            and x[k].tobytes() == y[k].tobytes()
            for k in x.files
        )  # fmt: skip


def rerun_differences(first: Path, second: Path) -> list[str]:
    """Everything two runs of the same jobs on the same machine computed differently, one line
    per job (empty: bit-identical). Compared: every record field except when/where/how fast it
    ran (:data:`RERUN_VOLATILE_FIELDS`), the per-image score and calibration files byte for
    byte, and the stored maps array by array. Tolerance 0: this is the proof that a seed fixes
    every number on one machine, which :func:`compare_paths` with a float tolerance cannot give.
    """
    a_store, b_store = RunStore(Path(first)), RunStore(Path(second))
    a_ids = {p.stem for p in a_store.jobs_dir.glob("*.json")}
    b_ids = {p.stem for p in b_store.jobs_dir.glob("*.json")}
    out = [f"{job}: only in {first}" for job in sorted(a_ids - b_ids)]
    out += [f"{job}: only in {second}" for job in sorted(b_ids - a_ids)]
    for job in sorted(a_ids & b_ids):
        a, b = a_store.read_record(job), b_store.read_record(job)
        if a is None or b is None:
            out.append(f"{job}: record unreadable in {first if a is None else second}")
            continue
        label = f"{job} ({a.get('method')}, seed {a.get('seed')})"
        found = _first_difference(_computed(a), _computed(b), "record")
        if found:
            out.append(f"{label}: {found}")
            continue
        for side in sorted(a_store.jobs_dir.glob(f"{job}.*")):
            if side.suffix == ".json":
                continue
            other = b_store.jobs_dir / side.name
            if not other.is_file():
                out.append(f"{label}: {side.name} only in {first}")
            elif side.suffix == ".npz" and not _same_arrays(side, other):
                out.append(f"{label}: {side.name} arrays differ")
            elif side.suffix != ".npz" and side.read_bytes() != other.read_bytes():
                out.append(f"{label}: {side.name} differs")
    return out


# -- writing ---------------------------------------------------------------------------------


def _job_identity(job: Job) -> dict[str, Any]:
    return {k: getattr(job, k) for k in KEY_FIELDS}


def to_json(cmp: Comparison) -> dict[str, Any]:
    """The machine-readable verdict (what ``--json`` writes)."""
    s = cmp.settings
    settings = asdict(s)
    settings["ignore"] = list(s.ignore)
    return {
        "verdict": cmp.verdict,
        "exit_code": cmp.exit_code,
        "baseline": cmp.baseline,
        "candidate": cmp.candidate,
        "reasons": cmp.reasons(),
        "counts": cmp.counts(),
        "settings": settings,
        "jobs": [
            {
                **_job_identity(j.job),
                "label": j.label,
                "outcome": j.outcome,
                "status": j.job.status,
                "note": j.note,
                "baseline_device": j.baseline_device,
                "candidate_device": j.job.device_name,
                "timing_gated": j.timing_gated,
                "metrics": [asdict(m) for m in j.metrics],
            }
            for j in cmp.jobs
        ],
        "missing": [
            {**_job_identity(u.job), "label": u.label, "note": u.note} for u in cmp.missing
        ],
        "extra": [{**_job_identity(u.job), "label": u.label} for u in cmp.extra],
    }


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _shown_metrics(j: JobResult, everything: bool) -> list[MetricResult]:
    return [m for m in j.metrics if everything or m.outcome != "pass" or (m.note and m.gated)]


def _metric_cells(m: MetricResult) -> list[str]:
    if m.family == "quality":
        change = UNDEFINED if m.change is None else signed(m.change)
        tol = f"{general(m.tolerance)} abs"
    else:
        change, tol = slowdown(m.change), f"{general(m.tolerance)}x"
    if m.gated:
        outcome = m.outcome
    else:  # a not-gated change is information: worse/better, not regression/improvement
        word = {"regression": "worse", "improvement": "better"}.get(m.outcome, m.outcome)
        outcome = f"{word} (not gated)"
    return [
        m.metric,
        significant(m.baseline),
        significant(m.candidate),
        change,
        tol,
        outcome,
        m.note,
    ]


METRIC_COLUMNS = ["metric", "baseline", "candidate", "change", "tolerance", "outcome", "note"]


def _devices(base: str | None, cand: str | None) -> str:
    return f"same ({base})" if base is not None and base == cand else f"{base} -> {cand}"


def to_markdown(cmp: Comparison, everything: bool = False) -> str:
    """A report for a CI job summary (``$GITHUB_STEP_SUMMARY``) or a pull-request comment."""
    c = cmp.counts()
    icon = "✅" if cmp.verdict == "pass" else "❌"
    lines = [
        f"## {icon} bench compare: {cmp.verdict.upper()}",
        "",
        f"baseline `{cmp.baseline}` · candidate `{cmp.candidate}` · "
        f"tolerances from {cmp.settings.source}",
        "",
        f"{c['jobs_compared']} job(s) compared: {c['jobs_regressed']} regressed "
        f"({c['failed_jobs']} failed), {c['metric_improvements']} metric improvement(s), "
        f"{c['missing_jobs']} missing, {c['extra_jobs']} extra; "
        f"{c['not_gated_changes']} change(s) reported but not gated.",
        "",
    ]
    if cmp.reasons():
        lines += ["**Why:**", "", *[f"- {_md_escape(r)}" for r in cmp.reasons()], ""]

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(_md_escape(x) for x in row) + " |" for row in rows]
        return [*out, ""]

    lines += ["### Jobs", ""]
    lines += table(
        ["job", "outcome", "devices", "note"],
        [
            [j.label, j.outcome, _devices(j.baseline_device, j.job.device_name), j.note]
            for j in cmp.jobs
        ],
    )
    for title, items in (("Missing from the candidate", cmp.missing), ("Extra", cmp.extra)):
        if items:
            lines += [f"### {title}", "", *[f"- {u.label} {u.note}".rstrip() for u in items], ""]
    rows = [[j.label, *_metric_cells(m)] for j in cmp.jobs for m in _shown_metrics(j, False)]
    if rows:
        lines += ["### Changes", "", *table(["job", *METRIC_COLUMNS], rows)]
    if everything or cmp.jobs:
        all_rows = [[j.label, *_metric_cells(m)] for j in cmp.jobs for m in j.metrics]
        lines += ["<details><summary>Every metric</summary>", ""]
        lines += table(["job", *METRIC_COLUMNS], all_rows)
        lines += ["</details>", ""]
    return "\n".join(lines)


#: The columns of :func:`verdict_rows`.
VERDICT_COLUMNS = ["job", *METRIC_COLUMNS]

#: A verdict row's tone (the console colours it): bad, good, quiet (not gated), notice, or "".
_TONE = {"regression": "bad", "changed": "bad", "improvement": "good", "pass": ""}


def _job_row(label: str, outcome: str, note: str) -> list[str]:
    return [label, "(job)", "", "", "", "", outcome, note]


def verdict_rows(cmp: Comparison, everything: bool = False) -> list[tuple[list[str], str]]:
    """The terminal's view of a verdict (:data:`VERDICT_COLUMNS`): the changed (or
    ``everything``) metrics, failed, missing and extra jobs; each row with its tone."""
    rows = []
    for j in cmp.jobs:
        if j.job.status != Status.OK or (j.note and not j.metrics):
            rows.append((_job_row(j.label, j.outcome, j.note), _TONE[j.outcome]))
        for m in _shown_metrics(j, everything):
            rows.append(([j.label, *_metric_cells(m)], _TONE[m.outcome] if m.gated else "quiet"))
    fail = cmp.settings.missing_jobs == "fail"
    rows += [(_job_row(u.label, "missing", u.note), "bad" if fail else "") for u in cmp.missing]
    rows += [(_job_row(u.label, "extra", ""), "notice") for u in cmp.extra]
    return rows


# -- updating a reference --------------------------------------------------------------------

_COPIED_SUFFIXES = (".json", ".scores.csv")


def update_reference(reference: Path, candidate: Path) -> int:
    """Make ``candidate`` (a run folder, or a folder of runs) the new ``reference``: its job
    records and per-image scores replace the reference's (the manifest too, for one run).
    Refuses a candidate with failed jobs. Returns the number of records written."""
    candidate, reference = Path(candidate), Path(reference)
    if not candidate.is_dir():
        raise DataError(f"{candidate}: --update needs a run folder as the candidate")
    if reference.exists() and not reference.is_dir():
        raise DataError(f"{reference}: --update needs a folder as the baseline")
    found = sorted(candidate.glob("jobs/*.json")) or sorted(candidate.glob("*/jobs/*.json"))
    # The one record reader: a damaged record is moved aside (and said so), not copied.
    read = {p: read_record_file(p, p.name.removesuffix(".json")) for p in found}
    files = [p for p, rec in read.items() if rec is not None]
    if not files:
        raise DataError(f"{candidate}: no job records (expected jobs/*.json or */jobs/*.json)")
    records = [r for r in read.values() if r is not None]
    failed = [r for r in records if r.get(Field.STATUS) != Status.OK]
    if failed:
        raise DataError(
            f"{candidate}: {len(failed)} failed job(s) (e.g. {failed[0].get('method')} seed "
            f"{failed[0].get('seed')}: {failed[0].get('error')}); not making it the reference"
        )
    jobs_from_records(records, candidate)  # refuses two records of one job
    jobs_dir = reference / "jobs"
    if jobs_dir.is_dir():
        for old in jobs_dir.iterdir():
            if old.is_file() and old.name.endswith(_COPIED_SUFFIXES):
                old.unlink()
    jobs_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        stem = path.name[: -len(".json")]
        shutil.copyfile(path, jobs_dir / path.name)
        scores = path.with_name(f"{stem}.scores.csv")
        if scores.is_file():
            shutil.copyfile(scores, jobs_dir / scores.name)
    manifest = candidate / "manifest.json"
    if manifest.is_file():
        shutil.copyfile(manifest, reference / "manifest.json")
    (reference / "records.csv").write_text(
        records_frame(records).to_csv(index=False), encoding="utf-8"
    )
    return len(records)


def write_reports(cmp: Comparison, markdown: Path | None, json_path: Path | None) -> None:
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(to_markdown(cmp), encoding="utf-8")
    if json_path is not None:
        write_json(json_path, to_json(cmp))
