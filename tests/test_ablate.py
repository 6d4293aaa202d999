"""``bench ablate``: grid parsing and validation, job expansion, records, one U-Net per training
configuration, resume, and the per-parameter tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import bench_output as bench

from bench.datasets.synthetic import SyntheticDataset
from bench.execution import runner
from bench.execution.ablate import ablation_frames, expand_ablation, grid_points, parse_grid
from bench.execution.config import RunConfig, expand_jobs
from bench.methods.radar.detector import Radar
from bench.util.errors import ConfigError

# A RADAR small enough that a job takes about a second.
TINY_SETS = {
    "image_size": "16",
    "patch_size": "8",
    "block_out_channels": "8,8",
    "norm_num_groups": "8",
    "train_steps": "2",
    "batch_size": "4",
    "infer_stride": "4",
    "infer_batch": "64",
    "n_estimators": "10",
}


@pytest.fixture
def tiny_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic set at a few small images, wherever the runner asks for a dataset."""

    def make(spec: str, root: object) -> SyntheticDataset:
        return SyntheticDataset("brick", n_train=6, n_test_good=3, n_test_anomalous=3, size=32)

    monkeypatch.setattr(runner, "make_dataset", make)


def config(**kw: object) -> RunConfig:
    base = dict(methods=["radar"], preset="quick", device="cpu", sets={"radar": dict(TINY_SETS)})
    return RunConfig(**{**base, **kw}, threads=1, timing_repeats=1, timing_warmup=0)


# -- grid ------------------------------------------------------------------------------------


