"""Shared back end: Fourier-slice projection, iterative reconstruction, Fourier shell correlation.

Orientations and shifts follow :mod:`nanorecon.geometry`; maps are (z, y, x) with the centre at
index ``N // 2``; numpy arrays run on the CPU (finufft), cupy arrays on the GPU (cufinufft, or
Kaiser–Bessel gridding with cupy alone where cufinufft is missing).
"""

from ._fsc import HalfSetResult, fsc, half_set_reconstruction, resolution_at
from ._gridding import GriddingPlan
from ._matching import (
    RefinementResult,
    atomic_reference,
    cross_correlation_shifts,
    refine_orientations,
)
from ._projector import FourierSliceProjector, as_rotation_matrices, backproject, project
from ._reconstruct import ReconstructionResult, reconstruct

__all__ = [
    "FourierSliceProjector",
    "GriddingPlan",
    "HalfSetResult",
    "ReconstructionResult",
    "RefinementResult",
    "as_rotation_matrices",
    "atomic_reference",
    "backproject",
    "cross_correlation_shifts",
    "fsc",
    "half_set_reconstruction",
    "project",
    "reconstruct",
    "refine_orientations",
    "resolution_at",
]
