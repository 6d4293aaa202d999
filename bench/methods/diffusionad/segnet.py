"""DiffusionAD's segmentation sub-network and its loss.

The network is DRAEM's discriminative U-Net (Zavrtanik et al., ICCV 2021), which DiffusionAD
(Zhang et al., 2023) reuses: it reads the input image and its reconstruction, channel-
concatenated, and outputs one logit per pixel. anomalib ships it
(:class:`anomalib.models.image.draem.torch_model.DiscriminativeSubNetwork`); it pools five
times, so the image side must be a multiple of 32.

The loss is DiffusionAD's: ``focal_weight * focal + smooth_l1`` between the predicted anomaly
probability and the synthetic mask. The official code weighs the focal term by 5 and uses its
``BinaryFocalLoss()`` defaults, ``alpha = 0.5`` (the same factor on both classes) and
``gamma = 4``.

>>> import torch
>>> net = build_segnet(in_channels=1, base_width=8)
>>> logits = net(torch.zeros(2, 2, 32, 32))
>>> logits.shape
torch.Size([2, 1, 32, 32])
>>> float(segmentation_loss(logits, torch.zeros(2, 32, 32, dtype=torch.bool)).detach()) > 0
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

SEGNET_DIVISOR = 32  # five 2x poolings


def build_segnet(in_channels: int, base_width: int = 64, init_prior: float = 0.0) -> nn.Module:
    """DRAEM's discriminative U-Net on ``[image, reconstruction]`` (2 * in_channels) -> 1 logit.

    ``init_prior`` in (0, 1) sets the output bias so that every pixel starts at that anomaly
    probability (the prior initialisation of the focal-loss paper, Lin et al., ICCV 2017); 0 keeps
    PyTorch's default initialisation, as DiffusionAD's code does.
    """
    net = DiscriminativeSubNetwork(
        in_channels=2 * in_channels, out_channels=1, base_width=base_width
    )
    if init_prior:
        output = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]  # the 1-channel head
        assert output.out_channels == 1, output
        with torch.no_grad():
            output.bias.fill_(math.log(init_prior / (1 - init_prior)))
    return net


def segmentation_loss(
    logits: Tensor,
    masks: Tensor,
    focal_weight: float = 5.0,
    focal_gamma: float = 4.0,
    focal_alpha: float = 0.5,
) -> Tensor:
    """``focal_weight * focal(logits, mask) + smooth_l1(sigmoid(logits), mask)``.

    ``logits`` (N, 1, H, W), ``masks`` (N, H, W) bool. With ``focal_alpha = 0.5`` torchvision's
    focal loss equals DiffusionAD's ``BinaryFocalLoss`` (``0.5 * (1 - p_t) ** gamma * BCE``).
    """
    target = masks[:, None].to(logits.dtype)
    focal = sigmoid_focal_loss(
        logits, target, alpha=focal_alpha, gamma=focal_gamma, reduction="mean"
    )
    return focal_weight * focal + F.smooth_l1_loss(logits.sigmoid(), target)
