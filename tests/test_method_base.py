"""The method contract (``bench.interface.Method``): every hook has a default, the README's
example method works as written, one checker gives every parameter error, enumerations come
from their ``Literal`` types, and the anomalib adapter names its own pretrained weights."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import torch
from helpers import bench_exit_code

from bench.datasets.synthetic import SyntheticDataset
from bench.execution import job, prepare
from bench.execution.launchers.ray_launcher import cpu_only
from bench.interface import (
    Detector,
    ImageSet,
    InputSpec,
    Method,
    MethodEntry,
    Prediction,
    RunContext,
    WeightFile,
    conform,
)
from bench.methods import registry
from bench.methods.classical import IForestParams, PCAParams
from bench.methods.ddpm_recon import DISTANCES, DDPMReconParams
from bench.methods.diffusion.ddpm import SAMPLERS, build_unet
from bench.methods.diffusion.unet_params import unet_from
from bench.methods.diffusionad.detector import DiffusionADParams
from bench.methods.radar.detector import COMPILE_MODES, PRECISIONS, SCORERS, RadarParams
from bench.util.errors import ConfigError
from bench.util.validation import field_check

README = Path(__file__).resolve().parents[1] / "README.md"


# -- a method with no hooks gets the defaults ---------------------------------------------------


@dataclass(frozen=True)
class BareParams:
    image_size: int = 16


class Bare(Method[BareParams]):
    """fit and predict only: every hook is the base class's."""

    name = "bare"
    params_cls = BareParams

    def fit(self, train: ImageSet, ctx: RunContext) -> Bare:
        return self

    def predict(self, test: ImageSet) -> Prediction:
        return Prediction(scores=torch.zeros(len(test)))


def test_a_method_without_hooks_gets_every_default() -> None:
    bare = Bare()
    assert bare.params == BareParams()  # Method() builds the parameter defaults
    assert bare.input_spec == InputSpec((16, 16), grayscale=True)
    assert bare.flags == []
    assert bare.fit_info_ == {}
    assert bare.inference_info == {}
    assert bare.gflops_per_image((16, 16)) is None
    assert bare.required_weights() == []
    assert bare.weights_hint() == "; or run with random initialisation: --set bare.weights=random"
    assert isinstance(bare, Detector)
    bare.fit_info_["seen"] = 1  # one instance's fit info is not another's
    assert Bare(BareParams(image_size=8)).fit_info_ == {}


def test_a_method_must_fit_and_predict() -> None:
    class NoPredict(Method[BareParams]):
        name = "nopredict"
        params_cls = BareParams

        def fit(self, train: ImageSet, ctx: RunContext) -> NoPredict:
            return self

    with pytest.raises(TypeError, match="predict"):
        NoPredict()


def test_the_registry_refuses_a_method_off_the_base() -> None:
    class Plain:
        name = "plain"

        def __init__(self, params: object) -> None:
            self.params = params

    registry.register_method(MethodEntry("offbase", BareParams, Plain, "test-only"))
    with pytest.raises(TypeError, match=r"'offbase'.*Plain.*bench\.interface\.Method"):
        registry.build_detector("offbase", BareParams())


def test_the_runner_reads_the_hooks_not_probes() -> None:
    class Flagged(Bare):
        @property
        def flags(self) -> list[str]:
            return ["weights:random"]

    spec = types.SimpleNamespace(preset="quick", threshold=types.SimpleNamespace(name="x"))
    spec.threshold.rule = "calibrated"
    assert job.job_flags(spec, Bare()) == ["preset:quick"]
    assert job.job_flags(spec, Flagged()) == ["preset:quick", "weights:random"]


# -- input preparation ----------------------------------------------------------------------


def test_prepare_converts_colour_and_size() -> None:
    from kornia.color import rgb_to_grayscale

    rgb = torch.rand(2, 3, 12, 12)
    gray = conform(rgb, InputSpec((12, 12), grayscale=True))
    assert torch.equal(gray, rgb_to_grayscale(rgb))
    mean = conform(rgb, InputSpec((12, 12), grayscale=True), "mean")
    assert torch.equal(mean, rgb.mean(1, keepdim=True))
    two = torch.rand(2, 2, 12, 12)  # neither gray nor RGB: averaged in either mode
    assert torch.equal(conform(two, InputSpec((12, 12), grayscale=True)), two.mean(1, True))
    colour = conform(gray, InputSpec((8, 8), grayscale=False))
    assert colour.shape == (2, 3, 8, 8) and colour.is_contiguous()
    assert torch.equal(colour[:, 0], colour[:, 2])
    small = Bare(BareParams(image_size=6))
    assert torch.equal(small.prepare(rgb), conform(rgb, small.input_spec))
    assert small.prepare(rgb).shape == (2, 1, 6, 6)


# -- the README's example ---------------------------------------------------------------------


