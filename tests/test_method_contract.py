"""The contract every registered method keeps (the names ``bench list`` shows), at tiny settings
on the suite's own synthetic set: output shapes, same seed -> same numbers, configuration errors
that name ``<method>.<field>``, and parameters that survive the record (params dict -> JSON ->
build again: same parameters, same job id).

anomalib models run at their quickest offline settings (helpers.ANOMALIB_OFFLINE); the others
need pretrained weights or a foundation model and skip their fits. Where anomalib cannot be
imported its models are not registered, and only the suite's own methods are checked.
"""

from __future__ import annotations

import importlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    ANOMALIB_OFFLINE,
    ANOMALIB_TINY,
    BUI_APLEY_TINY,
    DDPM_RECON_TINY,
    DIFFUSIONAD_TINY,
    RADAR_TINY,
)

from bench.datasets.synthetic import SyntheticDataset
from bench.execution.config import JobSpec
from bench.interface import Detector, ImageSet, Prediction, RunContext
from bench.methods import registry
from bench.util.errors import ConfigError

pytestmark = pytest.mark.threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as CI: nothing is downloaded

ANOMALIB_MODULE = "bench.methods.anomalib.adapter"
CLASSICAL_TINY: dict[str, object] = {"image_size": 32, "vector_size": 16}

# The suite's own methods: tiny settings (a fit in about a second), and one invalid value each,
# with what its one-line error must say.
OWN_TINY: dict[str, dict[str, object]] = {
    "radar": RADAR_TINY,
    "diffusionad": DIFFUSIONAD_TINY,
    "ddpm_recon": DDPM_RECON_TINY,
    "iforest": CLASSICAL_TINY,
    "ocsvm": CLASSICAL_TINY,
    "lof": CLASSICAL_TINY,
    "pca": CLASSICAL_TINY,
    "bui_apley": {**BUI_APLEY_TINY, "subsample": 0.5},  # subsampling: the seed is used
}
# Which optional outputs each gives: (its own 0/1 decisions, pixel maps). Every anomalib model
# gives decisions (anomalib's threshold, set on the training normals); maps where it has them.
OWN_OUTPUTS: dict[str, tuple[bool, bool]] = {
    "radar": (True, True),
    "diffusionad": (False, True),
    "ddpm_recon": (False, True),
    "iforest": (True, False),
    "ocsvm": (True, False),
    "lof": (True, False),
    "pca": (True, True),
    "bui_apley": (True, True),
}
OWN_INVALID: dict[str, tuple[dict[str, str], str]] = {
    "radar": ({"patch_size": "101"}, "radar.patch_size must be "),
    "diffusionad": ({"image_size": "48"}, "diffusionad.image_size must be a multiple of 32"),
    "ddpm_recon": ({"ssim_window": "4"}, "ddpm_recon.ssim_window must be "),
    "iforest": ({"vector_size": "500"}, "iforest.vector_size must be between 1"),
    "ocsvm": ({"gamma": "wide"}, "ocsvm.gamma must be scale, auto or a positive number"),
    "lof": ({"n_neighbors": "0"}, "lof.n_neighbors must be >= 1"),
    "pca": ({"n_components": "2.5"}, "pca.n_components must be "),
    "bui_apley": ({"w": "8"}, "bui_apley.w must be "),
}

# Methods whose fit is a training loop (or a backbone's pass over the training images, for every
# anomalib model): their records carry the training compute, fit_info.train_gflops.
TRAINED = {"radar", "diffusionad", "ddpm_recon"}

# Job ids of each preset's parameters (method, params, preset "paper"/"quick", synthetic, seed 0,
# cpu): they pin every default and preset value at once, so that a changed default (and with it
# every stored record's identity) fails here, not silently in a comparison months later.
PRESET_JOB_IDS: dict[str, dict[str, str]] = {
    "radar": {"paper": "034296750c5000d9", "quick": "30ab3520aaf94757", "cpu": "798b2b1fc0190c65"},
    "diffusionad": {
        "paper": "37e430d03cb78315",
        "quick": "34a7e83f04295fbf",
        "cpu": "f91706871d6cc796",
    },
    "ddpm_recon": {
        "paper": "5999b633cc37f969",
        "quick": "7ec7b7033c0c5512",
        "cpu": "c603e9f567112765",
    },
    "iforest": {
        "paper": "628258b8628f5584",
        "quick": "628258b8628f5584",
        "cpu": "628258b8628f5584",
    },
    "ocsvm": {"paper": "96fd931ca134eb10", "quick": "96fd931ca134eb10", "cpu": "96fd931ca134eb10"},
    "lof": {"paper": "51e64e0d9069eee2", "quick": "51e64e0d9069eee2", "cpu": "51e64e0d9069eee2"},
    "pca": {"paper": "b6c1a71501372399", "quick": "b6c1a71501372399", "cpu": "b6c1a71501372399"},
    "bui_apley": {
        "paper": "895471f8acb436f0",
        "quick": "bc03919834635b09",
        "cpu": "895471f8acb436f0",
    },
}


