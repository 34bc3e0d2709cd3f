"""Figures of the results: arrays and DataFrames in, matplotlib figures out.

The figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state; PNGs are
written through the Agg canvas), so they are safe in workers and on machines without a display.
Lengths are in Å, angles in degrees, strain in %; every image panel carries a scale bar.
Saving is left to the caller (``nanorecon figures``).
"""

from ._brownian import orientation_coverage, plot_orientation_coverage, plot_tracks
from ._dataset import plot_lattice_vs_size, plot_runtime
from ._fsc import plot_fsc
from ._maps import (
    ZONE_AXES,
    plot_map_views,
    plot_zone_axis_views,
    zone_axis_frame,
    zone_axis_volume,
)
from ._model import STRAIN_COMPONENTS, plot_atomic_model
from ._radial import plot_radial_profile
from ._strain import atomic_layers, plot_strain_layers
from ._style import FIGURE_SIZES_IN
from ._tomography import alignment_corrections, plot_alignment, plot_tilt_series

__all__ = [
    "FIGURE_SIZES_IN",
    "STRAIN_COMPONENTS",
    "ZONE_AXES",
    "alignment_corrections",
    "atomic_layers",
    "orientation_coverage",
    "plot_alignment",
    "plot_atomic_model",
    "plot_fsc",
    "plot_lattice_vs_size",
    "plot_map_views",
    "plot_orientation_coverage",
    "plot_radial_profile",
    "plot_runtime",
    "plot_strain_layers",
    "plot_tilt_series",
    "plot_tracks",
    "plot_zone_axis_views",
    "zone_axis_frame",
    "zone_axis_volume",
]
