"""Pixel-space statistical baselines: own decisions, PCA maps, seeds, and a runner job (shapes,
same seed -> same numbers and one bad value each: test_method_contract.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import CpuContext

from bench.datasets.synthetic import SyntheticDataset
from bench.evaluation.metrics import compute_metrics
from bench.interface import ImageSet
from bench.methods import registry
from bench.methods.classical import PCAParams, PixelDetector, pixel_vectors
from bench.util.errors import ConfigError
from bench.util.flops import count_gflops

NAMES = ["iforest", "ocsvm", "lof", "pca"]


@pytest.fixture(scope="module")
def sets():
    ds = SyntheticDataset(size=48, n_train=30, n_test_good=10, n_test_anomalous=10)
    spec = registry.build_detector(
        "pca", registry.build_params("pca", "paper", {"image_size": "48"})
    )
    return ds.load("train", spec.input_spec, 0), ds.load("test", spec.input_spec, 0)


def test_pixel_vectors_average_areas():
    x = torch.zeros(1, 3, 4, 4)
    x[..., :2, :2] = 1.0
    v = pixel_vectors(x, 2)
    assert v.shape == (1, 4)
    assert torch.allclose(v, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_fit_predict_metrics_and_own_threshold(name, sets, cpu_ctx: CpuContext):
    train, test = sets
    params = registry.build_params(name, "paper", {"image_size": "48", "vector_size": "16"})
    pred = registry.build_detector(name, params).fit(train, cpu_ctx()).predict(test)
    m = compute_metrics(test, pred)
    assert 0.0 <= m["auroc"] <= 1.0
    # the own threshold is set from ~contamination of the training images (OCSVM's nu is
    # only a bound: it flags more of its support vectors)
    if name == "ocsvm":
        return
    train_pred = registry.build_detector(name, params).fit(train, cpu_ctx()).predict(train)
    assert train_pred.decisions.float().mean() <= 0.2


def test_pca_detects_a_planted_bright_square(cpu_ctx: CpuContext):
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 16, 16, generator=g)
    train = base + 0.02 * torch.randn(20, 1, 16, 16, generator=g)
    test = torch.cat([base.clone(), base.clone()])
    test[1, :, 4:8, 4:8] += 0.8
    mk = lambda x, y: ImageSet(x.clamp(0, 1), torch.tensor(y), None, [f"{i}" for i in y])  # noqa: E731
    det = PixelDetector("pca", PCAParams(image_size=16, vector_size=16, standardize=False))
    pred = det.fit(mk(train, [0] * 20), cpu_ctx()).predict(mk(test, [0, 1]))
    assert pred.scores[1] > 10 * pred.scores[0]
    assert pred.decisions.tolist() == [0, 1]
    # the residual map peaks inside the square
    peak = int(pred.maps[1].argmax())
    assert 4 <= peak // 16 < 8 and 4 <= peak % 16 < 8


def test_iforest_is_seeded(sets, cpu_ctx: CpuContext):
    # The same seed gives the same scores: test_method_contract.py; another seed, other scores.
    train, test = sets
    params = registry.build_params("iforest", "paper", {"image_size": "48"})
    a = registry.build_detector("iforest", params).fit(train, cpu_ctx(1)).predict(test).scores
    c = registry.build_detector("iforest", params).fit(train, cpu_ctx(2)).predict(test).scores
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("name", "sets_", "needle"),
    [  # one more bad value of each method: test_method_contract.py
        ("ocsvm", {"kernel": "cubic"}, "expected one of rbf"),
    ],
)
def test_bad_parameters(name, sets_, needle):
    with pytest.raises(ConfigError, match=needle):
        registry.build_params(name, "paper", sets_)


def test_runner_records_a_classical_job(tmp_path):
    from bench.execution import runner
    from bench.execution.config import RunConfig

    cfg = RunConfig(methods=["pca", "iforest"], datasets=["synthetic"], device="cpu")
    cfg.timing_repeats = 1
    outcome = runner.run(cfg, results_dir=tmp_path)
    assert not outcome.failed, [r.get("error") for r in outcome.failed]
    by_method = {r["method"]: r for r in outcome.records}
    assert by_method["pca"]["metrics"]["pixel_auroc"] is not None
    assert 0.0 <= by_method["iforest"]["metrics"]["auroc"] <= 1.0


def test_gflops_count_each_estimators_arithmetic(sets, cpu_ctx: CpuContext):
    """PCA's count is torch's counter on the same projection and reconstruction; the others
    follow what the fitted estimator kept (support vectors, training vectors, tree depths)."""
    train, test = sets
    fitted = {}
    for name in NAMES:
        params = registry.build_params(name, "paper", {"image_size": "48", "vector_size": "16"})
        det = registry.build_detector(name, params)
        assert det.gflops_per_image(test.image_size) is None  # nothing fitted, nothing to count
        fitted[name] = det.fit(train, cpu_ctx())
    d = 16 * 16
    pca = fitted["pca"].estimator_
    comps = torch.from_numpy(pca.components_).float()
    x = torch.zeros(1, d)
    assert fitted["pca"].gflops_per_image(test.image_size) == pytest.approx(
        count_gflops(lambda: (x @ comps.T) @ comps)
    )
    n_sv = len(fitted["ocsvm"].estimator_.support_vectors_)
    assert fitted["ocsvm"].gflops_per_image(test.image_size) == 2 * d * n_sv / 1e9
    assert fitted["lof"].gflops_per_image(test.image_size) == 2 * d * len(train) / 1e9
    # 100 trees on 30 vectors: each at least one split deep, at most 29
    assert 100 <= fitted["iforest"].gflops_per_image(test.image_size) * 1e9 <= 100 * 29
