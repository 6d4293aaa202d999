"""anomalib adapter: typed parameters from constructor signatures, weight checks, and a tiny fit
of every registered model that can run offline (random weights); the others must fail clearly.
Output shapes, same seed -> same scores, the image-size check and the JSON round trip of the
parameters are every method's contract: test_method_contract.py."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import ANOMALIB_OFFLINE, ANOMALIB_TINY

from bench.datasets.synthetic import SyntheticDataset
from bench.evaluation.metrics import compute_metrics
from bench.interface import RunContext
from bench.methods import registry
from bench.util.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

aa = pytest.importorskip("bench.methods.anomalib.adapter")
wts = pytest.importorskip("bench.methods.anomalib.weights")

OFFLINE = ANOMALIB_OFFLINE  # models that run offline, at tiny settings
NEEDS_PRETRAINED = [
    "efficientad",
    "stfpm",
    "supersimplenet",
    "dinomaly",
    "uflow",
    "csflow",
    "cfa",
    "dsr",
]


@pytest.fixture(scope="module")
def tiny_sets():
    ds = SyntheticDataset(size=32, n_train=6, n_test_good=3, n_test_anomalous=3)
    spec = aa.AnomalibDetector(
        aa.params_class("Padim", "padim")(image_size=32), "Padim", "padim"
    ).input_spec
    return ds.load("train", spec, 0), ds.load("test", spec, 0)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Point every weight cache at an empty folder, as on CI."""
    import anomalib.utils.path as apath
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(apath, "get_pretrained_weights_dir", lambda: tmp_path / "anomalib")
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield tmp_path
    torch.hub.set_dir(before)


def test_every_named_model_is_registered():
    known = registry.methods()
    for name in [*OFFLINE, *NEEDS_PRETRAINED]:
        assert name in known, name
    assert set(aa.MODEL_NAMES) == set(OFFLINE) | set(NEEDS_PRETRAINED)
    # further models discovered from anomalib.models are registered too
    assert "glass" in known and known["glass"].summary.startswith("anomalib Glass")


def test_params_are_typed_from_the_signature():
    params = registry.build_params(
        "patchcore",
        "paper",
        {"coreset_sampling_ratio": "0.01", "layers": "layer2,layer3", "weights": "random"},
    )
    assert params.coreset_sampling_ratio == 0.01
    assert params.layers == ("layer2", "layer3")
    assert params.image_size == 256 and params.max_epochs == 1
    fields = registry.param_fields(type(params))
    assert "pre_trained" not in fields and "post_processor" not in fields
    # enums become their values; unions of scalars and tuples are kept
    dfkde = registry.param_fields(aa.params_class("Dfkde", "dfkde"))
    assert dfkde["feature_scaling_method"][1] == "scale"
    assert registry.build_params("draem", "paper", {"beta": "0.3"}).beta == 0.3
    assert registry.build_params("draem", "paper", {"beta": "0.1,0.5"}).beta == (0.1, 0.5)
    assert registry.build_params("efficientad").train_batch_size == 1
    assert registry.build_params("padim", "quick").image_size == 128


@pytest.mark.parametrize(
    ("name", "sets", "needle"),
    [
        ("patchcore", {"coreset_sampling_ratio": "lots"}, "expected a number"),
        ("padim", {"weights": "maybe"}, "expected one of auto, pretrained, random"),
        ("padim", {"pre_trained": "true"}, "unknown parameter of padim"),
        ("dfkde", {"feature_scaling_method": "bogus"}, "expected one of"),
        ("stfpm", {"weights": "random"}, "always loads pretrained weights"),
    ],
)
def test_bad_values_give_one_line_errors(name, sets, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        registry.build_params(name, "paper", sets)
    assert "\n" not in str(info.value)


def test_any_anomalib_class_resolves_by_name():
    entry = registry.get_method("anomalib:Padim")
    assert entry.name == "anomalib:Padim"
    params = registry.build_params("anomalib:Padim", "paper", {"backbone": "resnet34"})
    assert registry.build_detector("anomalib:Padim", params).class_name == "Padim"
    with pytest.raises(ConfigError, match="did you mean 'Padim'"):
        registry.get_method("anomalib:Padm")


def test_weight_availability_reads_local_caches(empty_caches):
    assert wts.required_weights("Ganomaly", {}) == []
    (missing,) = wts.required_weights("Padim", {"backbone": "resnet18"})
    assert not missing.present and "resnet18" in missing.what
    assert "runs offline with padim.weights=random" in wts.availability(
        "Padim", {"backbone": "resnet18"}, "padim"
    )
    # a file in anomalib's folder is found
    target = empty_caches / "anomalib" / "dsr" / "vq_model_pretrained_128_4096.pckl"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert wts.availability("Dsr", {}) == "available"


@pytest.mark.parametrize("name", NEEDS_PRETRAINED)
def test_models_without_local_weights_fail_clearly(name, empty_caches, tiny_sets, tmp_path):
    params = registry.build_params(name, "paper", {"image_size": "32"})
    detector = registry.build_detector(name, params)
    ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=tmp_path / "w")
    with pytest.raises(ConfigError, match="pretrained weights not found locally") as info:
        detector.fit(tiny_sets[0], ctx)
    text = str(info.value)
    assert "\n" not in text and "expected /" in text and name in text