def builtin_methods() -> dict[str, str]:
    """Method name -> the module that defines it, for what ``bench list`` shows: the registry's
    builtin methods (test-only ones excluded)."""
    try:
        names = list(registry.methods())
    except ImportError:  # anomalib missing or broken: the suite's own methods still register
        modules = [m for m in registry.BUILTIN_MODULES if m != ANOMALIB_MODULE]
        registry.load_builtins_only(modules)
        return {
            entry.name: module
            for module in modules
            for entry in importlib.import_module(module).method_entries()
        }
    return {name: module for name in names if (module := registry.builtin_module(name))}


BUILTIN = builtin_methods()
METHODS = list(BUILTIN)


def is_anomalib(name: str) -> bool:
    return BUILTIN[name] == ANOMALIB_MODULE


def tiny_settings(name: str) -> dict[str, object] | None:
    """The method's quickest settings that fit offline; None: it cannot fit offline."""
    if not is_anomalib(name):
        return OWN_TINY[name]
    if name not in ANOMALIB_OFFLINE:
        return None
    from bench.methods.anomalib import adapter, weights

    settings = {**ANOMALIB_TINY, **ANOMALIB_OFFLINE[name]}
    if weights.needs_weights(adapter.MODEL_NAMES[name]):
        settings["weights"] = "random"
    return settings


def fit_cases() -> Iterator[object]:
    for name in METHODS:
        marks = []
        if is_anomalib(name):
            # Lightning and a backbone per fit: seconds each, the slowest part of this file.
            marks.append(pytest.mark.slow)
            if name not in ANOMALIB_OFFLINE:
                reason = f"{name}: no offline setting (pretrained weights or a foundation model)"
                marks.append(pytest.mark.skip(reason=reason))
        yield pytest.param(name, marks=marks, id=name)


# -- fit and predict ---------------------------------------------------------------------------