def readme_example() -> str:
    """The first Python block of the README's "Adding a method" section."""
    section = README.read_text(encoding="utf-8").split("### Adding a method", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The README's example as an imported module, its method registered."""
    module = types.ModuleType("readme_mean_distance")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(readme_example(), str(README), "exec"), module.__dict__)
    for entry in module.method_entries():
        registry.register_method(entry)
    return module


def test_readme_example_is_short_and_tidy() -> None:
    lines = readme_example().splitlines()
    assert len(lines) <= 45 and max(len(line) for line in lines) <= 100


def test_readme_example_builds_fits_and_predicts(example: types.ModuleType) -> None:
    params = registry.build_params("mean_distance", "paper", {"image_size": "32", "top_k": "5"})
    assert (params.image_size, params.top_k) == (32, 5)
    detector = registry.build_detector("mean_distance", params)
    assert isinstance(detector, example.MeanDistance) and isinstance(detector, Detector)
    data = SyntheticDataset(size=32, n_train=6, n_test_good=3, n_test_anomalous=3)
    train = data.load("train", detector.input_spec, 0)
    test = data.load("test", detector.input_spec, 0)
    ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path("."))
    prediction = detector.fit(train, ctx).predict(test)
    assert prediction.scores.shape == (6,) and prediction.maps.shape == (6, 32, 32)
    assert detector.fit_info_ == {"n_train": 6}
    assert detector.flags == [] and detector.inference_info == {}
    assert detector.gflops_per_image(test.image_size) is None
    with pytest.raises(ConfigError, match=r"^mean_distance\.top_k must be in 1\.\.image_size"):
        registry.build_params("mean_distance", "paper", {"top_k": "0"})


def test_readme_example_runs_as_a_bench_job(
    example: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def tiny(spec: str, root: object) -> SyntheticDataset:
        return SyntheticDataset("brick", n_train=6, n_test_good=3, n_test_anomalous=3, size=32)

    monkeypatch.setattr(job, "make_dataset", tiny)
    results = tmp_path / "results"
    argv = ["run", "--methods", "mean_distance", "--preset", "paper", "--device", "cpu"]
    argv += ["--timing-repeats", "1", "--results-dir", str(results)]
    assert bench_exit_code(argv) == 0
    (path,) = results.glob("*/jobs/*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok", record.get("error")
    assert record["fit_info"]["n_train"] >= 1  # the method's own fit_info_
    assert record["inference"] == {} and record["gflops_per_image"] is None
    # No flag of the method's own; the runner flags the tiny set's small calibration hold-out.
    assert [f for f in record["flags"] if not f.startswith("calibration:")] == []


# -- one checker, the same messages -----------------------------------------------------------


def test_field_check_names_method_field_and_value() -> None:
    check = field_check("mymethod", BareParams(image_size=3))
    check(True, "image_size", ">= 8")  # nothing
    with pytest.raises(ConfigError) as info:
        check(False, "image_size", ">= 8")
    assert str(info.value) == "mymethod.image_size must be >= 8, got 3"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: RadarParams(scorer="bogus"),
            "radar.scorer must be one of iforest, gaussian, irf, raw, got 'bogus'",
        ),
        (
            lambda: RadarParams(infer_precision="fp8"),
            "radar.infer_precision must be one of ('train', 'fp32', 'tf32', 'bf16', 'fp16'), "
            "got 'fp8'",
        ),
        (lambda: RadarParams(inference="tiles"), "radar.inference must be patches or full, got "),
        (lambda: RadarParams(precision="fp16"), "radar.precision must be fp32 or bf16, got 'fp16'"),
        (
            lambda: RadarParams(gaussian_covariance="x"),
            "radar.gaussian_covariance must be one of ('full', 'diagonal', 'ledoitwolf'), got 'x'",
        ),
        (lambda: RadarParams(irf_reduce="min"), "radar.irf_reduce must be max or topk, got 'min'"),
        (
            lambda: RadarParams(block_out_channels=[]),
            "radar.block_out_channels must be a non-empty tuple of channel counts, got ()",
        ),
        (lambda: RadarParams(norm_num_groups=0), "radar.norm_num_groups must be >= 1, got 0"),
        (
            lambda: RadarParams(block_out_channels=(32, 48), norm_num_groups=32),
            "radar.block_out_channels must be positive multiples of norm_num_groups (32), "
            "got (32, 48)",
        ),
        (lambda: RadarParams(layers_per_block=0), "radar.layers_per_block must be >= 1, got 0"),
        (
            lambda: RadarParams(num_train_timesteps=0),
            "radar.num_train_timesteps must be >= 1, got 0",
        ),
        (
            lambda: RadarParams(beta_schedule="cosine"),
            "radar.beta_schedule must be one of ('linear', 'scaled_linear', 'squaredcos_cap_v2', "
            "'sigmoid'), got 'cosine'",
        ),
        (
            lambda: DiffusionADParams(num_train_timesteps=1),
            "diffusionad.num_train_timesteps must be >= 2, got 1",
        ),
        (
            lambda: DiffusionADParams(anomalous_noise_loss="all"),
            "diffusionad.anomalous_noise_loss must be large_step or none, got 'all'",
        ),
        (
            lambda: DDPMReconParams(layers_per_block=0),
            "ddpm_recon.layers_per_block must be >= 1, got 0",
        ),
        (
            lambda: DDPMReconParams(distance="l2"),
            "ddpm_recon.distance must be one of l1, ssim, l1_ssim, got 'l2'",
        ),
        (lambda: DDPMReconParams(score="mean"), "ddpm_recon.score must be max or topk, got 'mean'"),
        (lambda: DDPMReconParams(sampler="euler"), "ddpm_recon.sampler must be one of ddpm, ddim"),
        (lambda: IForestParams(n_estimators=0), "iforest.n_estimators must be >= 1, got 0"),
        (lambda: PCAParams(contamination=0.9), "pca.contamination must be in (0, 0.5], got 0.9"),
    ],
)
def test_parameter_errors_keep_their_words(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message)


