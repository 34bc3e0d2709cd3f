"""Brownian front end: liquid-cell movie → per-particle stacks.

Dose normalisation, graphene notch filter and background removal, stage drift, particle
detection (local lattice-fringe power), linking into tracks with gap closing, cutting at
overlaps and field exits, sub-pixel centred boxes, CTF phase flipping and frame quality; ab initio
orientations of each particle's frames (every frame matched to an ideal crystal of the sheet's
lattice, or a model-free PRIME-style stochastic search, both with a rotational-diffusion prior
linking consecutive frames), local refinement of orientations and centring (exhaustive search
under the same prior), and the per-particle chain on to refined half maps and FSC.
Everything takes and returns arrays or DataFrames; the ``nanorecon track`` and ``nanorecon
extract`` verbs read the movie block by block and write through :mod:`nanorecon.io`.
"""

from ._abinitio import (
    AbInitioResult,
    OrientationAlignment,
    ab_initio_orientations,
    align_orientations,
    so3_grid,
)
from ._crystal import CUBIC_GROUP, crystal_orientations, crystal_reference, fundamental_zone
from ._ctf import ctf_sign, phase_flip
from ._detect import DETECTION_COLUMNS, detect_particles, fringe_power_map
from ._drift import DriftState, estimate_drift
from ._extract import extract_boxes, fringe_quality, initial_orientations, select_frames
from ._local import LocalRefinement, refine_locally
from ._mask import particle_mask, resample_mask
from ._pipeline import MovieTracking, track_movie
from ._prepare import (
    GRAPHENE_SPACINGS_A,
    frequency_magnitude,
    lattice_notch_filter,
    normalise_dose,
    power_spectrum_sum,
    remove_background,
)
from ._prior import (
    DiffusionEstimate,
    brownian_log_prior,
    estimate_rotational_diffusion,
    smooth_orientations,
)
from ._reconstruct import (
    ParticleReconstruction,
    high_resolution_bands,
    reconstruct_particle,
    time_block_half_sets,
)
from ._track import (
    LEFT_FIELD,
    NOT_DETECTED,
    OVERLAP,
    SHORT_TRACK,
    TRACK_COLUMNS,
    flag_tracks,
    link_detections,
    track_summary,
)

__all__ = [
    "AbInitioResult",
    "CUBIC_GROUP",
    "crystal_orientations",
    "crystal_reference",
    "fundamental_zone",
    "LocalRefinement",
    "refine_locally",
    "particle_mask",
    "resample_mask",
    "ParticleReconstruction",
    "high_resolution_bands",
    "reconstruct_particle",
    "time_block_half_sets",
    "DiffusionEstimate",
    "OrientationAlignment",
    "ab_initio_orientations",
    "align_orientations",
    "brownian_log_prior",
    "estimate_rotational_diffusion",
    "smooth_orientations",
    "so3_grid",
    "DETECTION_COLUMNS",
    "GRAPHENE_SPACINGS_A",
    "LEFT_FIELD",
    "NOT_DETECTED",
    "OVERLAP",
    "SHORT_TRACK",
    "TRACK_COLUMNS",
    "DriftState",
    "MovieTracking",
    "ctf_sign",
    "detect_particles",
    "estimate_drift",
    "extract_boxes",
    "flag_tracks",
    "frequency_magnitude",
    "fringe_power_map",
    "fringe_quality",
    "initial_orientations",
    "lattice_notch_filter",
    "link_detections",
    "normalise_dose",
    "phase_flip",
    "power_spectrum_sum",
    "remove_background",
    "select_frames",
    "track_movie",
    "track_summary",
]
