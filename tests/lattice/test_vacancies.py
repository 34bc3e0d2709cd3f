"""Empty sites inside a traced particle: the atoms a map lost are found, a whole particle has none."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_atoms import fcc_sphere

from nanorecon.lattice import empty_sites_inside, fit_lattice

A = 3.92  # Pt [Å]


def _fcc_sphere(radius_A: float) -> np.ndarray:
    return fcc_sphere(radius_A, euler_zyz_deg=[20, 35, -50], shift_A=[0.7, -0.4, 1.1], a_A=A)


def test_the_removed_interior_atoms_are_the_empty_sites():
    atoms = _fcc_sphere(11.0)
    centre = atoms.mean(axis=0)
    interior = np.flatnonzero(np.linalg.norm(atoms - centre, axis=1) < 6.0)
    removed = interior[[0, 3, 7]]
    kept = np.delete(atoms, removed, axis=0)
    fit = fit_lattice(kept, structure="fcc")
    assert len(empty_sites_inside(atoms, fit_lattice(atoms, structure="fcc"))) == 0
    empty = empty_sites_inside(kept, fit)
    assert len(empty) == 3
    order = np.lexsort(empty.T)
    assert empty[order] == pytest.approx(atoms[removed][np.lexsort(atoms[removed].T)], abs=0.01)
    # an atom displaced by less than the tolerance still fills its site
    jittered = kept + np.random.default_rng(0).normal(scale=0.15, size=kept.shape)
    assert len(empty_sites_inside(jittered, fit)) == 3


def test_sets_without_volume_have_no_inside():
    atoms = _fcc_sphere(8.0)
    fit = fit_lattice(atoms, structure="fcc")
    assert empty_sites_inside(atoms[:3], fit).shape == (0, 3)
    flat = atoms[np.abs(atoms[:, 2] - atoms[0, 2]) < 1e-6]
    assert empty_sites_inside(flat, fit).shape == (0, 3)
