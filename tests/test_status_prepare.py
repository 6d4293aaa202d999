"""``bench status`` (job states from a run folder) and ``bench prepare`` (assets, offline)."""

from __future__ import annotations

import json

from helpers import bench_output as bench

from bench.store.runs import RunStore


def _run(tmp_path, capsys, seeds: str, *extra: str) -> int:
    args = ["run", "--methods", "meandiff", "--seeds", seeds, "--results-dir", str(tmp_path)]
    args += ["--run-id", "st", "--set", "meandiff.maps=false", "--timing-repeats", "1", *extra]
    return bench(args, capsys)[0]


def test_status_counts_every_state_and_shows_failures(tmp_path, capsys, meandiff, monkeypatch):
    from bench.execution.status import run_status

    assert _run(tmp_path, capsys, "0-2") == 0
    assert _run(tmp_path, capsys, "0", "--set", "meandiff.fail=true") == 1  # a failed job
    run_dir = tmp_path / "st"
    store = RunStore(run_dir)
    by_seed = {r["seed"]: r["job_id"] for r in store.records() if r["status"] == "ok"}
    failed_id = next(r["job_id"] for r in store.records() if r["status"] == "failed")
    store.record_path(by_seed[2]).unlink()  # never ran: pending
    store.record_path(by_seed[1]).unlink()  # held by a live process: running
    with store.claim(by_seed[1]) as mine:
        assert mine
        status = run_status(run_dir)
        assert status.counts == {"done": 1, "pending": 1, "running": 1, "failed": 1}
        code, out, _ = bench(["status", "st", "--results-dir", str(tmp_path), "-v"], capsys)
    assert code == 0
    assert "meandiff · synthetic · seed 2" in out  # a pending job, named from the manifest
    assert (
        f"failed: meandiff · synthetic · seed 0 ({failed_id}): RuntimeError: asked to fail" in out
    )
    assert "|" in out and 'raise RuntimeError("asked to fail")' in out  # the traceback's tail
    assert run_status(run_dir).counts["running"] == 0  # the claim is gone with its holder

    # A SLURM job that ended (time limit) without a record: failed, with its log's last lines.
    log = tmp_path / "job.err"
    log.write_text("loading\nslurmstepd: error: *** JOB 41 CANCELLED DUE TO TIME LIMIT ***\n")
    (run_dir / "slurm").mkdir()
    entry = {"slurm_job_id": "41_2", "cluster": "slurm", "folder": "x", "stderr": str(log)}
    (run_dir / "slurm" / "submissions.json").write_text(json.dumps({"jobs": {by_seed[2]: entry}}))
    monkeypatch.setattr(
        "bench.execution.launchers.slurm.slurm_states", lambda e: {by_seed[2]: "TIMEOUT"}
    )
    status = run_status(run_dir)
    assert status.counts == {"done": 1, "pending": 1, "running": 0, "failed": 2}
    code, out, _ = bench(["status", str(run_dir)], capsys)
    assert code == 0 and "SLURM job 41_2 ended TIMEOUT without a record" in out
    assert "CANCELLED DUE TO TIME LIMIT" in out


def test_status_of_an_unknown_run_is_one_line(tmp_path, capsys):
    code, _, err = bench(["status", "nope", "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: nope: neither a run folder")
    assert len(err.strip().splitlines()) == 1


def test_prepare_synthetic_and_classical_needs_nothing(capsys):
    code, out, err = bench(
        ["prepare", "--methods", "pca,iforest", "--datasets", "synthetic"], capsys
    )
    assert code == 0, err
    assert "MISSING" not in out and out.count("not needed") == 2
    assert "generated (nothing to download)" in out


def test_prepare_offline_reports_missing_backbone_and_data(tmp_path, capsys, monkeypatch):
    """No network (made certain here): the pretrained backbone and MVTec are MISSING, with
    where they are expected and why; exit 1; no traceback."""
    import huggingface_hub.constants

    import bench.execution.prepare as prep

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    probed: list[str] = []

    def offline(url: str, timeout_s: float = 5.0) -> str:
        probed.append(url)
        return "cannot reach the server (test: offline)"

    monkeypatch.setattr(prep, "reachable", offline)
    args = ["prepare", "--methods", "padim,pca", "--datasets", "synthetic,mvtec:bottle"]
    code, out, err = bench([*args, "--data-root", str(tmp_path / "data")], capsys)
    assert code == 1 and "Traceback" not in out + err
    assert "missing: 2 asset(s)" in err
    assert "timm resnet18" in out and "padim (paper), padim (quick)" in out
    assets = {a.what: a for a in prep.check_assets(["padim"], ["synthetic"], fetch=False)}
    assert assets["timm resnet18 (timm/resnet18.a1_in1k)"].where.startswith(str(tmp_path / "hf"))
    assert out.count("MISSING") == 2 and out.count("cannot reach the server") == 2
    assert any("huggingface.co" in u for u in probed)
    assert not (tmp_path / "data").exists()  # nothing was created for the failed download

    code, out, _ = bench(["prepare", "--methods", "padim", "--check-only"], capsys)
    assert code == 1 and "not fetched (--check-only)" in out
