from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def meandiff():
    from helpers import register_meandiff

    register_meandiff()
    return "meandiff"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: skipped, with the reason, where there is none.
    On a GPU, ``pytest -m cuda`` runs exactly them (results/gpu/next.sh, gpu_run.sh)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked cuda: pytest -m cuda on a GPU)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
