"""A test image's score depends on that image alone: every method that draws noise at inference
(radar, diffusionad, ddpm_recon) draws each image's noise from a generator seeded by the job's
seed and the image's name, so the set around it, its position and the batch size do not matter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import RADAR_TINY

from bench.interface import ImageSet, RunContext
from bench.methods.ddpm_recon import DDPMRecon, DDPMReconParams
from bench.methods.diffusionad.detector import DiffusionAD, DiffusionADParams
from bench.methods.radar.detector import Radar, RadarParams
from bench.util.seeding import image_generators, image_seed, per_image_randn

N_TEST = 9


pytestmark = pytest.mark.threads(1)  # also while the module's detectors are fitted


def _images(n: int, size: int, seed: int, split: str) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    images[n // 2 :, :, 4:10, 4:10] = 1.0  # a bright square: anomalous-looking images
    return ImageSet(images, torch.zeros(n, dtype=torch.long), None,
                    [f"{split}/good/{i:03d}.png" for i in range(n)])  # fmt: skip


def _radar(b: int) -> Radar:
    return Radar(RadarParams(**{**RADAR_TINY, "infer_batch": 4 * b}))


def _diffusionad(b: int) -> DiffusionAD:
    params = DiffusionADParams(image_size=32, grayscale=True, block_out_channels=(8, 16),
        norm_num_groups=8, seg_base_width=4, epochs=1, batch_size=4, top_k=5,
        infer_batch=b)  # fmt: skip
    return DiffusionAD(params)


def _ddpm_recon(b: int) -> DDPMRecon:
    # sampler ddpm (the default): posterior noise at every reverse step, drawn per image too.
    params = DDPMReconParams(image_size=16, grayscale=True, block_out_channels=(8, 16),
        norm_num_groups=8, epochs=1, batch_size=4, t_start=20, steps=2, map_sigma=1.0,
        infer_batch=b)  # fmt: skip
    return DDPMRecon(params)


# name -> (build a detector at inference batch b, image size)
METHODS: dict[str, tuple[Callable[[int], object], int]] = {
    "radar": (_radar, 32),
    "diffusionad": (_diffusionad, 32),
    "ddpm_recon": (_ddpm_recon, 16),
}


@pytest.fixture(scope="module", params=list(METHODS))
def fitted(request: pytest.FixtureRequest) -> tuple[str, Callable[[int], object], int]:
    """(method, a fitted detector at inference batch b, image size); one training per method."""
    name = request.param
    build, size = METHODS[name]
    ctx = RunContext(seed=3, device=torch.device("cpu"), work_dir=Path("."))
    with torch.random.fork_rng():
        base = build(16).fit(_images(8, size, 0, "train"), ctx)

    def at_batch(b: int) -> object:
        # The fitted state with another inference batch size (no second training).
        other = build(b)
        other.__dict__.update({k: v for k, v in base.__dict__.items() if k != "params"})
        if name == "radar":
            other.infer_batch_ = other.params.infer_batch
        return other

    return name, at_batch, size


def test_scores_do_not_depend_on_the_set_order_or_batch(fitted: tuple) -> None:
    name, at_batch, size = fitted
    test = _images(N_TEST, size, 1, "test")
    detector = at_batch(16)
    whole = detector.predict(test).scores.double()
    assert whole.isfinite().all() and whole.std() > 0

    order = torch.randperm(N_TEST, generator=torch.Generator().manual_seed(5))
    shuffled = torch.empty_like(whole)
    shuffled[order] = detector.predict(test.subset(order)).scores.double()
    alone = torch.cat([detector.predict(test.subset([i])).scores.double() for i in range(N_TEST)])
    tol = {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close(shuffled, whole, **tol, msg=f"{name}: shuffled set")
    torch.testing.assert_close(alone, whole, **tol, msg=f"{name}: each image alone")
    for b in (1, 7, 64):
        batched = at_batch(b)
        chunks = [list(range(i, min(i + b, N_TEST))) for i in range(0, N_TEST, b)]
        scores = torch.cat([batched.predict(test.subset(c)).scores.double() for c in chunks])
        torch.testing.assert_close(scores, whole, **tol, msg=f"{name}: batch size {b}")


def test_an_image_keeps_its_noise_under_another_name_only_if_the_name_is_the_same() -> None:
    a = per_image_randn(image_generators(0, ["x.png", "y.png"], "cpu"), (2, 1, 4, 4), "cpu")
    b = per_image_randn(image_generators(0, ["y.png", "x.png"], "cpu"), (2, 1, 4, 4), "cpu")
    assert torch.equal(a, b.flip(0))
    other_seed = per_image_randn(image_generators(1, ["x.png"], "cpu"), (1, 1, 4, 4), "cpu")
    assert not torch.equal(a[:1], other_seed)
    assert image_seed(0, "x.png") == image_seed(0, "x.png") != image_seed(0, "y.png")
    with pytest.raises(ValueError, match="2 generators for 3 images"):
        per_image_randn(image_generators(0, ["x", "y"], "cpu"), (3, 1, 4, 4), "cpu")
