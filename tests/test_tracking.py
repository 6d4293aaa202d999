"""MLflow export against a real MLflow (a temporary SQLite store): what is logged equals what
the records say, exports are idempotent, and the errors name the flag or the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import bench_exit_code

from bench.reports import tracking
from bench.store.runs import RunStore
from bench.util.errors import ConfigError, DataError

mlflow = pytest.importorskip("mlflow")


def _run(results: Path, seeds: str) -> Path:
    argv = ["run", "--methods", "meandiff", "--datasets", "synthetic", "--seeds", seeds]
    argv += ["--preset", "quick", "--results-dir", str(results), "--run-id", "tiny"]
    assert bench_exit_code(argv) == 0
    return results / "tiny"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def _children(client: mlflow.MlflowClient, experiment_id: str, parent: str) -> list:
    query = f"tags.`{tracking.PARENT_TAG}` = '{parent}'"
    return client.search_runs([experiment_id], filter_string=query)


def test_export_logs_every_record_field_it_promises(meandiff, tmp_path: Path, uri: str) -> None:
    run_dir = _run(tmp_path / "results", "0,1")
    records = {r["job_id"]: r for r in RunStore(run_dir).records()}
    result = tracking.export_run(run_dir, uri)
    assert set(result.logged) == set(records) and not result.skipped

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags[tracking.RUN_TAG] == "tiny"
    children = _children(client, result.experiment_id, result.parent_run_id)
    assert len(children) == len(records) == 2
    for child in children:
        record = records[child.data.tags[tracking.JOB_TAG]]
        data = child.data
        # params: every effective parameter, as text, plus the identity
        for name, value in record["params"].items():
            assert data.params[f"params.{name}"] == (
                value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            )
        assert data.params["seed"] == str(record["seed"])
        assert data.params["method"] == "meandiff"
        # metrics: every finite metric, its interval bounds, timings
        for name, value in record["metrics"].items():
            if value is not None:
                assert data.metrics[name] == pytest.approx(value)
        low, high = record["metrics_ci"]["auroc"]
        assert data.metrics["auroc.ci_low"] == pytest.approx(low)
        assert data.metrics["auroc.ci_high"] == pytest.approx(high)
        assert data.metrics["timing.ms_per_image"] == pytest.approx(
            record["timing"]["ms_per_image"]
        )
        # tags
        assert data.tags["method"] == "meandiff"
        assert data.tags["seed"] == str(record["seed"])
        assert data.tags["preset"] == record["preset"]
        assert data.tags["flags"] == ", ".join(record["flags"])
        assert data.tags["threshold_rule"] == record["threshold_rule"]
        assert data.tags["git_commit"] == str(record["git_commit"])
        assert child.info.status == "FINISHED"
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        job = record["job_id"]
        assert artifacts == {f"{job}.json", f"{job}.scores.csv", f"{job}.qualitative.png"}


def test_export_twice_adds_nothing_and_new_jobs_join_the_same_parent(
    meandiff, tmp_path: Path, uri: str
) -> None:
    results = tmp_path / "results"
    first = tracking.export_run(_run(results, "0"), uri)
    again = tracking.export_run(results / "tiny", uri)
    assert not again.logged and again.skipped == first.logged
    assert again.parent_run_id == first.parent_run_id

    grown = tracking.export_run(_run(results, "0,1"), uri)  # the run resumed with one more seed
    assert len(grown.logged) == 1 and grown.skipped == first.logged
    assert grown.parent_run_id == first.parent_run_id
    client = mlflow.MlflowClient(uri)
    assert len(client.search_runs([first.experiment_id])) == 1 + 2  # one parent, two jobs


def test_live_logging_of_record_files_is_the_same_export(meandiff, tmp_path: Path, uri: str):
    run_dir = _run(tmp_path / "results", "0")
    tracker = tracking.Tracker(uri)
    paths = sorted((run_dir / "jobs").glob("*[0-9a-f].json"))
    ids = tracking.log_records(tracker, paths)
    assert len(ids) == 1
    # a later export of the stored run finds the job logged live
    assert tracking.export_run(run_dir, uri).skipped == {paths[0].stem: ids[0]}


def test_without_mlflow_the_flag_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r'pip install "radar-bench\[mlflow\]"'):
        tracking.require_mlflow()


def test_a_folder_without_records_is_named(tmp_path: Path, uri: str) -> None:
    with pytest.raises(DataError, match=str(tmp_path)):
        tracking.export_run(tmp_path, uri)
    (tmp_path / "jobs").mkdir()
    with pytest.raises(DataError, match="no job records"):
        tracking.export_run(tmp_path, uri)


def test_default_store_is_a_local_sqlite_file_under_the_results() -> None:
    assert tracking.default_tracking_uri(Path("out")) == "sqlite:///out/mlruns/mlflow.db"


def test_cli_logs_live_and_exports_idempotently(meandiff, tmp_path: Path, uri: str) -> None:
    results = tmp_path / "results"
    argv = ["run", "--methods", "meandiff", "--datasets", "synthetic", "--seeds", "0"]
    argv += ["--preset", "quick", "--results-dir", str(results), "--run-id", "live"]
    assert bench_exit_code([*argv, "--mlflow-uri", uri]) == 0
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT).experiment_id
    assert len(client.search_runs([experiment])) == 2  # the bench run and its one job
    for _ in range(2):  # the stored run afterwards: nothing new, however often
        assert bench_exit_code(["export", "live", "--results-dir", str(results), "--uri", uri]) == 0
    assert len(client.search_runs([experiment])) == 2


def test_cli_export_bad_target_is_one_line(tmp_path: Path, capsys) -> None:
    assert bench_exit_code(["export", str(tmp_path), "--to", "wandb"]) == 2
    assert "--to 'wandb': expected mlflow" in capsys.readouterr().err


def test_a_folder_uri_is_a_local_sqlite_store(meandiff, tmp_path: Path, capsys) -> None:
    """`bench export RUN --to mlflow --uri <folder>`: the folder holds a SQLite store (MLflow's
    plain folder store refuses to start), and mlflow.search_runs finds one run per job. A store
    that cannot be opened is a one-line error naming --uri."""
    results = tmp_path / "results"
    argv = ["run", "--methods", "meandiff", "--datasets", "synthetic", "--seeds", "0,1"]
    assert bench_exit_code([*argv, "--preset", "quick", "--results-dir", str(results)]) == 0
    run = next((results).iterdir())
    store = tmp_path / "tracking"
    for _ in range(2):
        assert bench_exit_code(["export", str(run), "--uri", str(store)]) == 0
    assert f"sqlite:///{store.as_posix()}/mlflow.db" in capsys.readouterr().out
    mlflow.set_tracking_uri(tracking.tracking_uri(store))
    runs = mlflow.search_runs(experiment_names=[tracking.DEFAULT_EXPERIMENT])
    jobs = runs[runs["tags.bench.job_id"].notna()]
    assert sorted(jobs["params.seed"]) == ["0", "1"]
    assert len(runs) == 3  # the bench run and its two jobs, once however often exported

    assert bench_exit_code(["export", str(run), "--uri", "nosuchscheme://x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --uri 'nosuchscheme://x': cannot open the tracking store")
    assert "\n" not in err
