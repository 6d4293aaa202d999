from __future__ import annotations

import pytest

from bench.execution.config import JobSpec, RunConfig, parse_seeds, resolve_device
from bench.methods import registry
from bench.util.errors import ConfigError, DeviceError


def test_overrides_are_typed_and_validated(meandiff):
    params = registry.build_params(
        meandiff,
        "paper",
        {"image_size": "16", "reduce": "mean", "fail": "no", "scale": "2.5", "channels": "3,4"},
    )
    assert (params.image_size, params.reduce, params.fail) == (16, "mean", False)
    assert params.scale == 2.5 and params.channels == (3, 4)


def test_preset_then_override(meandiff):
    assert registry.build_params(meandiff, "quick").image_size == 24
    assert registry.build_params(meandiff, "quick", {"image_size": "8"}).image_size == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": "big"}, "meandiff.image_size='big': expected an integer"),
        ({"reduce": "median"}, "expected one of max, mean"),
        ({"fail": "perhaps"}, "expected true or false"),
        (
            {"image_sise": "8"},
            "unknown parameter of meandiff 'image_sise' (did you mean 'image_size'?)",
        ),
        ({"image_size": "2"}, "meandiff.image_size must be >= 4, got 2"),
    ],
)
def test_bad_overrides_are_one_line_errors(meandiff, overrides, message):
    with pytest.raises(ConfigError) as err:
        registry.build_params(meandiff, "paper", overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_method_lists_valid_names():
    with pytest.raises(
        ConfigError, match=r"unknown method 'radr' \(did you mean 'radar'\?\); valid: .*radar"
    ):
        registry.get_method("radr")


def test_parse_sets():
    assert registry.parse_sets(["radar.t=5", "radar.patch_size = 14"], ["radar"]) == {
        "radar": {"t": "5", "patch_size": "14"}
    }
    with pytest.raises(ConfigError, match=r"expected METHOD\.PARAM=VALUE"):
        registry.parse_sets(["radar.t"], ["radar"])
    with pytest.raises(ConfigError, match="not in --methods"):
        registry.parse_sets(["padim.x=1"], ["radar"])


def test_presets():
    assert registry.resolve_preset("auto", "cuda") == "paper"
    assert registry.resolve_preset("auto", "cpu") == "quick"
    assert registry.resolve_preset("paper", "cpu") == "paper"
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        registry.resolve_preset("fast", "cpu")


def test_seeds_and_devices():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-3,3") == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("a")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        resolve_device("tpu")


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(DeviceError, match="--device cuda: CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_job_identity_follows_what_changes_numbers():
    base = JobSpec("radar", {"t": 1}, "paper", "synthetic", 0, "cpu")
    assert base.job_id == JobSpec("radar", {"t": 1}, "quick", "synthetic", 0, "cpu").job_id
    for other in (
        JobSpec("radar", {"t": 2}, "paper", "synthetic", 0, "cpu"),
        JobSpec("radar", {"t": 1}, "paper", "synthetic", 1, "cpu"),
        JobSpec("radar", {"t": 1}, "paper", "mvtec:tile", 0, "cpu"),
        JobSpec("radar", {"t": 1}, "paper", "synthetic", 0, "cuda"),
    ):
        assert other.job_id != base.job_id
    assert base.params_hash == JobSpec("radar", {"t": 1}, "paper", "x", 3, "cuda").params_hash


def test_run_id_is_stable_and_ignores_timing_settings():
    a = RunConfig(methods=["radar"], seeds=[0, 1])
    b = RunConfig(methods=["radar"], seeds=[0, 1], threads=1, timing_repeats=50)
    assert a.default_run_id() == b.default_run_id()
    assert a.default_run_id() != RunConfig(methods=["radar"], seeds=[0]).default_run_id()
