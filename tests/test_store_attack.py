"""The store under attack (issue #24): the seven reproductions, the minor items, and a property
test over damaged run folders (any job record, and sometimes the manifest too).

Every case ends in one line, the right exit code, and no data lost: nothing is written outside
the results folder or into a folder that is not a bench run, a damaged record is moved aside
(never deleted) and recomputed, workers die with their parent, and an undefined metric is null.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import bench_exit_code
from helpers import bench_output as bench
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability import layout, spawn, traced, wait_for

from bench.store.runs import RunStore
from bench.store.schema import manifest_problem, record_problem

# A tiny folder dataset and the cheapest method: a job takes a fraction of a second.
RUN = ["run", "--methods", "meandiff", "--timing-repeats", "1", "--device", "cpu"]
RUN += ["--set", "meandiff.maps=false", "--datasets", "prints3d"]


def run_argv(data: Path, results: Path, seeds: str = "0-2", run_id: str = "base") -> list[str]:
    return [*RUN, "--data-root", str(data), "--seeds", seeds, "--results-dir", str(results),
            "--run-id", run_id]  # fmt: skip


def job_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "jobs").glob("*.json"))


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _no_image(fig, stem):
    """charts.save_figure without the rendering (seconds per report, and not under test)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    paths = [Path(stem).with_suffix(suffix) for suffix in (".pdf", ".png")]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return paths


