"""Tomography front end: HAADF background and intensity, tilt-series pre-alignment, particle stack.

Turns a raw single-axis tilt series into the common particle stack of the back end: background
removed, intensities normalised, shifts and tilt axis estimated, cropped to a box, orientations
from :func:`nanorecon.geometry.tilt_series_rotations`.
"""

from ._alignment import (
    axial_profiles,
    centre_of_mass_shifts,
    estimate_tilt_axis,
    neighbour_shifts,
    prealign_tilt_series,
)
from ._background import normalise_intensity, remove_background
from ._stack import (
    TiltSeriesStack,
    estimate_particle_radius,
    prepare_tilt_series,
    spherical_support,
)
from ._validation import TruthMap, alignment_errors, render_truth_map

__all__ = [
    "TiltSeriesStack",
    "TruthMap",
    "alignment_errors",
    "estimate_particle_radius",
    "prepare_tilt_series",
    "render_truth_map",
    "spherical_support",
    "axial_profiles",
    "centre_of_mass_shifts",
    "estimate_tilt_axis",
    "neighbour_shifts",
    "normalise_intensity",
    "prealign_tilt_series",
    "remove_background",
]