def test_auto_weights_error_names_the_random_flag(empty_caches, tiny_sets, tmp_path):
    detector = registry.build_detector("padim", registry.build_params("padim"))
    ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"--set padim.weights=random"):
        detector.fit(tiny_sets[0], ctx)


@pytest.mark.parametrize("name", list(OFFLINE))
def test_offline_models_fit_and_predict(name, tiny_sets, tmp_path, capfd):
    train, test = tiny_sets
    sets = {**ANOMALIB_TINY, **OFFLINE[name]}
    if wts.needs_weights(aa.MODEL_NAMES[name]):
        sets["weights"] = "random"
    params = registry.build_params(name, "paper", sets)
    detector = registry.build_detector(name, params)
    ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=tmp_path / "work")
    pred = detector.fit(train, ctx).predict(test)

    metrics = compute_metrics(test, pred)
    assert 0.0 <= metrics["auroc"] <= 1.0
    random_init = sets.get("weights") == "random"
    assert detector.flags == (["weights:random"] if random_init else [])
    assert detector.fit_info_["validation"] == "training normals"
    assert detector.gflops_per_image(test.image_size) > 0
    # Lightning writes to the run folder, not to the terminal
    assert (tmp_path / "work" / "lightning.log").is_file()
    out, err = capfd.readouterr()
    assert "GPU available" not in out + err and "Coreset" not in out + err


def test_hub_offline_is_restored():
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    with wts.hub_offline():
        assert constants.HF_HUB_OFFLINE is True
    assert before == constants.HF_HUB_OFFLINE


def test_quick_patchcore_uses_the_papers_one_percent_coreset():
    quick = registry.build_params("patchcore", "quick", {"weights": "random"})
    paper = registry.build_params("patchcore", "paper", {"weights": "random"})
    assert quick.coreset_sampling_ratio == 0.01 and paper.coreset_sampling_ratio == 0.1
    assert quick.image_size == 128


def test_patchcore_gflops_count_the_nearest_neighbour_search(tiny_sets, tmp_path):
    """The count is of the fitted model: a bigger memory bank costs the distance matmul of
    every test patch (and of the image's most anomalous patch, re-weighting the score) against
    the extra bank rows, 2 FLOPs per multiply-add."""
    train, test = tiny_sets
    counts, banks = [], []
    for ratio in (0.1, 1.0):
        sets = {**ANOMALIB_TINY, **OFFLINE["patchcore"], "weights": "random"}
        sets["coreset_sampling_ratio"] = ratio
        params = registry.build_params("patchcore", "paper", sets)
        detector = registry.build_detector("patchcore", params)
        detector.fit(train, RunContext(seed=0, device=torch.device("cpu"), work_dir=tmp_path))
        counts.append(detector.gflops_per_image(test.image_size))
        banks.append(detector.module_.model.memory_bank.shape)
    (small, dim), (big, _) = banks
    assert big > small
    model = detector.module_.model
    seen = []
    reshape = model.reshape_embedding
    model.reshape_embedding = lambda e: seen.append(e.shape[-2] * e.shape[-1]) or reshape(e)
    detector.gflops_per_image(test.image_size)  # one image, as counted
    queries = seen[0] + 1  # the test image's patches, then its most anomalous one
    assert counts[1] - counts[0] == pytest.approx(2 * queries * (big - small) * dim / 1e9)


def test_training_compute_is_counted_as_it_runs(tiny_sets, tmp_path):
    """fit_info.train_gflops counts every training step, forward and backward: twice the
    epochs over the same batches, twice the FLOPs (and the same per image seen)."""
    train, _ = tiny_sets
    counts = []
    for epochs in (1, 2):
        sets = {**ANOMALIB_TINY, "flow_steps": 2, "weights": "random", "max_epochs": epochs}
        detector = registry.build_detector(
            "fastflow", registry.build_params("fastflow", "paper", sets)
        )
        detector.fit(train, RunContext(seed=0, device=torch.device("cpu"), work_dir=tmp_path))
        counts.append(detector.fit_info_)
    one, two = counts
    assert one["train_gflops"] > 0
    assert two["train_gflops"] == pytest.approx(2 * one["train_gflops"])
    assert two["train_gflops_per_sample"] == pytest.approx(one["train_gflops_per_sample"])
    # forward + backward: more than one forward pass of the model per image seen
    forward = detector.gflops_per_image(train.image_size)
    assert one["train_gflops_per_sample"] > forward