@pytest.fixture(autouse=True)
def fast_figures(monkeypatch):
    from bench.reports import charts

    monkeypatch.setattr(charts, "save_figure", _no_image)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, results folder holding the finished run ``base``): made once."""
    from helpers import register_meandiff

    register_meandiff()
    root = tmp_path_factory.mktemp("attack")
    data = layout(root / "data", n_train=8)
    assert bench_exit_code(run_argv(data, root / "results")) == 0
    return data, root / "results"


@pytest.fixture
def run_copy(base_run, tmp_path, meandiff) -> tuple[Path, Path]:
    """(data folder, run folder): a private copy of the finished run."""
    data, results = base_run
    shutil.copytree(results, tmp_path / "results")
    return data, tmp_path / "results" / "base"


# ---------------------------------------------------------------------------------------------
# 1. --run-id is one safe folder name; a folder that is not a bench run is never written into


@pytest.mark.parametrize("run_id", ["../../important", "ABSOLUTE", "a/b", "..", ".hidden", ""])
def test_run_id_must_be_one_safe_folder_name(run_id, tmp_path, capsys, meandiff):
    results = tmp_path / "deep" / "er" / "results"
    run_id = str(tmp_path / "elsewhere") if run_id == "ABSOLUTE" else run_id
    code, _, err = bench(run_argv(tmp_path / "data", results, run_id=run_id), capsys)
    assert code == 2 and "--run-id" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_a_folder_that_is_not_a_bench_run_is_never_written_into(tmp_path, capsys, meandiff):
    data = layout(tmp_path / "data")
    results = tmp_path / "results"
    foreign = results / "important"
    foreign.mkdir(parents=True)
    (foreign / "manifest.json").write_text('{"project": "someone else\'s"}\n')
    (foreign / "records.csv").write_text("precious,data\n1,2\n")
    before = {p.name: p.read_bytes() for p in foreign.iterdir()}
    code, _, err = bench(run_argv(data, results, run_id="important"), capsys)
    assert code == 2 and "not a bench run folder" in one_error_line(err)
    assert {p.name: p.read_bytes() for p in foreign.iterdir()} == before
    # Without any manifest, other files: not ours either. An empty folder is fine.
    (foreign / "manifest.json").unlink()
    code, _, err = bench(run_argv(data, results, run_id="important"), capsys)
    assert code == 2 and "no bench manifest" in one_error_line(err)
    (results / "empty").mkdir()
    assert bench(run_argv(data, results, run_id="empty"), capsys)[0] == 0


# ---------------------------------------------------------------------------------------------
# 2. Workers die with their parent


def test_workers_die_when_the_parent_is_killed(tmp_path):
    data = layout(tmp_path / "data")
    trace = tmp_path / "trace.txt"
    argv = [*run_argv(data, tmp_path / "results", seeds="0-1"), "--workers", "2"]
    proc = spawn(argv, {"MEANDIFF_TRACE": str(trace), "MEANDIFF_SLEEP_S": "300"})
    wait_for(lambda: len(traced(trace)) == 2, proc, timeout=240)  # both workers inside a job
    workers = [psutil.Process(pid) for _, pid in traced(trace)]
    assert all(w.ppid() == proc.pid for w in workers)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    def alive(w: psutil.Process) -> bool:
        try:
            return w.is_running() and w.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [w.pid for w in workers if alive(w)]
    for w in workers:  # never leave our own processes behind, even when the test fails
        if alive(w):
            w.kill()
    assert not survivors, f"workers {survivors} outlived their parent"


# ---------------------------------------------------------------------------------------------
# 3-5. Damaged records and manifests: one reader, one warning, moved aside, recomputed


READ_COMMANDS = ("show", "status", "history", "compare", "report")


def read_commands(run_dir: Path, pristine: Path, out: Path) -> list[list[str]]:
    return [
        ["show", str(run_dir)],
        ["status", str(run_dir), "--verbose"],
        ["history", str(run_dir.parent)],
        ["compare", str(pristine), str(run_dir)],
        ["report", str(run_dir), "--out", str(out)],
    ]


@pytest.mark.parametrize(
    "damage",
    [b"[]", b'{"job_id": "trunc', b"", b"\x00\xff garbage", b'{"auroc": 1}'],
    ids=["json-array", "truncated", "empty", "bytes", "foreign-object"],
)
def test_damaged_record_is_moved_aside_once_and_recomputed(damage, run_copy, base_run, capsys):
    data, run_dir = run_copy
    victim = job_files(run_dir)[1]
    victim.write_bytes(damage)
    code, out, err = bench(["show", str(run_dir)], capsys)
    assert code == 0 and "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and victim.name in warnings[0] and "moved aside" in warnings[0]
    (aside,) = victim.parent.glob(f"{victim.name}.damaged-*")
    assert aside.read_bytes() == damage  # nothing deleted
    for argv in read_commands(run_dir, base_run[1] / "base", run_dir.parent / "report")[1:]:
        code, _, err = bench(argv, capsys)
        assert code in (0, 1) and "Traceback" not in err and "warning" not in err, argv
    code, out, err = bench(run_argv(data, run_dir.parent), capsys)
    assert code == 0 and "2 already done, skipped" in out and "warning" not in err
    assert record_problem(json.loads(victim.read_text()), victim.stem) is None


def test_non_numeric_metric_does_not_crash_show_or_run(run_copy, capsys):
    data, run_dir = run_copy
    victim = job_files(run_dir)[0]
    record = json.loads(victim.read_text())
    record["metrics"]["auroc"] = "abc"
    victim.write_text(json.dumps(record))
    code, _, err = bench(["show", str(run_dir)], capsys)
    assert code == 0 and "metrics.auroc: 'abc' is not of type" in err
    code, _, err = bench(run_argv(data, run_dir.parent), capsys)  # its closing table
    assert code == 0 and "Traceback" not in err
    assert isinstance(json.loads(victim.read_text())["metrics"]["auroc"], float)


def test_truncated_manifest_is_rebuilt_and_report_survives(run_copy, base_run, capsys):
    data, run_dir = run_copy
    manifest = run_dir / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    job_files(run_dir)[2].write_text(json.dumps({"job_id": "x"})[:7])
    code, _, err = bench(["report", str(run_dir), "--out", str(run_dir.parent / "r")], capsys)
    assert code == 0 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("warning: ")]) == 2
    assert list(run_dir.glob("manifest.json.damaged-*"))
    code, _, err = bench(run_argv(data, run_dir.parent), capsys)
    assert code == 0, err
    rebuilt = json.loads(manifest.read_text())
    assert manifest_problem(rebuilt) is None and rebuilt["finished_at"]
    assert sorted(rebuilt["jobs"]) == sorted(p.stem for p in job_files(run_dir))


# ---------------------------------------------------------------------------------------------
# 6. Seeds in the range every library accepts, checked before anything runs


@pytest.mark.parametrize("seeds", ["99999999999", "0-4294967296", "0-99999999"])
def test_out_of_range_seeds_fail_at_parse_time(seeds, tmp_path, capsys, meandiff):
    argv = [*RUN, "--seeds", seeds, "--results-dir", str(tmp_path / "results")]
    code, _, err = bench(argv, capsys)
    assert code == 2 and "--seeds" in one_error_line(err)
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------
# 7. Undefined metrics are null, flagged and said, never 0


def test_test_set_without_anomalies_gives_null_not_zero(tmp_path, capsys, meandiff):
    data = layout(tmp_path / "data", n_train=8)
    shutil.rmtree(data / "test" / "crack")
    shutil.rmtree(data / "ground_truth")
    code, out, err = bench(run_argv(data, tmp_path / "results", seeds="0"), capsys)
    assert code == 0
    (line,) = [x for x in err.splitlines() if x.startswith("warning: ")]
    assert "recall" in line and "no anomalous test image" in line
    assert "undefined on the test set" in out  # the table's footnote
    (path,) = job_files(tmp_path / "results" / "base")
    record = json.loads(path.read_text())
    for name in ("precision", "recall", "f1", "auroc", "calibrated_recall", "own_f1"):
        assert record["metrics"][name] is None, name
    assert record["metrics"]["accuracy"] is not None
    assert "metrics:undefined" in record["flags"]
    assert record["undefined_metrics"]["recall"] == "no anomalous test image"


# ---------------------------------------------------------------------------------------------
# Minor items


def test_local_records_say_host_and_pid(run_copy):
    for path in job_files(run_copy[1]):
        launcher = json.loads(path.read_text())["launcher"]
        assert launcher["name"] == "local" and launcher["host"] and launcher["pid"] > 0


def test_missing_pretrained_weights_fail_before_any_job(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    results = tmp_path / "results"
    argv = ["run", "--methods", "patchcore", "--device", "cpu", "--results-dir", str(results)]
    code, _, err = bench(argv, capsys)
    line = one_error_line(err)
    assert code == 2 and "patchcore: pretrained weights not found locally" in line
    assert "--set patchcore.weights=random" in line
    assert not results.exists()  # nothing recorded


# ---------------------------------------------------------------------------------------------
# The property: any damage to a job record is survived by every reader, and a rerun recomputes
# exactly the damaged jobs

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["job_id", "status", "method", "dataset", "seed", "metrics", "metrics_ci", "timing",
          "flags", "launcher", "params", "params_hash", "per_defect", "started_at", "finished_at",
          "error", "run_id", "thresholds", "undefined_metrics"]  # fmt: skip


MANIFEST_FIELDS = ["run_id", "config_hash", "config", "jobs", "job_labels", "seeds", "name",
                   "created_at", "finished_at", "launcher"]  # fmt: skip


@st.composite
def damages(draw: st.DrawFn, original: bytes, fields: list[str]) -> bytes:
    """What a JSON file of the store may become: random bytes, a truncation, any JSON value, or
    the original with one of ``fields`` (or one metric of a record) replaced by any JSON value."""
    kinds = ["bytes", "truncate", "json", "field", *(["metric"] if "metrics" in fields else [])]
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "truncate":
        return original[: draw(st.integers(0, len(original) - 1))]
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    value = json.loads(original)
    if kind == "field":
        value[draw(st.sampled_from(fields))] = draw(JSON_VALUES)
    else:
        value["metrics"][draw(st.sampled_from(sorted(value["metrics"])))] = draw(JSON_VALUES)
    return json.dumps(value).encode()


def _usable(data: bytes, job_id: str) -> dict | None:
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return record if record_problem(record, job_id) is None else None


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_reader_survives_any_damaged_record(data, base_run, tmp_path, capsys):
    from helpers import register_meandiff

    register_meandiff()
    data_root, pristine_results = base_run
    pristine = pristine_results / "base"
    example = Path(tempfile.mkdtemp(dir=tmp_path))  # tmp_path is shared by the examples
    shutil.copytree(pristine_results, example / "results")
    run_dir = example / "results" / "base"
    files = job_files(run_dir)
    victim = files[data.draw(st.integers(0, len(files) - 1), label="job")]
    damaged = data.draw(damages(victim.read_bytes(), FIELDS), label="damage")
    victim.write_bytes(damaged)
    usable = _usable(damaged, victim.stem)
    before = {p.name: p.read_bytes() for p in files}  # the victim as damaged
    manifest_path = run_dir / "manifest.json"
    if data.draw(st.booleans(), label="manifest damaged too"):
        manifest_path.write_bytes(
            data.draw(damages(manifest_path.read_bytes(), MANIFEST_FIELDS), label="manifest")
        )

    for argv in read_commands(run_dir, pristine, example / "report"):
        code, _, err = bench(argv, capsys)
        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
    if usable is None:  # moved aside, whole, once
        (aside,) = run_dir.glob("jobs/*.damaged-*")
        assert aside.read_bytes() == damaged
    assert len(list(run_dir.glob("manifest.json.damaged-*"))) <= 1

    code, _, err = bench(run_argv(data_root, example / "results"), capsys)
    assert code == 0, err
    after = {p.name: p.read_bytes() for p in job_files(run_dir)}
    recomputed = {name for name, text in after.items() if before.get(name) != text}
    rerun = usable is None or usable.get("status") != "ok"
    assert recomputed == ({victim.name} if rerun else set())
    records = RunStore(run_dir).records()
    assert len(records) == 3 and all(r["status"] == "ok" for r in records)
    assert len(pd.read_csv(run_dir / "records.csv")) == 3
    manifest = json.loads(manifest_path.read_text())  # valid again, rebuilt if it was damaged
    assert manifest_problem(manifest) is None and manifest["finished_at"]
    assert {r["job_id"] for r in records} <= set(manifest["jobs"])
