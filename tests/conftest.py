"""Shared fixtures: pinned torch thread counts, small seeded image sets, run contexts, tiny
U-Nets; and the marks that skip what this machine cannot or should not run by default."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from helpers import (
    CpuContext,
    RandomImages,
    TinyUNet,
    make_cpu_ctx,
    make_random_images,
    make_tiny_unet,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def meandiff():
    from helpers import register_meandiff

    register_meandiff()
    return "meandiff"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: skipped, with the reason, where there is none.
    On a GPU, ``pytest -m cuda`` runs exactly them (results/gpu/next.sh, gpu_run.sh).

    Tests marked ``benchmark`` compare wall-clock times with a budget, which says as much about
    the machine's load as about the code: they run only when asked for (``pytest -m benchmark``).
    """
    skips: list[tuple[str, pytest.MarkDecorator]] = []
    if not torch.cuda.is_available():
        reason = "needs CUDA (marked cuda: pytest -m cuda on a GPU)"
        skips.append(("cuda", pytest.mark.skip(reason=reason)))
    if "benchmark" not in (config.getoption("markexpr", "") or ""):
        reason = "wall-clock budget (marked benchmark: pytest -m benchmark)"
        skips.append(("benchmark", pytest.mark.skip(reason=reason)))
    for item in items:
        for keyword, skip in skips:
            if keyword in item.keywords:
                item.add_marker(skip)


# -- torch's thread count ----------------------------------------------------------------------
# CPU reductions split work by thread, so bit-identical results need a fixed thread count; one
# thread also keeps tiny networks from oversubscribing a shared machine. A module (pytestmark)
# or a test asks for one with ``@pytest.mark.threads(n)``.


def _threads_asked(node: pytest.Item | pytest.Collector) -> int | None:
    marker = node.get_closest_marker("threads")
    return None if marker is None else int(marker.args[0])


@pytest.fixture(autouse=True, scope="module")
def _module_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """The module's thread count, already in place for its module-scoped fixtures (a detector
    fitted once and shared by several tests)."""
    before, asked = torch.get_num_threads(), _threads_asked(request.node)
    if asked is not None:
        torch.set_num_threads(asked)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _test_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts at its asked-for thread count and leaves the count as it found it (the
    runner sets it from ``--threads``, which must not leak into the next test)."""
    before, asked = torch.get_num_threads(), _threads_asked(request.node)
    if asked is not None:
        torch.set_num_threads(asked)
    yield
    torch.set_num_threads(before)


# -- small inputs ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def random_images() -> RandomImages:
    """``random_images(n, size, seed=0, name="good/{i:03d}.png")``: ``n`` uniform-noise
    grayscale ``size`` px images, all normal, seeded. Names matter: the diffusion methods seed
    each image's noise from its name (bench.util.seeding.image_seed)."""
    return make_random_images


@pytest.fixture(scope="session")
def cpu_ctx() -> CpuContext:
    """``cpu_ctx(seed=0, work_dir=Path("."), cache_dir=None, progress=None)``: a CPU run context."""
    return make_cpu_ctx


@pytest.fixture(scope="session")
def tiny_unet() -> TinyUNet:
    """``tiny_unet(sample_size, block_out_channels)``: a one-channel U-Net with 8 channels per
    group in eval mode, initialised from seed 0 whatever the global RNG (a fresh one per call)."""
    return make_tiny_unet
