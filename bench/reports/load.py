"""Stored records -> tidy pandas frames that every table and figure reads.

A results folder (one run, a folder of runs, or a ``records.csv``) is read with
:func:`bench.store.runs.load_results`; the per-job side files (``<job>.scores.csv`` for ROC curves,
``<job>.maps.npz`` for the qualitative grid) are found beside the job records. The tidy
layout follows benchopt's "one row per run" results table: long frames with one row per
(method, dataset, seed, metric) that groupby/aggregate into mean +- std over seeds.

Which rows are "the method" in the main table: a run may hold several parameter variants of a
method (an ablation). The *reference* variant of a method is the one run at its preset (a run
whose manifest has no ``--set`` for the method); failing that, the variant with most finished
jobs (ties: the one that started first). Parameters that differ between
the variants of a method are its ablation parameters.

>>> frame = pd.DataFrame({"method": ["m", "m"], "seed": [0, 1], "dataset": ["d", "d"],
...                       "metrics.f1": [0.6, 0.8], "status": ["ok", "ok"]})
>>> stats = summarize(tidy(frame, "metrics"), ["method", "dataset", "metric"])
>>> round(float(stats.at[("m", "d", "f1"), "mean"]), 3), int(stats.at[("m", "d", "f1"), "n"])
(0.7, 2)
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.store.runs import RunStore, load_results, run_folders
from bench.store.schema import AblationInfo, Config, Field, Flag, Manifest, Status, Timing, flat
from bench.util.errors import DataError


@dataclass
class RunData:
    """The records of one results source, deduplicated, with the paths of their side files."""

    source: Path
    records: pd.DataFrame  # flattened (metrics.f1, timing.fit_s, params.x), every status
    manifests: list[dict[str, Any]] = field(default_factory=list)
    jobs_dirs: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> pd.DataFrame:
        """The finished records as the tables see them: ``method`` is the table row
        (:func:`method_rows`; ``records`` keeps each record's own method name)."""
        rows = self._as_rows()
        if Field.STATUS not in rows:
            return rows
        return rows[rows[Field.STATUS] == Status.OK].reset_index(drop=True)

    @property
    def failed(self) -> pd.DataFrame:
        rows = self._as_rows()
        if Field.STATUS not in rows:
            return rows.iloc[:0]
        return rows[rows[Field.STATUS] != Status.OK].reset_index(drop=True)

    def _as_rows(self) -> pd.DataFrame:
        if ROW not in self.records:
            return self.records
        return self.records.assign(**{Field.METHOD: self.records[ROW]})

    def _side_file(self, job_id: str, suffix: str) -> Path | None:
        for folder in self.jobs_dirs:
            path = folder / f"{job_id}{suffix}"
            if path.exists():
                return path
        return None

    def scores(self, job_id: str) -> pd.DataFrame | None:
        """Per-test-image scores of one job (``name, defect_type, label, score[, decision]``)."""
        path = self._side_file(job_id, ".scores.csv")
        return None if path is None else pd.read_csv(path)

    def maps(self, job_id: str) -> dict[str, np.ndarray] | None:
        """The qualitative-grid arrays of one job (see :mod:`bench.evaluation.examples`)."""
        path = self._side_file(job_id, ".maps.npz")
        if path is None:
            return None
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}


#: Column of :func:`load_run`'s frame: the table row of a record (:func:`method_rows`).
ROW = "table_row"
#: Column of :func:`load_run`'s frame: the ablation axes a job lies on, "|"-separated ("" for
#: none). An axis is the parameters one sweep varied (``"image_size"``, ``"scorer, t"``); a job
#: found in several sweeps (their shared base point) lies on each of their axes.
AXES = "ablation_axes"


#: Column of :func:`load_run`'s frame: every run folder a job was found in, as a list of
#: ``{"run": run_id, "varied": {param: value}, "base": {param: value}}`` (``varied`` empty for a
#: plain run). The same job (same configuration, dataset and seed) stored by a sweep and by a
#: study is one row of the tables but a point of both: the sweep's grid and the study's preset.
MEMBERSHIPS = "memberships"


