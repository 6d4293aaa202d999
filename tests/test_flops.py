import pytest
import torch

from bench.flops import count_gflops
from bench.methods.ddpm import build_unet
from bench.methods.patches import patch_starts


def test_paper_unet_costs_match_the_published_numbers():
    # Brief: 0.55 GFLOP per 28x28 patch, 5329 patches = 2,935 GFLOP per 100x100 image in patch
    # mode, and 7.0 GFLOP for one whole-image pass.
    per_patch = count_gflops(build_unet(28, 1), torch.zeros(1, 1, 28, 28), torch.tensor([1]))
    n = len(patch_starts(100, 28, 1)) ** 2
    assert n == 5329
    assert per_patch * n == pytest.approx(2935, rel=0.01)
    whole = count_gflops(build_unet(100, 1), torch.zeros(1, 1, 100, 100), torch.tensor([1]))
    assert whole == pytest.approx(7.0, rel=0.02)


def test_linear_layer_is_two_flops_per_multiply_add():
    assert count_gflops(torch.nn.Linear(1000, 1000, bias=False), torch.zeros(1, 1000)) == (
        pytest.approx(2e-3)
    )
