"""Shared figure plumbing: Agg-backed figures, default sizes, scale bars and image panels."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

__all__ = ["FIGURE_SIZES_IN", "add_scale_bar", "image_panel", "new_figure", "nice_length"]

#: default size (width, height) [inch] of each figure kind; PNG pixels = size × dpi
FIGURE_SIZES_IN: dict[str, tuple[float, float]] = {
    "fsc": (7.0, 4.5),
    "map_axes": (10.5, 7.0),
    "map_zone_axes": (10.5, 7.0),
    "model": (12.0, 7.5),
    "strain_layers": (16.0, 8.0),
    "radial_profile": (7.0, 4.5),
    "alignment": (11.0, 7.5),
    "tilt_series": (12.0, 3.2),
    "lattice_vs_size": (7.0, 4.5),
    "runtime": (10.0, 4.5),
    "tracks": (6.5, 6.0),
    "orientation_coverage": (8.0, 4.5),
}


def new_figure(kind: str, figsize_in: tuple[float, float] | None = None) -> Figure:
    """A stand-alone figure (no pyplot state; saved through the Agg canvas)."""
    size = FIGURE_SIZES_IN[kind] if figsize_in is None else figsize_in
    return Figure(figsize=size, layout="constrained")


def nice_length(span: float) -> float:
    """A 1-2-5 length close to a fifth of `span` (same unit)."""
    if not span > 0:
        raise ValueError(f"span must be positive, not {span}")
    target = span / 5.0
    power = 10.0 ** np.floor(np.log10(target))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= target:
            return float(step * power)
    return float(10.0 * power)


def add_scale_bar(ax: Axes, span_A: float, *, color: str = "white") -> float:
    """Draw a labelled scale bar in data units of Å on an image axis; return its length [Å]."""
    length = nice_length(span_A)
    label = f"{length / 10:g} nm" if length >= 10 else f"{length:g} Å"
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        label,
        "lower right",
        pad=0.3,
        color=color,
        frameon=False,
        size_vertical=span_A / 100.0,
    )
    ax.add_artist(bar)
    return length


def image_panel(
    ax: Axes,
    image: np.ndarray,
    pixel_size_A: float,
    *,
    title: str,
    xlabel: str = "x [Å]",
    ylabel: str = "y [Å]",
    **imshow: Any,
) -> Any:
    """Show an image (rows y, columns x) in Å centred on pixel N//2, with a scale bar."""
    rows, cols = image.shape
    extent = (
        (-(cols // 2) - 0.5) * pixel_size_A,
        (cols - cols // 2 - 0.5) * pixel_size_A,
        (-(rows // 2) - 0.5) * pixel_size_A,
        (rows - rows // 2 - 0.5) * pixel_size_A,
    )
    artist = ax.imshow(
        image, origin="lower", extent=extent, cmap=imshow.pop("cmap", "gray"), **imshow
    )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    add_scale_bar(ax, extent[1] - extent[0])
    return artist
