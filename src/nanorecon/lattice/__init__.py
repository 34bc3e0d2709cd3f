"""Lattice analysis of traced atoms: structure identification (adaptive CNA), twin planes, a global
least-squares cubic lattice fit, per-atom displacement and strain, coordination and the radial
interatomic-distance profile.

Positions are (N, 3) arrays of (x, y, z) [Å] in the particle's map frame (see
:mod:`nanorecon.geometry`), or DataFrames with columns ``x_A, y_A, z_A``.
"""

from ._analyse import analyse_lattice
from ._cna import common_neighbour_analysis
from ._depth import depth_below_surface_A
from ._elements import (
    atomic_number,
    bulk_lattice_parameter_A,
    bulk_nearest_neighbour_distance_A,
    vegard_lattice_parameter_A,
)
from ._fit import CUBIC_ROTATIONS, LatticeFit, fit_lattice, nearest_sites
from ._neighbours import coordination_numbers, nearest_neighbour_distance_A, radial_distance_profile
from ._site_score import SiteScore, lattice_site_score
from ._strain import STRAIN_COLUMNS, local_strain, strain_components, strain_matrices
from ._twins import find_twin_planes
from ._vacancies import empty_sites_inside

__all__ = [
    "CUBIC_ROTATIONS",
    "STRAIN_COLUMNS",
    "LatticeFit",
    "SiteScore",
    "analyse_lattice",
    "atomic_number",
    "bulk_lattice_parameter_A",
    "bulk_nearest_neighbour_distance_A",
    "common_neighbour_analysis",
    "coordination_numbers",
    "depth_below_surface_A",
    "empty_sites_inside",
    "find_twin_planes",
    "fit_lattice",
    "lattice_site_score",
    "local_strain",
    "nearest_neighbour_distance_A",
    "nearest_sites",
    "radial_distance_profile",
    "strain_components",
    "strain_matrices",
    "vegard_lattice_parameter_A",
]