def _memberships(frame: pd.DataFrame) -> pd.Series:
    """Per record, its own membership (see :data:`MEMBERSHIPS`)."""
    varied, base = flat(Field.VARIED, ""), flat(Field.ABLATION, AblationInfo.BASE, "")
    params = [c.removeprefix(varied) for c in frame.columns if c.startswith(varied)]
    runs = frame[Field.RUN_ID] if Field.RUN_ID in frame else pd.Series("", index=frame.index)
    out = []
    for (_, row), run in zip(frame.iterrows(), runs, strict=True):
        here = {p: row[varied + p] for p in params if _given(row.get(varied + p))}
        out.append({"run": str(run), "varied": here, "base": {p: row.get(base + p) for p in here}})
    return pd.Series(out, index=frame.index, dtype=object)


def varied_axis(frame: pd.DataFrame) -> pd.Series:
    """Per record, the parameters its ablation varied, comma-joined; "" outside an ablation."""
    prefix = flat(Field.VARIED, "")
    columns = [c for c in frame.columns if c.startswith(prefix)]
    if not columns or frame.empty:
        return pd.Series("", index=frame.index, dtype=object)
    present = frame[columns].notna()
    return present.apply(
        lambda row: ", ".join(c.removeprefix(prefix) for c in columns if row[c]), axis=1
    )


def load_run(path: Path) -> RunData:
    """Read a run folder, a folder of run folders, a ``records.csv`` or one job ``.json``."""
    path = Path(path)
    frame = load_results(path)  # raises DataError naming the path when there is nothing
    if Field.JOB_ID in frame:
        axis = varied_axis(frame)
        frame[AXES] = frame[Field.JOB_ID].map(
            axis.groupby(frame[Field.JOB_ID]).agg(lambda a: "|".join(sorted(set(a))))
        )
        own = _memberships(frame)
        frame[MEMBERSHIPS] = frame[Field.JOB_ID].map(own.groupby(frame[Field.JOB_ID]).agg(list))
        if Field.FINISHED_AT in frame:
            # The same job found in two run folders is one measurement, not two seeds. The row
            # shown is a plain run's copy where there is one (its preset and timing: the job is
            # that run's configuration), else the latest; the ablations it lies on are kept in
            # MEMBERSHIPS.
            frame = (
                frame.assign(_plain=axis == "")
                .sort_values(["_plain", Field.FINISHED_AT], kind="stable")
                .drop_duplicates(Field.JOB_ID, keep="last")
                .drop(columns="_plain")
            )
        else:
            frame = frame.drop_duplicates(Field.JOB_ID, keep="last")
    for column in (Field.METHOD, Field.DATASET):
        if column not in frame:
            raise DataError(f"{path}: records lack the {column!r} field; not a bench results file")
    frame[ROW] = method_rows(frame)
    if Field.SEED not in frame:
        frame[Field.SEED] = 0
    if Field.PARAMS_HASH not in frame:
        frame[Field.PARAMS_HASH] = ""
    frame = frame.reset_index(drop=True)
    root = path.parent if path.is_file() else path
    if path.is_file() and root.name == "jobs":
        root = root.parent
    run_dirs = run_folders(root)
    manifests = []
    for run_dir in run_dirs:
        manifest = RunStore(run_dir).read_manifest()  # validated; None when absent or damaged
        if manifest is not None:
            manifests.append(manifest)
    frame = _in_run_order(frame, manifests)
    return RunData(path, frame, manifests, [d / "jobs" for d in run_dirs])


