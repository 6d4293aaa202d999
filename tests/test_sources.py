"""Every default of RADAR, DiffusionAD and ddpm_recon says where it comes from (bench.util.sources),
``bench list`` shows it, and declaring it changes neither the parameters nor the job hashes."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import bench_output as bench

from bench.execution.config import JobSpec
from bench.methods import registry
from bench.methods.ddpm_recon import DDPMReconParams
from bench.methods.diffusionad.detector import DiffusionADParams
from bench.methods.radar.detector import RadarParams
from bench.util.sources import KINDS, OFFICIAL, OURS, PAPER, SUITE, source_of, undeclared

DECLARED = {"radar": RadarParams, "diffusionad": DiffusionADParams, "ddpm_recon": DDPMReconParams}


@pytest.mark.parametrize("params_cls", list(DECLARED.values()))
def test_every_parameter_declares_a_source(params_cls: type) -> None:
    assert undeclared(params_cls) == []
    for f in dataclasses.fields(params_cls):
        kind, where = source_of(params_cls, f.name)
        assert kind in KINDS
        if kind in (PAPER, OFFICIAL):  # a paper or code value names its place
            assert where, f"{params_cls.__name__}.{f.name}: {kind} without a place"


def test_radar_marks_what_the_paper_does_not_report() -> None:
    kinds = {f.name: source_of(RadarParams, f.name)[0] for f in dataclasses.fields(RadarParams)}
    paper = {n for n, k in kinds.items() if k == PAPER}
    assert {"image_size", "patch_size", "t", "scorer", "contamination"} <= paper
    # The paper summary: blur and window "not reported", the U-Net and training underspecified.
    for name in ("block_out_channels", "layers_per_block", "attention", "beta_schedule",
                 "num_train_timesteps", "lr", "blur_sigma", "window", "train_steps",
                 "batch_size"):  # fmt: skip
        assert kinds[name] == OURS, name
    assert kinds["irf_blur_sigma"] == SUITE and kinds["infer_batch"] == SUITE


def test_diffusionad_defaults_to_the_official_noise_loss() -> None:
    params = registry.build_params("diffusionad", "paper")
    assert params.anomalous_noise_loss == "none"
    kind, where = source_of(DiffusionADParams, "anomalous_noise_loss")
    assert kind == OFFICIAL and "large_step" in where
    variant = registry.build_params("diffusionad", "paper", {"anomalous_noise_loss": "large_step"})
    assert variant.anomalous_noise_loss == "large_step"


def test_sources_stay_out_of_the_parameters_and_the_job_hashes() -> None:
    # ddpm_recon's values did not change with its sources: its job ids are those of the commit
    # before sources existed (ae5e5c3), for both presets.
    before = {"paper": "5999b633cc37f969", "quick": "7ec7b7033c0c5512"}
    for preset, job_id in before.items():
        values = registry.params_dict(registry.build_params("ddpm_recon", preset))
        assert "source" not in values
        assert JobSpec("ddpm_recon", values, preset, "synthetic", 0, "cpu").job_id == job_id


def test_bench_list_shows_the_source_of_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = bench(["list"], capsys)
    assert code == 0
    assert out.count("source of the default") >= len(DECLARED)
    assert "paper-unspecified (our choice)" in out and "official code" in out
    assert "our reading" in out  # the IRF scorer is named as our reading of OSD-IRF
