"""Rejection of non-atoms: spurious surface peaks of a full map that independent half maps do not
reproduce, and peaks without a plausible number of bonded neighbours."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from synthetic_atoms import pt_particle, render_map

from nanorecon.atoms import coordination_filter, trace_atoms
from nanorecon.validate import match_atoms

XYZ = ["x_A", "y_A", "z_A"]
FE_HEIGHT = (26 / 78) ** 1.7  # render_map's Fe peak height (Pt = 1)


def _spurious(truth, n, seed):
    """``n`` Fe-sized 'atoms' 2.3 Å radially outside random surface atoms, ≥ 2 Å from all atoms
    and from each other: noise peaks at the particle surface."""
    rng = np.random.default_rng(seed)
    pos = truth[XYZ].to_numpy()
    radius = np.linalg.norm(pos, axis=1)
    surface = pos[radius > np.percentile(radius, 70)]
    out = []
    for p in surface[rng.permutation(len(surface))]:
        q = p * (1.0 + 2.3 / np.linalg.norm(p))
        if cKDTree(pos).query(q)[0] > 2.0 and all(np.linalg.norm(q - o) > 2.0 for o in out):
            out.append(q)
        if len(out) == n:
            break
    return pd.DataFrame(
        {"x_A": [q[0] for q in out], "y_A": [q[1] for q in out], "z_A": [q[2] for q in out]}
    ).assign(element="Fe")


def _maps(truth, noise, seed):
    """Full map and two half maps, each with its own voxel noise and its own spurious peaks
    at different places (their noise is not shared: a reconstruction is no average of its half
    reconstructions)."""
    fakes = _spurious(truth, 30, seed)
    maps = []
    for i in range(3):
        fake = fakes.iloc[i::3]
        sigma = noise if i == 0 else noise * np.sqrt(2.0)
        volume = render_map(pd.concat([truth, fake]), box=72, noise=sigma, seed=seed + i)
        maps.append(volume)
    return maps[0], maps[1:]


@pytest.fixture(scope="module")
def fept():
    truth = pt_particle(length=6, cutoff=2, relaxation_A=0.0, jitter_A=0.02, a_A=3.85, seed=21)
    truth["element"] = np.where(np.random.default_rng(22).random(len(truth)) < 0.5, "Fe", "Pt")
    full, halves = _maps(truth, noise=0.015, seed=23)
    return truth, full, halves


def _scores(traced, truth):
    pairs = match_atoms(traced[XYZ].to_numpy(), truth[XYZ].to_numpy(), match_distance_A=0.8)
    same = traced["element"].to_numpy()[pairs[:, 0]] == truth["element"].to_numpy()[pairs[:, 1]]
    return len(pairs) / len(truth), len(pairs) / len(traced), same.mean()


def test_peaks_not_reproduced_in_both_half_maps_are_rejected(fept):
    truth, full, halves = fept
    # Without the reproducibility test the spurious peaks are traced as atoms.
    loose = trace_atoms(
        full, 0.35, elements=["Fe", "Pt"], half_maps=halves, half_map_sigmas=-np.inf
    )
    recall, precision, _ = _scores(loose, truth)
    assert recall >= 0.99 and precision < 0.97

    traced = trace_atoms(full, 0.35, elements=["Fe", "Pt"], half_maps=halves)
    recall, precision, species = _scores(traced, truth)
    assert recall >= 0.99 and precision >= 0.99
    assert species >= 0.97
    assert traced.attrs["n_rejected"] >= 8
    assert (traced["half_significance"] >= 5.0).all()
    assert traced["sigma_A"].notna().mean() > 0.95


def test_coordination_rejects_isolated_peaks(fept):
    truth, full, _ = fept
    traced = trace_atoms(full, 0.35, elements=["Fe", "Pt"], min_neighbours=3)
    recall, precision, _ = _scores(traced, truth)
    assert recall >= 0.99 and precision >= 0.99
    assert traced["half_significance"].isna().all()


def test_coordination_filter_removes_unsupported_chains():
    # A tetrahedron (3 bonds each) and a chain leading away from it (≤ 2 bonds): the chain goes
    # atom by atom, the tetrahedron stays.
    tetra = 2.5 / np.sqrt(8.0) * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1.0]])
    chain = tetra[0] + np.outer(np.arange(1, 4), [2.5, 0.0, 0.0])
    keep = coordination_filter(np.vstack([tetra, chain]), bond_range_A=(2.0, 3.0), min_neighbours=3)
    assert keep.tolist() == [True] * 4 + [False] * 3