def _in_run_order(frame: pd.DataFrame, manifests: list[dict[str, Any]]) -> pd.DataFrame:
    """Methods and datasets in the order the runs asked for them (``--methods a,b``), so that
    tables list them as the user did; names no manifest knows come after, alphabetically."""
    keys = {}
    for column, config_key in ((Field.METHOD, Config.METHODS), (Field.DATASET, Config.DATASETS)):
        asked: list[str] = []
        for manifest in manifests:
            asked += [
                n
                for n in (manifest.get(Manifest.CONFIG) or {}).get(config_key, [])
                if n not in asked
            ]
        rest = sorted(set(frame[column].astype(str)) - set(asked))
        rank = {name: i for i, name in enumerate(asked + rest)}
        keys[f"_{column}_order"] = frame[column].astype(str).map(rank)
    ordered = frame.assign(**keys).sort_values(
        ["_method_order", "_dataset_order", Field.SEED], kind="stable"
    )
    return ordered.drop(columns=list(keys)).reset_index(drop=True)


def _as_list(value: Any) -> list[str]:
    """``flags`` is a list in JSON records and its repr in a ``records.csv``."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    if isinstance(value, str) and value.startswith("["):
        return [v.strip(" '\"") for v in value.strip("[]").split(",") if v.strip(" '\"")]
    return []


def weights_kind(flags: list[str]) -> str:
    """What a record's backbone weights are, from its flags: ``random init``, the substitute
    backbone's name (``efficientnet_lite0 (ImageNet)``), or "" for the method's own."""
    if Flag.RANDOM_WEIGHTS in flags:
        return "random init"
    backbones = Flag.backbones(flags)
    return backbones[0].removeprefix(Flag.BACKBONE_PREFIX) if backbones else ""


def method_rows(frame: pd.DataFrame) -> pd.Series:
    """The method column every table and figure groups by: a method run with different
    backbone weights in the same results (PatchCore on random-init and on ImageNet-Lite
    weights) is two methods there, ``patchcore (random init)`` and ``patchcore
    (efficientnet_lite0 (ImageNet))``, never one row mixing them; a method with one kind of
    weights keeps its name (its flags still mark it)."""
    kinds = flags_of(frame).map(weights_kind)
    methods = frame[Field.METHOD].astype(str)
    several = kinds.groupby(methods).transform("nunique") > 1
    named = methods + " (" + kinds + ")"
    return methods.where(~several | (kinds == ""), named)


def base_method(row_name: str) -> str:
    """The method of a :func:`method_rows` name: ``patchcore`` of ``patchcore (random init)``
    (registry names hold no space)."""
    return row_name.split(" (", 1)[0]


def flags_of(frame: pd.DataFrame) -> pd.Series:
    """Each record's flags as a list of strings (empty where there are none)."""
    if Field.FLAGS not in frame:
        return pd.Series([[] for _ in range(len(frame))], index=frame.index, dtype=object)
    return frame[Field.FLAGS].map(_as_list)


def random_init_methods(frame: pd.DataFrame) -> set[str]:
    """Methods with any record flagged ``weights:random`` (a random-init backbone)."""
    flags = flags_of(frame)
    return set(frame.loc[flags.map(lambda f: Flag.RANDOM_WEIGHTS in f), Field.METHOD])


def substituted_backbones(frame: pd.DataFrame, key: str = Field.METHOD) -> dict[str, list[str]]:
    """Rows (by ``key``) run on a substitute backbone -> its flag texts, e.g.
    ``{"patchcore": ["efficientnet_lite0 (ImageNet)"]}``."""
    out: dict[str, list[str]] = {}
    for row, flags in zip(frame[key], flags_of(frame), strict=True):
        for flag in Flag.backbones(flags):
            texts = out.setdefault(str(row), [])
            text = flag.removeprefix(Flag.BACKBONE_PREFIX)
            if text not in texts:
                texts.append(text)
    return out


def canonical(value: Any) -> str:
    """A hashable, comparable form of a parameter value (lists and dicts included)."""
    if isinstance(value, float) and np.isnan(value):
        return "null"
    if isinstance(value, np.generic):
        value = value.item()
    return json.dumps(value, sort_keys=True, default=str)


