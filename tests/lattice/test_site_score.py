"""The lattice site score: a map that lost atoms or traced stray ones scores worse, though its
fit residual alone would rank it better."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_atoms import fcc_sphere

from nanorecon.lattice import fit_lattice, lattice_site_score

A = 3.92  # Pt [Å]


def _fcc_sphere(radius_A: float) -> np.ndarray:
    return fcc_sphere(radius_A, euler_zyz_deg=[-40, 70, 15], shift_A=[1.3, 0.2, -0.8], a_A=A)


def _score(positions):
    return lattice_site_score(positions, fit_lattice(positions, structure="fcc"))


def test_a_complete_model_scores_its_rms_displacement():
    atoms = _fcc_sphere(11.0)
    ideal = _score(atoms)
    assert (ideal.n_atoms, ideal.n_outliers, ideal.n_empty) == (len(atoms), 0, 0)
    assert ideal.score_A == pytest.approx(0.0, abs=1e-9)
    jitter = np.random.default_rng(1).normal(scale=0.1, size=atoms.shape)
    jittered = _score(atoms + jitter)
    displaced_A = np.sqrt(np.mean(np.sum(jitter**2, axis=1)))  # 0.17 Å
    assert jittered.n_empty == 0
    assert jittered.score_A == pytest.approx(jittered.rms_residual_A)
    assert jittered.score_A == pytest.approx(displaced_A, rel=0.1)


def test_lost_atoms_count_the_cap():
    atoms = _fcc_sphere(11.0)
    centre = atoms.mean(axis=0)
    interior = np.flatnonzero(np.linalg.norm(atoms - centre, axis=1) < 7.0)
    kept = np.delete(atoms, interior[::3], axis=0)
    scored = _score(kept)
    n_lost = len(interior[::3])
    assert scored.n_empty == n_lost
    assert scored.rms_residual_A == pytest.approx(0.0, abs=1e-9)
    # kept atoms sit on their sites: only the empty sites count, each the cap a/4
    expected = np.sqrt(n_lost * (0.25 * A) ** 2 / (len(kept) + n_lost))
    assert scored.score_A == pytest.approx(expected, rel=1e-3)


def test_a_model_that_lost_atoms_ranks_below_a_complete_noisier_one():
    rng = np.random.default_rng(2)
    atoms = _fcc_sphere(12.0)
    centre = atoms.mean(axis=0)
    interior = np.flatnonzero(np.linalg.norm(atoms - centre, axis=1) < 8.0)
    lost = np.delete(atoms, interior[::5], axis=0) + rng.normal(scale=0.06, size=(1, 3))
    lost = lost + rng.normal(scale=0.06, size=lost.shape)
    complete = atoms + rng.normal(scale=0.1, size=atoms.shape)
    lost_score, complete_score = _score(lost), _score(complete)
    # the fit residual alone prefers the map that lost a fifth of its core
    assert lost_score.rms_residual_A < complete_score.rms_residual_A
    assert lost_score.score_A > complete_score.score_A


def test_a_stray_atom_counts_the_cap():
    atoms = _fcc_sphere(9.0)
    fit = fit_lattice(atoms, structure="fcc")
    # an extra atom half-way between two neighbouring sites, no site nearer than a/(2√2)
    stray = (atoms[0] + atoms[np.argsort(np.linalg.norm(atoms - atoms[0], axis=1))[1]]) / 2
    with_stray = np.vstack([atoms, stray])
    scored = lattice_site_score(with_stray, fit_lattice(with_stray, structure="fcc"))
    assert scored.n_outliers == 1
    assert scored.score_A == pytest.approx(0.25 * A / np.sqrt(len(with_stray)), rel=1e-3)
    assert lattice_site_score(atoms, fit).score_A < scored.score_A


def test_the_cap_must_be_positive():
    atoms = _fcc_sphere(8.0)
    with pytest.raises(ValueError, match="cap must be positive"):
        lattice_site_score(atoms, fit_lattice(atoms, structure="fcc"), cap=0.0)