def test_the_unet_block_keeps_each_methods_order_and_defaults() -> None:
    # The shared checks changed nothing that a record holds: the fields keep their place.
    assert list(RadarParams.__dataclass_fields__)[2:8] == [
        "block_out_channels",
        "layers_per_block",
        "norm_num_groups",
        "attention",
        "num_train_timesteps",
        "beta_schedule",
    ]
    for cls in (DiffusionADParams, DDPMReconParams):
        names = list(cls.__dataclass_fields__)
        assert names[:3] == ["image_size", "grayscale", "block_out_channels"], cls
    assert RadarParams(block_out_channels=[8, 16], norm_num_groups=8).block_out_channels == (8, 16)
    params = DDPMReconParams(image_size=16, block_out_channels=(8, 16), norm_num_groups=8)
    torch.manual_seed(0)
    shared = unet_from(params, 16, 1)
    torch.manual_seed(0)
    direct = build_unet(16, 1, (8, 16), 2, 8, True)
    assert shared.config == direct.config
    for a, b in zip(shared.parameters(), direct.parameters(), strict=True):
        assert torch.equal(a, b)


# -- enumerations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params_cls", "field", "values"),
    [
        (RadarParams, "scorer", SCORERS),
        (RadarParams, "infer_precision", PRECISIONS),
        (RadarParams, "compile", COMPILE_MODES),
        (DDPMReconParams, "distance", DISTANCES),
        (DDPMReconParams, "sampler", SAMPLERS),
    ],
)
def test_allowed_values_are_the_literal_types(params_cls: type, field: str, values: tuple) -> None:
    assert get_args(get_type_hints(params_cls)[field]) == values


def test_anomalib_weights_literal_knows_every_lite_package() -> None:
    from bench.methods.anomalib import adapter as aa
    from bench.methods.anomalib import imagenet_lite as lite

    assert get_args(aa.Weights) == ("auto", "pretrained", "random", *lite.VARIANTS)


def test_cpu_only_comes_from_the_registry_entry() -> None:
    assert cpu_only("pca") and cpu_only("iforest")
    assert not cpu_only("radar")


# -- the anomalib adapter's own weight lookup --------------------------------------------------


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every weight cache an empty folder, as on CI."""
    import anomalib.utils.path as apath
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(apath, "get_pretrained_weights_dir", lambda: tmp_path / "anomalib")
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield tmp_path
    torch.hub.set_dir(before)


def _anomalib(method: str, **sets: str) -> Method[Any]:
    return registry.build_detector(method, registry.build_params(method, "paper", sets))


def test_anomalib_adapter_names_its_pretrained_weights(empty_caches: Path) -> None:
    padim = _anomalib("padim")
    (missing,) = padim.required_weights()
    assert isinstance(missing, WeightFile) and not missing.present
    assert missing.what.startswith("timm resnet18")
    assert prepare.weight_files(padim) == [missing]  # bench prepare asks the hook
    assert padim.weights_hint() == "; or run with random initialisation: --set padim.weights=random"
    assert _anomalib("padim", weights="random").required_weights() == []
    assert _anomalib("ganomaly").required_weights() == []  # needs no weights at all
    assert _anomalib("stfpm").weights_hint() == "; Stfpm cannot run without them"
    # the suite's own methods train from scratch
    radar = registry.build_detector("radar", RadarParams())
    assert radar.required_weights() == [] and prepare.weight_files(radar) == []


def test_anomalib_lite_weights_are_a_package(empty_caches: Path) -> None:
    from bench.methods.anomalib import imagenet_lite as lite

    variant = lite.VARIANTS["imagenet:lite0"]
    if not variant.installed():
        pytest.skip(f"{variant.package} is not installed")
    assert _anomalib("padim", weights="imagenet:lite0").required_weights() == [
        variant.weight_entry()
    ]
