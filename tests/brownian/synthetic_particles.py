"""Shared synthetic particles of the Brownian tests (imported through tests/brownian/conftest.py)."""

from __future__ import annotations

import numpy as np

from nanorecon.simulate import make_particle


def asymmetric_particle(rng: np.random.Generator, diameter_nm: float):
    """Pt atoms of an fcc crystal cut to a triaxial ellipsoid with one flat facet.

    A perfect crystal sphere is (nearly) as symmetric as its lattice, so its orientations would
    only be defined up to the point group; this shape has no symmetry. Returns (positions [Å],
    centred; elements).
    """
    crystal = make_particle(shape="sphere", diameter_nm=1.3 * diameter_nm, rng=rng)
    positions = crystal.positions_A
    radius_A = 5.0 * diameter_nm
    keep = ((positions / (np.array([1.15, 0.95, 0.75]) * radius_A)) ** 2).sum(axis=1) <= 1
    facet = np.array([0.3, -0.5, 0.81]) / np.linalg.norm([0.3, -0.5, 0.81])
    keep &= positions @ facet < 0.5 * radius_A
    positions = positions[keep] - positions[keep].mean(axis=0)
    return positions, crystal.elements[keep]