def param_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c for c in frame.columns if c.startswith(flat(Field.PARAMS, "")) and c != Field.PARAMS_HASH
    ]


def reference_variants(
    ok: pd.DataFrame, manifests: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    """method -> params_hash of the variant the main table shows (see the module docstring).

    Read from the run manifests, not the registry: a run whose config has no ``--set`` for a
    method ran it at its preset then, whatever the registry's defaults are today.
    """
    return {method: ranked.index[0] for method, ranked in _ranked_variants(ok, manifests).items()}


def preset_variants(
    ok: pd.DataFrame, manifests: list[dict[str, Any]] | None = None
) -> dict[str, set[str]]:
    """method -> params_hashes of its variants run exactly at a preset (no ``--set``, and an
    ablation's base grid point): the points a compute figure marks with the preset's name."""
    return {
        method: {h for h, at in ranked["preset"].items() if at}
        for method, ranked in _ranked_variants(ok, manifests).items()
    }


def _ranked_variants(
    ok: pd.DataFrame, manifests: list[dict[str, Any]] | None
) -> dict[str, pd.DataFrame]:
    """Per method, its variants (index: params_hash) with ``preset`` (run at a preset),
    ``count`` (finished jobs) and ``first`` (start order), best reference first."""
    untouched_runs = {
        (str(m.get(Manifest.RUN_ID)), str(method))
        for m in manifests or []
        for method in (m.get(Manifest.CONFIG) or {}).get(Config.METHODS, [])
        if not ((m.get(Manifest.CONFIG) or {}).get(Config.SETS) or {}).get(method)
    }
    out: dict[str, pd.DataFrame] = {}
    order = (
        ok[Field.STARTED_AT]
        if Field.STARTED_AT in ok
        else pd.Series(range(len(ok)), index=ok.index)
    )
    for method, rows in ok.groupby(Field.METHOD, sort=False):
        hashes = rows[Field.PARAMS_HASH].astype(str)
        # a job lies at a preset when any run it was found in set nothing for the method and
        # ran it there as is (a plain run) or as its ablation's base grid point
        members = (
            rows[MEMBERSHIPS] if MEMBERSHIPS in rows else _memberships(rows).map(lambda m: [m])
        )
        at_preset = [
            any((m["run"], str(method)) in untouched_runs and _at_base(m) for m in ms)
            for ms in members
        ]
        stats = pd.DataFrame({"hash": hashes, "order": order.loc[rows.index], "preset": at_preset})
        stats = stats.groupby("hash").agg(
            preset=("preset", "any"), count=("order", "size"), first=("order", "min")
        )
        ranked = stats.sort_values(["preset", "count", "first"], ascending=[False, False, True])
        out[str(method)] = ranked
    return out


def _at_base(membership: dict[str, Any]) -> bool:
    """A plain run's job, or an ablation's base grid point (every varied value at its base)."""
    return all(_same(v, membership["base"].get(p)) for p, v in membership["varied"].items())


def _given(value: Any) -> bool:
    return not (value is None or (isinstance(value, float) and np.isnan(value)))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        return float(a) == float(b)  # 100 and 100.0: a frame column with gaps is float
    # lists (tuples in JSON) may come back as lists or their string form from a CSV
    return json.dumps(a, default=str) == json.dumps(b, default=str) or str(a) == str(b)


def reference_rows(ok: pd.DataFrame, refs: dict[str, str]) -> pd.DataFrame:
    """The records of each method's reference variant."""
    keep = ok[Field.PARAMS_HASH].astype(str) == ok[Field.METHOD].map(refs).astype(str)
    return ok[keep]


MAIN_TABLE_SETTING = "its main-table setting"


@dataclass(frozen=True)
class Ablation:
    """One parameter of one method that varies in the records; ``rows`` hold the one-at-a-time
    sweep (every other parameter fixed, as ``fixed_at`` says), with a ``value`` column;
    ``reference`` is the value of the sweep's base point."""

    method: str
    param: str
    reference: Any
    rows: pd.DataFrame
    fixed_at: str = MAIN_TABLE_SETTING
    name: str = ""

    @property
    def numeric(self) -> bool:
        return pd.api.types.is_numeric_dtype(self.rows["value"]) and not pd.api.types.is_bool_dtype(
            self.rows["value"]
        )

    @property
    def key(self) -> str:
        """``<method>_<param>`` (and a suffix where one parameter has several sweeps)."""
        return self.name or f"{self.method}_{self.param}"


def ablations(ok: pd.DataFrame, refs: dict[str, str]) -> list[Ablation]:
    """The one-parameter sweeps in the records, per method.

    Records of ``bench ablate`` say which parameters their grid varied and where its base is:
    each varied parameter is a sweep of the records that share every other parameter (the
    other grid parameters at the base), whichever runs they come from. A report over several
    ablations (a sweep at one preset, a study at another) so shows each sweep, and never a
    comparison the records did not design. Records of plain runs (several ``--set`` variants of
    a method) are compared with the method's reference variant, one parameter at a time.
    """
    found: list[Ablation] = []
    for method, rows in ok.groupby(Field.METHOD, sort=True):
        members = (
            rows[MEMBERSHIPS]
            if MEMBERSHIPS in rows
            else pd.Series([[] for _ in range(len(rows))], index=rows.index, dtype=object)
        )
        swept = members.map(lambda ms: any(m["varied"] for m in ms)).astype(bool)
        plain = members.map(lambda ms: not ms or any(not m["varied"] for m in ms)).astype(bool)
        found += _recorded_sweeps(str(method), rows[swept], refs.get(str(method)))
        found += _inferred_sweeps(str(method), rows[plain], refs.get(str(method)))
    return _named(found)


def _named(found: list[Ablation]) -> list[Ablation]:
    """Unique keys: the second sweep of one parameter is ``<method>_<param>_2``, and so on."""
    seen: dict[str, int] = {}
    out = []
    for ablation in found:
        key = f"{ablation.method}_{ablation.param}"
        seen[key] = seen.get(key, 0) + 1
        name = key if seen[key] == 1 else f"{key}_{seen[key]}"
        out.append(dataclasses.replace(ablation, name=name))
    return out


def _recorded_sweeps(method: str, rows: pd.DataFrame, ref_hash: str | None) -> list[Ablation]:
    """Each grid parameter of each `bench ablate` run the jobs belong to (a job stored by two
    runs lies on both) is a sweep of the jobs that share every other parameter."""
    if rows.empty:
        return []
    canon = rows[param_columns(rows)].map(canonical)
    others_of: dict[str, pd.Series] = {}  # param -> per row, every other parameter's value

    def others(p: str) -> pd.Series:
        if p not in others_of:
            rest = canon.drop(columns=flat(Field.PARAMS, p), errors="ignore")
            others_of[p] = pd.Series(list(rest.itertuples(index=False, name=None)), rows.index)
        return others_of[p]

    buckets: dict[tuple[str, tuple[str, ...]], dict[Any, Any]] = {}
    for index, members in rows[MEMBERSHIPS].items():
        for m in members:
            varied, base = m["varied"], m["base"]
            for p in varied:
                if not all(_same(varied[q], base.get(q)) for q in varied if q != p):
                    continue  # a cartesian grid point off this parameter's line through the base
                buckets.setdefault((p, others(p)[index]), {})[index] = base.get(p)
    found = []
    for (p, line), points in buckets.items():
        column = flat(Field.PARAMS, p)
        _add_base_points(rows, others(p).map(line.__eq__), column, points)
        sweep = rows.loc[list(points)].copy()
        if column not in sweep or sweep[Field.PARAMS_HASH].nunique() < 2:
            continue
        main = sweep[Field.PARAMS_HASH].astype(str) == ref_hash
        at_main = ref_hash is not None and bool(main.any())
        # the marked point: the main table's where the sweep passes through it, else the base
        # (the rows' own value: a column with gaps holds 150.0 where the base is 150)
        marked = main if at_main else [_same(v, points[i]) for i, v in sweep[column].items()]
        reference = sweep.loc[marked, column].iloc[0] if any(marked) else None
        presets = (
            sorted(set(sweep[Field.PRESET].dropna().astype(str))) if Field.PRESET in sweep else []
        )
        fixed_at = (
            MAIN_TABLE_SETTING
            if at_main
            else "the base of its ablation" + (f" (preset {', '.join(presets)})" if presets else "")
        )
        found.append(_ablation(method, column, reference, sweep, fixed_at))
    return sorted(found, key=lambda a: (a.fixed_at != MAIN_TABLE_SETTING, a.param))


def _add_base_points(
    rows: pd.DataFrame, on_line: pd.Series, column: str, points: dict[Any, Any]
) -> None:
    """The sweep's base point where another run computed it: `bench ablate` runs only its grid,
    so a sweep whose base is not a grid value (DRAEM at 64 px around the 128-px epoch of an
    earlier sweep) would otherwise lose the point it is read against. ``on_line``: the rows
    with every other parameter at the sweep's. Only on the datasets and seeds the sweep ran,
    so that its rows stay like for like."""
    if column not in rows:
        return
    key = [Field.DATASET, Field.SEED]
    ran = set(rows.loc[list(points), key].itertuples(index=False, name=None))
    bases = [b for b in points.values() if b is not None]
    for index in rows.index[on_line.to_numpy(bool)]:
        if index in points or tuple(rows.loc[index, key]) not in ran:
            continue
        base = next((b for b in bases if _same(rows.at[index, column], b)), None)
        if base is not None:
            points[index] = base


def _inferred_sweeps(method: str, rows: pd.DataFrame, ref_hash: str | None) -> list[Ablation]:
    if rows.empty or ref_hash is None or rows[Field.PARAMS_HASH].nunique() < 2:
        return []
    canon = rows[param_columns(rows)].map(canonical)
    varying = [c for c in canon.columns if canon[c].nunique() > 1]
    ref_rows = rows[rows[Field.PARAMS_HASH].astype(str) == ref_hash]
    if ref_rows.empty:
        return []
    ref_canon = canon.loc[ref_rows.index[0]]
    found = []
    for column in varying:
        others = [c for c in varying if c != column]
        keep = (canon[others] == ref_canon[others]).all(axis=1) if others else canon[column].notna()
        sweep = rows[keep].copy()
        if sweep[Field.PARAMS_HASH].nunique() < 2:
            continue
        found.append(_ablation(method, column, ref_rows[column].iloc[0], sweep, MAIN_TABLE_SETTING))
    return found


def _ablation(
    method: str, column: str, reference: Any, sweep: pd.DataFrame, fixed_at: str
) -> Ablation:
    sweep["value"] = sweep[column]
    values = sweep["value"]
    if pd.api.types.is_float_dtype(values) and values.notna().all() and (values % 1 == 0).all():
        # a count read through a column with gaps (other methods lack it): 20, not 20.0
        sweep["value"] = values.astype(int)
        reference = None if reference is None else int(reference)
    if not pd.api.types.is_numeric_dtype(sweep["value"]):
        sweep["value"] = sweep["value"].map(_display_value)
        reference = _display_value(reference)
    param = column.removeprefix(flat(Field.PARAMS, ""))
    return Ablation(method=method, param=param, reference=reference, rows=sweep, fixed_at=fixed_at)


def _display_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)


