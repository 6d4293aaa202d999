"""From RADAR's predicted-noise map to a pixel anomaly map and two image features.

On normal content the U-Net's predicted noise looks like the injected white noise; on a defect
the prediction has structure. A Gaussian blur suppresses the white-noise part, and the Sobel
gradient magnitude of what remains outlines the structured regions: that processed map is the
pixel anomaly map. Each image is then summarised by two numbers, the L2 norm of the whole map
and the largest L2 norm over any ``window x window`` square (a small defect barely moves the
first but dominates the second).

>>> import torch
>>> m = torch.zeros(1, 1, 16, 16)
>>> m[..., 8:] = 1.0  # a vertical step: Sobel (normalised) gives 0.5 on the two edge columns
>>> processed = anomaly_map(m, blur_sigma=0.0)
>>> processed[0, 0, 0, 6:10].tolist()
[0.0, 0.5, 0.5, 0.0]
>>> image_features(processed, window=8)  # [sqrt(2 * 16 * 0.25), sqrt(2 * 8 * 0.25)]
tensor([[2.8284, 2.0000]])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, sobel
from torch import Tensor


def blur_kernel_size(sigma: float) -> int:
    """The odd kernel size covering +-3 sigma."""
    return 2 * math.ceil(3.0 * sigma) + 1


def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur (kernel +-3 sigma, reflect border) of (N, C, H, W) maps; ``sigma=0``: none."""
    x = x.float()
    if sigma <= 0:
        return x
    k = blur_kernel_size(sigma)
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def anomaly_map(noise_map: Tensor, blur_sigma: float = 1.0) -> Tensor:
    """Sobel gradient magnitude of the Gaussian-blurred noise map; (N, C, H, W) -> (N, 1, H, W).

    ``blur_sigma=0`` skips the blur (an ablation). Several channels are combined by the root of
    the summed squared magnitudes. The magnitude is taken with ``eps=0`` so that a flat map gives
    exactly zero.
    """
    mag = sobel(blur(noise_map, blur_sigma), normalized=True, eps=0.0)
    if mag.shape[1] > 1:
        mag = mag.square().sum(1, keepdim=True).sqrt()
    return mag


def image_features(processed: Tensor, window: int = 8) -> Tensor:
    """(N, 1, H, W) -> (N, 2): [global L2 norm, max L2 norm over window x window squares]."""
    sq = processed.float().square()
    global_norm = sq.flatten(1).sum(1).sqrt()
    # The mean over a window times its area is the window's sum of squares.
    local_sq = F.avg_pool2d(sq, window, stride=1) * (window * window)
    local_norm = local_sq.flatten(1).amax(1).clamp_min(0).sqrt()
    return torch.stack([global_norm, local_norm], dim=1)
