"""What a run keeps for the qualitative grid: a few test images, masks and maps, downsampled.

The images are chosen by name (the first ``per_type`` of each defect type, in name order), never
by score, so that every method of a dataset shows the same images and nobody picks flattering
ones. Everything is shrunk to at most ``max_side`` pixels: the grid is a thumbnail figure, and a
run folder must stay small. Reports read these arrays back and never rerun a model.

>>> import torch
>>> from bench.interface import ImageSet, Prediction
>>> test = ImageSet(torch.rand(3, 1, 128, 96), torch.tensor([0, 1, 1]),
...                 torch.zeros(3, 128, 96, dtype=torch.bool), ["b", "a", "c"],
...                 ["good", "crack", "crack"])
>>> ex = example_maps(test, Prediction(scores=torch.rand(3), maps=torch.rand(3, 128, 96)))
>>> ex["names"].tolist(), ex["images"].shape, ex["maps"].shape
(['a', 'c', 'b'], (3, 1, 64, 48), (3, 64, 48))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bench.interface import ImageSet, Prediction

PER_TYPE = 2
MAX_SIDE = 64


def pick_examples(names: list[str], defect_types: list[str], per_type: int = PER_TYPE) -> list[int]:
    """Indices of the first ``per_type`` images (by name) of every defect type, anomalies first
    (in name order of the type), then the normal ("good") ones."""
    chosen: dict[str, list[int]] = {}
    for i in sorted(range(len(names)), key=lambda i: names[i]):
        picked = chosen.setdefault(defect_types[i], [])
        if len(picked) < per_type:
            picked.append(i)
    order = sorted(chosen, key=lambda t: (t == "good", t))
    return [i for t in order for i in chosen[t]]


def _thumb_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def example_maps(
    test: ImageSet, pred: Prediction, per_type: int = PER_TYPE, max_side: int = MAX_SIDE
) -> dict[str, np.ndarray]:
    """The arrays the qualitative grid needs, ready for ``np.savez``.

    ``images`` uint8 (K, C, h, w); ``masks`` bool (K, h, w) when the set has masks; ``maps``
    float32 (K, h, w) when the method returns maps.
    """
    idx = pick_examples(test.names, test.defect_types, per_type)
    size = _thumb_size(*test.image_size, max_side)
    images = F.interpolate(test.images[idx].float().cpu(), size=size, mode="area")
    out: dict[str, np.ndarray] = {
        "names": np.array([test.names[i] for i in idx], dtype=str),
        "defect_types": np.array([test.defect_types[i] for i in idx], dtype=str),
        "labels": test.labels[idx].cpu().numpy().astype(np.int8),
        "images": (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(),
    }
    if test.masks is not None:
        # Max-pooling keeps thin defects (scratches) visible where averaging would erase them.
        masks = F.adaptive_max_pool2d(test.masks[idx].float().cpu()[:, None], size)[:, 0]
        out["masks"] = masks.cpu().numpy() > 0.5
    if pred.maps is not None:
        maps = pred.maps[idx].detach().float().cpu()  # only the chosen ones leave the device
        small = F.interpolate(maps[:, None], size=size, mode="area")[:, 0]
        out["maps"] = small.numpy().astype(np.float32)  # float16 would overflow on raw distances
    return out