def tidy(frame: pd.DataFrame, field: str = Field.METRICS) -> pd.DataFrame:
    """Long frame: the identifying columns + ``metric`` (the key inside ``field``) + ``value``.

    Only numeric columns of ``field`` are kept (``timing.latency_ms`` lists are not).
    """
    prefix = flat(field, "")
    ids = [
        c
        for c in (Field.JOB_ID, Field.METHOD, Field.PARAMS_HASH, Field.DATASET, Field.SEED, "value")
        if c in frame
    ]
    columns = [
        c for c in frame.columns if c.startswith(prefix) and pd.api.types.is_numeric_dtype(frame[c])
    ]
    if not columns:
        return pd.DataFrame(columns=[*ids, "metric", "value"])
    wide = frame[ids + columns].rename(
        columns=lambda c: c.removeprefix(prefix) if c in columns else c
    )
    if "value" in ids:  # an ablation's parameter value: keep it apart from the metric values
        wide = wide.rename(columns={"value": "param_value"})
        ids = [("param_value" if c == "value" else c) for c in ids]
    long = wide.melt(id_vars=ids, var_name="metric", value_name="value")
    return long.astype({"value": float})


def summarize(long: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """mean, std (sample, ddof=1; NaN for one seed) and n (finite values) per group."""
    grouped = long.groupby(by, sort=False, dropna=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count")


def latency_long(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per timed single-image call: ``method, dataset, seed, ms``.

    Records from before the runner kept every repeat (``timing.latency_ms``) give their median
    (``timing.ms_per_image``) as a single repeat, so old runs still plot, without spread.
    """
    out = []
    for _, rec in rows.iterrows():
        repeats = rec.get(flat(Field.TIMING, Timing.LATENCY_MS))
        values = _as_floats(repeats)
        if not values and np.isfinite(rec.get(flat(Field.TIMING, Timing.MS_PER_IMAGE), np.nan)):
            values = [float(rec[flat(Field.TIMING, Timing.MS_PER_IMAGE)])]
        out += [(rec[Field.METHOD], rec[Field.DATASET], rec[Field.SEED], v) for v in values]
    return pd.DataFrame(out, columns=[Field.METHOD, Field.DATASET, Field.SEED, "ms"])


def _as_floats(value: Any) -> list[float]:
    if isinstance(value, list | tuple | np.ndarray):
        return [float(v) for v in value]
    if isinstance(value, str) and value.startswith("["):  # a list read back from records.csv
        return [float(v) for v in value.strip("[]").split(",") if v.strip()]
    return []


def scores_long(data: RunData, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-test-image scores of ``rows``' jobs: ``method, dataset, seed, label, score``."""
    parts = []
    for _, rec in rows.iterrows():
        scores = data.scores(str(rec.get(Field.JOB_ID)))
        if scores is None or scores.empty:
            continue
        parts.append(
            scores[["label", "score"]].assign(
                method=rec[Field.METHOD], dataset=rec[Field.DATASET], seed=rec[Field.SEED]
            )
        )
    if not parts:
        return pd.DataFrame(columns=[Field.METHOD, Field.DATASET, Field.SEED, "label", "score"])
    return pd.concat(parts, ignore_index=True)


def grid_long(data: RunData, rows: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The qualitative-grid thumbnails of one dataset: one row per (method, image) with
    ``method, name, defect_type, image, mask, map`` (arrays in object columns).

    One job per method (its lowest seed): the maps of different seeds look alike, and the grid
    is about where a method looks, not about variance.
    """
    out = []
    subset = rows[rows[Field.DATASET] == dataset].sort_values(Field.SEED, kind="stable")
    for method, recs in subset.groupby(Field.METHOD, sort=False):
        arrays = data.maps(str(recs[Field.JOB_ID].iloc[0])) if Field.JOB_ID in recs else None
        if arrays is None:
            continue
        for k, name in enumerate(arrays["names"]):
            out.append(
                {
                    Field.METHOD: method,
                    "name": str(name),
                    "defect_type": str(arrays["defect_types"][k]),
                    "image": arrays["images"][k],
                    "mask": arrays["masks"][k] if "masks" in arrays else None,
                    "map": arrays["maps"][k].astype(np.float32) if "maps" in arrays else None,
                }
            )
    return pd.DataFrame(
        out,
        columns=[Field.METHOD, "name", "defect_type", "image", "mask", "map"],
    )
