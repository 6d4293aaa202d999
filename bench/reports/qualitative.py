"""The qualitative grid: for a few test images per defect type, the input, the ground-truth
mask and each method's anomaly map, side by side (the figure every anomaly-detection paper has,
e.g. Bergmann et al., "MVTec AD", CVPR 2019, Fig. 5).

Columns are images (grouped by defect type, normal ones last), rows are input / ground truth /
one per method. Each method's maps share one colour scale across all its images (so a normal
image that stays dark is a good sign); the ground-truth outline is drawn on every map. The
arrays come from the run folder (:mod:`bench.evaluation.examples`), never from a rerun.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.reports.charts import STYLE
from bench.store.schema import Field

CELL_IN = 0.62  # side of one thumbnail, inches
LABEL_IN = 0.75  # room for the row labels
MAP_CMAP = "inferno"  # perceptually uniform and colour-blind safe


def _as_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) uint8 -> something imshow takes, with a grey colour map for one channel."""
    if image.ndim == 3 and image.shape[0] == 1:
        return image[0], "gray"
    if image.ndim == 3:
        return np.moveaxis(image, 0, -1), None
    return image, "gray"


def qualitative_grid(grid: pd.DataFrame, title: str = "") -> Figure:
    """``grid``: one row per (method, image) with ``method, name, defect_type, image, mask,
    map`` (see :func:`bench.reports.load.grid_long`); ``map`` is None for methods without maps.
    """
    methods = list(dict.fromkeys(grid[Field.METHOD]))
    images = grid.drop_duplicates("name").set_index("name")
    names = list(images.index)
    has_mask = images["mask"].map(lambda m: m is not None).any()
    row_titles = ["input", *(["ground truth"] if has_mask else []), *methods]
    n_rows, n_cols = len(row_titles), len(names)
    with mpl.rc_context(STYLE):
        fig = Figure(
            figsize=(LABEL_IN + CELL_IN * n_cols, 0.35 + CELL_IN * n_rows), layout="constrained"
        )
        fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        for j, name in enumerate(names):
            shown, cmap = _as_display(images.at[name, "image"])
            axes[0, j].imshow(shown, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            axes[0, j].set_title(images.at[name, "defect_type"], fontsize=6, pad=2)
            if has_mask:
                mask = images.at[name, "mask"]
                blank = np.zeros(shown.shape[:2], dtype=bool)
                axes[1, j].imshow(
                    blank if mask is None else mask,
                    cmap="gray",
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
        first = 2 if has_mask else 1
        for i, method in enumerate(methods, start=first):
            rows = grid[grid[Field.METHOD] == method].set_index("name")
            maps = [m for m in rows["map"] if m is not None]
            if maps:
                lo = float(min(np.nanmin(m) for m in maps))
                hi = float(max(np.nanmax(m) for m in maps))
            for j, name in enumerate(names):
                ax = axes[i, j]
                the_map = rows["map"].get(name) if name in rows.index else None
                if the_map is None:
                    ax.text(
                        0.5,
                        0.5,
                        "no map",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="0.4",
                        transform=ax.transAxes,
                    )
                    continue
                ax.imshow(
                    the_map,
                    cmap=MAP_CMAP,
                    vmin=lo,
                    vmax=max(hi, lo + 1e-12),
                    interpolation="nearest",
                )
                mask = images.at[name, "mask"]
                if mask is not None and mask.any():
                    ax.contour(mask, levels=[0.5], colors="#56B4E9", linewidths=0.5)
        for i, label in enumerate(row_titles):
            axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        if title:
            fig.suptitle(title, fontsize=8, x=0.01, ha="left")
    return fig
