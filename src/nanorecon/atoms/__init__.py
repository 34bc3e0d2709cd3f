"""Atom tracing in 3D density maps: peak finding, sub-voxel Gaussian fits with neighbour
subtraction, non-atom rejection, species classification by intensity, and half-map position
uncertainties, and refinement of the positions against the measured projections.

Maps are indexed (z, y, x) with index N//2 at 0 Å; atom tables give (x, y, z) in Å (see
:mod:`nanorecon.geometry`).
"""

from ._refine import PositionRefinement, project_atoms, refine_positions
from ._reject import coordination_filter, half_map_significance
from ._species import classify_species
from ._trace import COLUMNS, half_map_sigma, trace_atoms

__all__ = [
    "COLUMNS",
    "PositionRefinement",
    "classify_species",
    "coordination_filter",
    "half_map_sigma",
    "half_map_significance",
    "project_atoms",
    "refine_positions",
    "trace_atoms",
]
