"""The DDPM core: the closed-form formulas against diffusers, and the U-Net layout."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.methods.diffusion.ddpm import (
    add_noise,
    alpha_bar,
    build_unet,
    make_scheduler,
    noise_prediction_loss,
    x0_from_eps,
)

TIMESTEPS = [0, 1, 10, 250, 999]


@pytest.mark.parametrize("t", TIMESTEPS)
def test_x0_from_eps_matches_scheduler_step(t: int) -> None:
    scheduler = make_scheduler(1000, "linear", clip_sample=False)
    g = torch.Generator().manual_seed(t)
    x_t, eps_hat = torch.randn(2, 1, 6, 6, generator=g), torch.randn(2, 1, 6, 6, generator=g)
    expected = scheduler.step(eps_hat, t, x_t).pred_original_sample
    torch.testing.assert_close(x0_from_eps(scheduler, x_t, eps_hat, t), expected)


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_x0_from_eps_inverts_add_noise(schedule: str) -> None:
    scheduler = make_scheduler(1000, schedule)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(len(TIMESTEPS), 1, 5, 5, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor(TIMESTEPS)  # one timestep per image
    x_t = add_noise(scheduler, x0, eps, t)
    torch.testing.assert_close(x0_from_eps(scheduler, x_t, eps, t), x0, rtol=0, atol=1e-9)


def test_add_noise_is_the_closed_form() -> None:
    scheduler = make_scheduler()
    x0, eps = torch.full((1, 1, 2, 2), 0.5), torch.ones(1, 1, 2, 2)
    abar = float(scheduler.alphas_cumprod[7])
    expected = abar**0.5 * 0.5 + (1 - abar) ** 0.5
    torch.testing.assert_close(add_noise(scheduler, x0, eps, 7), torch.full_like(x0, expected))


def test_alpha_bar_broadcasts_per_image() -> None:
    scheduler = make_scheduler()
    like = torch.zeros(3, 1, 4, 4)
    abar = alpha_bar(scheduler, torch.tensor([0, 1, 999]), like)
    assert abar.shape == (3, 1, 1, 1)
    assert abar[0] > abar[1] > abar[2] > 0


@pytest.mark.parametrize("attention", [True, False])
def test_unet_layout(attention: bool) -> None:
    unet = build_unet(16, 1, block_out_channels=(8, 16, 16), norm_num_groups=8, attention=attention)
    down = [type(b).__name__ for b in unet.down_blocks]
    up = [type(b).__name__ for b in unet.up_blocks]
    if attention:
        assert down == ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
        assert up == ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
    else:
        assert down == ["DownBlock2D"] * 3
        assert up == ["UpBlock2D"] * 3
        assert unet.mid_block.attentions[0] is None
    out = unet(torch.randn(2, 1, 16, 16), torch.tensor([1, 500])).sample
    assert out.shape == (2, 1, 16, 16)


def test_loss_draws_timesteps_below_max_t_from_the_generator() -> None:
    seen: list[torch.Tensor] = []

    def unet(x: torch.Tensor, t: torch.Tensor) -> SimpleNamespace:
        seen.append(t)
        return SimpleNamespace(sample=torch.zeros_like(x))

    scheduler = make_scheduler()
    x0 = torch.zeros(4096, 1, 2, 2)
    loss = noise_prediction_loss(unet, scheduler, x0, torch.Generator().manual_seed(0), max_t=5)
    assert int(seen[0].max()) == 4 and int(seen[0].min()) == 0
    # A zero prediction of unit-variance noise: the loss is about 1.
    assert abs(float(loss) - 1.0) < 0.05
    again = noise_prediction_loss(unet, scheduler, x0, torch.Generator().manual_seed(0), max_t=5)
    assert torch.equal(seen[0], seen[1]) and float(loss) == float(again)
    noise_prediction_loss(unet, scheduler, x0, torch.Generator().manual_seed(0))
    assert int(seen[2].max()) > 900  # all T by default