def test_parse_grid() -> None:
    assert parse_grid(["t=1,5, 10", "radar.scorer=iforest,irf"]) == {
        "t": ["1", "5", "10"],
        "scorer": ["iforest", "irf"],
    }
    assert parse_grid(["block_out_channels=(8,16),[16,32]"]) == {
        "block_out_channels": ["(8,16)", "[16,32]"]
    }
    for bad, match in [
        (["t"], "expected PARAM=V1,V2"),
        (["t="], "expected PARAM=V1,V2"),
        (["t=1", "t=2"], "given twice"),
        ([], "at least one"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_grid(bad)


def test_grid_points_product_and_one_at_a_time() -> None:
    axes = {"a": ["1", "2"], "b": ["x", "y", "z"]}
    product = grid_points(axes, one_at_a_time=False)
    assert len(product) == 6 and product[1] == {"a": "1", "b": "y"}
    assert grid_points(axes, one_at_a_time=True) == [
        {}, {"a": "1"}, {"a": "2"}, {"b": "x"}, {"b": "y"}, {"b": "z"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        (["tt=1,5"], r"unknown --grid parameter of radar 'tt' \(did you mean 't'\?\)"),
        (["t=1,abc"], r"^--grid t=abc: radar\.t='abc': expected an integer$"),
        (["t=1,5000"], r"^--grid t=5000: radar\.t must be in 0\.\.num_train_timesteps-1"),
        (["scorer=iforest,svm"], r"^--grid scorer=svm: radar\.scorer='svm': expected one of"),
        (["patch_size=17"], r"^--grid patch_size=17: radar\.patch_size must be between 1 and"),
    ],
)
def test_bad_grid_values_fail_before_any_work(grid: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        expand_ablation(config(), parse_grid(grid), one_at_a_time=False)


def test_an_invalid_combination_names_the_point() -> None:
    # irf_covariance=ledoitwolf is valid only with irf_features=patch.
    axes = parse_grid(["irf_features=pixel,patch", "irf_covariance=diagonal,ledoitwolf"])
    with pytest.raises(ConfigError, match=r"^--grid point irf_features=pixel, irf_covariance="):
        expand_ablation(config(), axes, one_at_a_time=False)


def test_expansion_records_the_varied_parameters() -> None:
    cfg = config(seeds=[0, 1])
    plan = expand_ablation(cfg, parse_grid(["t=1,5", "scorer=iforest,irf,raw"]), False)
    assert len(plan.jobs) == 2 * 3 * 2 and len({j.job_id for j in plan.jobs}) == 12
    assert plan.base == {"t": 1, "scorer": "iforest"}
    assert plan.grid == {"t": [1, 5], "scorer": ["iforest", "irf", "raw"]}
    for job in plan.jobs:
        assert job.record_extra["varied"] == {"t": job.params["t"], "scorer": job.params["scorer"]}
    # The same parameters as a plain `bench run` are the same job (resume across commands).
    (plain,) = expand_jobs(config(), torch.device("cpu"))
    assert plain.job_id in {j.job_id for j in plan.jobs}
    # One at a time: the base point once, then each value with the others at base.
    oat = expand_ablation(cfg, parse_grid(["t=1,5", "scorer=iforest,irf,raw"]), True)
    varied = [j.record_extra["varied"] for j in oat.jobs if j.seed == 0]
    assert varied == [
        {"t": 1, "scorer": "iforest"},
        {"t": 5, "scorer": "iforest"},
        {"t": 1, "scorer": "irf"},
        {"t": 1, "scorer": "raw"},
    ]
    assert plan.run_id != oat.run_id and plan.run_id.startswith("ablate-radar-synthetic-")


# -- running -----------------------------------------------------------------------------------


def test_ablation_trains_one_unet_per_training_config_and_resumes(
    tmp_path: Path, tiny_data: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[int] = []
    original = Radar._train

    def counting(self: Radar, *args: object, **kwargs: object) -> float:
        trained.append(self.params.patch_size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Radar, "_train", counting)
    axes = parse_grid(["t=1,5", "scorer=iforest,gaussian,irf", "patch_size=8,16"])
    plan = expand_ablation(config(), axes, one_at_a_time=False)
    outcome = runner.run(
        plan.config, tmp_path, plan.run_id, job_list=plan.jobs,
        manifest_extra={"ablation": plan.manifest()},
    )  # fmt: skip
    assert [r["status"] for r in outcome.records] == ["ok"] * 12, outcome.failed
    # 12 jobs, 2 training configurations (patch sizes): 2 trainings.
    assert sorted(trained) == [8, 16]
    records = outcome.records
    for r in records:
        assert r["varied"] == {k: r["params"][k] for k in ("t", "scorer", "patch_size")}
        assert r["ablation"]["mode"] == "cartesian"
    by_patch = {8: [], 16: []}
    for r in records:
        by_patch[r["varied"]["patch_size"]].append(r["fit_info"])
    for infos in by_patch.values():
        assert sum(not i["unet_from_cache"] for i in infos) == 1
        assert len({i["unet_key"] for i in infos}) == 1
        assert len({i["train_seconds"] for i in infos}) == 1  # the original training time
        assert all(i["train_peak_mem_mb"] > 0 for i in infos)
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["ablation"]["grid"]["scorer"] == ["iforest", "gaussian", "irf"]
    frame = pd.read_csv(outcome.run_dir / "records.csv")
    assert {"varied.t", "varied.scorer", "varied.patch_size"} <= set(frame.columns)

    # Resume: nothing is recomputed, nothing retrained.
    trained.clear()
    again = runner.run(plan.config, tmp_path, plan.run_id, job_list=plan.jobs)
    assert again.skipped == 12 and trained == []

    tables = ablation_frames(again.records, plan.manifest())
    assert list(tables) == ["t", "scorer", "patch_size"]
    assert tables["scorer"]["scorer"].tolist() == ["iforest", "gaussian", "irf"]
    assert tables["scorer"]["n"].tolist() == [4, 4, 4]  # 2 t x 2 patch sizes each


def test_cli_ablate_one_at_a_time_prints_a_table_per_parameter(
    tmp_path: Path, tiny_data: None, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = [a for k, v in TINY_SETS.items() for a in ("--set", f"radar.{k}={v}")]
    args = "ablate --method radar --grid t=1,5 --grid scorer=irf,raw --one-at-a-time --seeds 0,1"
    args += " --device cpu --preset quick --threads 1 --timing-repeats 1"
    args = [*args.split(), "--results-dir", str(tmp_path), *sets]
    code, out, err = bench(args, capsys)
    assert code == 0, err
    assert "ablation: 8 jobs (one_at_a_time)" in out  # base, t=5, irf, raw x 2 seeds
    assert "radar: t (base 1; mean ± std over seeds)" in out
    assert "radar: scorer (base iforest; mean ± std over seeds)" in out
    (run_dir,) = tmp_path.iterdir()
    records = [json.loads(p.read_text()) for p in run_dir.glob("jobs/*.json")]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    assert sum(not r["fit_info"]["unet_from_cache"] for r in records) == 2  # one per seed

    code, out, err = bench(["ablate", "--grid", "t=1,nope", "--results-dir", str(tmp_path)], capsys)
    assert code == 2 and err.strip().count("\n") == 0
    assert "--grid t=nope: radar.t='nope': expected an integer" in err


def test_window_and_blur_sigma_are_ablated_and_reported(
    tmp_path: Path, tiny_data: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two values the paper does not report (local window, blur sigma) are grid axes like any
    other: one training for all their variants, a table per parameter, and bench report's
    ablation tables."""
    sets = [a for k, v in TINY_SETS.items() for a in ("--set", f"radar.{k}={v}")]
    args = "ablate --method radar --grid window=4,8 --grid blur_sigma=0,1.5 --one-at-a-time"
    args += " --device cpu --preset quick --threads 1 --timing-repeats 1 --run-id wb"
    code, out, err = bench([*args.split(), "--results-dir", str(tmp_path), *sets], capsys)
    assert code == 0, err
    assert "ablation: 4 jobs (one_at_a_time)" in out  # base (8, 1.0), window 4, blur 0 and 1.5
    assert "radar: window (base 8;" in out and "radar: blur_sigma (base 1.0;" in out
    records = [json.loads(p.read_text()) for p in (tmp_path / "wb/jobs").glob("*.json")]
    assert sorted((r["params"]["window"], r["params"]["blur_sigma"]) for r in records) == [
        (4, 1.0), (8, 0.0), (8, 1.0), (8, 1.5)
    ]  # fmt: skip
    assert sum(not r["fit_info"]["unet_from_cache"] for r in records) == 1
    code, out, err = bench(["report", str(tmp_path / "wb"), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    tables = {p.name for p in (tmp_path / "rep/tables").glob("ablation_radar_*.md")}
    assert {"ablation_radar_window.md", "ablation_radar_blur_sigma.md"} <= tables
