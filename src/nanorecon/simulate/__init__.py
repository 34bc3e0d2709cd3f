"""Synthetic datasets with known atoms: particles, HAADF tilt series and liquid-cell HRTEM movies.

Particles are built with ase (fcc spheres, octahedra, decahedra, icosahedra; alloys; surface
relaxation); tilt series use incoherent Z^1.7 contrast with tilt errors, shifts, support and Poisson
noise; movies use the weak-phase object approximation with a CTF, Brownian motion, graphene and
liquid. Every function takes and returns arrays, dataclasses or DataFrames; :mod:`nanorecon.io`
writes them.
"""

from ._haadf import TiltSeriesResult, haadf_cross_sections_A2, project_haadf, simulate_tilt_series
from ._hrtem import (
    aberration_phase,
    contrast_transfer,
    electron_wavelength_A,
    interaction_constant,
    potential_gaussians,
    project_potential,
    weak_phase_image,
)
from ._motion import (
    brownian_rotations,
    brownian_translations,
    place_particles,
    rotation_step_rms_deg,
)
from ._movie import MovieResult, simulate_movie
from ._particles import (
    SHAPES,
    Particle,
    fcc_equivalent_lattice_parameter_A,
    make_particle,
    vegard_lattice_parameter_A,
)
from ._render import atoms_to_volume, pixel_integrated_gaussians, project_gaussians
from ._specs import MovieSpec, ParticleSpec, TomographySpec

__all__ = [
    "SHAPES",
    "MovieResult",
    "MovieSpec",
    "Particle",
    "ParticleSpec",
    "TiltSeriesResult",
    "TomographySpec",
    "aberration_phase",
    "atoms_to_volume",
    "brownian_rotations",
    "brownian_translations",
    "contrast_transfer",
    "electron_wavelength_A",
    "fcc_equivalent_lattice_parameter_A",
    "haadf_cross_sections_A2",
    "interaction_constant",
    "make_particle",
    "pixel_integrated_gaussians",
    "place_particles",
    "potential_gaussians",
    "project_gaussians",
    "project_haadf",
    "project_potential",
    "rotation_step_rms_deg",
    "simulate_movie",
    "simulate_tilt_series",
    "vegard_lattice_parameter_A",
    "weak_phase_image",
]