class Fitted:
    """Two detectors fitted with the same seed (from different global RNG states) and their
    predictions on the same test set; the first predicts twice."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        settings = tiny_settings(name)
        assert settings is not None
        params = registry.build_params(name, "paper", settings)
        self.detectors: list[Detector] = [registry.build_detector(name, params) for _ in "ab"]
        spec = self.detectors[0].input_spec
        data = SyntheticDataset("brick", n_train=6, n_test_good=3, n_test_anomalous=3, size=32)
        self.train: ImageSet = data.load("train", spec, 0)
        self.test: ImageSet = data.load("test", spec, 0)
        self.predictions: list[Prediction] = []
        for i, detector in enumerate(self.detectors):
            # The global RNGs must not matter: only the context's seed does.
            random.seed(100 + i)
            np.random.seed(100 + i)
            torch.manual_seed(100 + i)
            ctx = RunContext(seed=7, device=torch.device("cpu"), work_dir=work / f"fit{i}")
            self.predictions.append(detector.fit(self.train, ctx).predict(self.test))
        self.again = self.detectors[0].predict(self.test)


@pytest.fixture(scope="module", params=list(fit_cases()))
def fitted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    return Fitted(request.param, tmp_path_factory.mktemp(request.param))


def test_output_shapes(fitted: Fitted) -> None:
    detector, pred, test = fitted.detectors[0], fitted.predictions[0], fitted.test
    assert isinstance(detector, Detector)
    n, (h, w) = len(test), test.images.shape[-2:]
    assert (h, w) == detector.input_spec.image_size
    assert test.images.shape[1] == (1 if detector.input_spec.grayscale else 3)
    assert pred.scores.shape == (n,) and pred.scores.dtype.is_floating_point
    assert torch.isfinite(pred.scores).all()
    has = (pred.decisions is not None, pred.maps is not None)
    if is_anomalib(fitted.name):
        assert has[0], "anomalib's threshold gives every model decisions"
    else:
        assert has == OWN_OUTPUTS[fitted.name]
    if pred.decisions is not None:
        assert pred.decisions.shape == (n,) and set(pred.decisions.tolist()) <= {0, 1}
    if pred.maps is not None:
        assert pred.maps.shape == (n, h, w) and torch.isfinite(pred.maps).all()


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def test_same_seed_same_numbers(fitted: Fitted) -> None:
    first, second = fitted.predictions
    for again, what in ((second, "a second fit"), (fitted.again, "a second predict")):
        assert torch.equal(first.scores, again.scores), what
        assert _same(first.decisions, again.decisions), what
        assert _same(first.maps, again.maps), what


def test_every_method_counts_its_cost(fitted: Fitted) -> None:
    """Every fitted method has a GFLOP/image (records and tables carry it beside the speed),
    and counting it changes no later result."""
    detector, test = fitted.detectors[0], fitted.test
    gflops = detector.gflops_per_image(test.image_size)
    assert gflops is not None and gflops > 0
    if fitted.name in TRAINED or is_anomalib(fitted.name):
        # the quality-versus-compute figure's x axis: what the fit cost, forward and backward
        assert detector.fit_info_["train_gflops"] > 0, fitted.name
    after = detector.predict(test)
    assert torch.equal(after.scores, fitted.predictions[0].scores)


# -- parameters --------------------------------------------------------------------------------


def invalid_cases() -> Iterator[object]:
    for name in METHODS:
        if is_anomalib(name):  # one validation shared by every generated parameter class
            yield pytest.param(
                name, {"image_size": "8"}, f"{name}.image_size must be >= 32", id=name
            )
        else:
            overrides, needle = OWN_INVALID[name]
            yield pytest.param(name, overrides, needle, id=name)


@pytest.mark.parametrize(("name", "overrides", "needle"), list(invalid_cases()))
def test_an_invalid_value_is_a_one_line_error_naming_the_field(
    name: str, overrides: dict[str, str], needle: str
) -> None:
    (field,) = overrides
    with pytest.raises(ConfigError) as err:
        registry.build_params(name, "paper", overrides)
    message = str(err.value)
    assert message.startswith(f"{name}.{field}") and needle in message
    assert "\n" not in message


def job_id(name: str, params: object, preset: str) -> str:
    return JobSpec(name, registry.params_dict(params), preset, "synthetic", 0, "cpu").job_id


# Known: DRAEM's default dtd_dir is "" (an empty anomaly source folder); text "" reads back as
# None, which the adapter treats the same (no folder), but the parameters and job id differ.
ROUND_TRIP_KNOWN: dict[str, str] = {}  # method -> why its params do not survive (none now)


def round_trip_cases() -> Iterator[object]:
    for name in METHODS:
        known = ROUND_TRIP_KNOWN.get(name)
        marks = [pytest.mark.xfail(reason=known, strict=True)] if known else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(round_trip_cases()))
def test_params_survive_the_record(name: str) -> None:
    entry = registry.get_method(name)
    settings = tiny_settings(name) or {}
    for preset, overrides in [
        ("paper", {}),
        ("paper", settings),
        *[(p, {}) for p in entry.presets],
    ]:
        params = registry.build_params(name, preset, overrides)
        if not overrides and preset != "paper":  # a preset is its values over the defaults
            assert params == entry.params_cls(**entry.presets[preset])
        stored = json.loads(json.dumps(registry.params_dict(params)))
        # As the runner builds a job's detector: every value given, over the paper defaults.
        again = registry.build_params(name, "paper", stored)
        assert again == params
        assert registry.params_dict(again) == stored
        assert job_id(name, again, preset) == job_id(name, params, preset)


@pytest.mark.parametrize("name", list(PRESET_JOB_IDS))
def test_preset_values_are_pinned(name: str) -> None:
    presets = ["paper", *registry.get_method(name).presets]
    got = {preset: job_id(name, registry.build_params(name, preset), preset) for preset in presets}
    assert got == PRESET_JOB_IDS[name]


#: The methods of the CPU reference study (results/reference/cpu/study.sh): each has a `cpu`
#: preset; any other method asked for it is a one-line error naming its presets.
CPU_STUDY = ["radar", "diffusionad", "ddpm_recon", "iforest", "ocsvm", "lof", "pca", "bui_apley"]
CPU_STUDY_ANOMALIB = ["patchcore", "padim", "fastflow", "draem"]


def test_the_cpu_study_methods_have_a_cpu_preset() -> None:
    for name in CPU_STUDY + [m for m in CPU_STUDY_ANOMALIB if m in METHODS]:
        assert "cpu" in registry.get_method(name).presets, name
    others = [m for m in METHODS if is_anomalib(m) and m not in CPU_STUDY_ANOMALIB]
    for name in others[:3]:
        with pytest.raises(ConfigError, match=rf"unknown preset of {name} 'cpu'; valid: paper"):
            registry.build_params(name, "cpu")


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("radar", {"train_steps": "2"}),
        ("diffusionad", {"epochs": "1"}),
        ("ddpm_recon", {"epochs": "1"}),
    ],
)
def test_the_paper_network_trained_shorter_is_flagged(name: str, cut: dict[str, str]) -> None:
    """Every record of a paper-size diffusion network trained shorter than the paper says so
    (train:cut: a GPU window's or a speed run's budget); presets with a smaller network say so
    by their preset flag instead, and the paper preset itself is not cut."""

    def flags(preset: str, sets: dict[str, str]) -> list[str]:
        return registry.build_detector(name, registry.build_params(name, preset, sets)).flags

    assert flags("paper", cut) == ["train:cut"]
    assert flags("paper", {}) == [] and flags("cpu", {}) == [] and flags("quick", {}) == []


def test_every_method_has_a_contract_case() -> None:
    own = [name for name in METHODS if not is_anomalib(name)]
    assert own and set(own) == set(OWN_TINY) == set(OWN_INVALID) == set(OWN_OUTPUTS)
    assert set(own) == set(PRESET_JOB_IDS)
