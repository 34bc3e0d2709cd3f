"""The particle's own mask: where its map holds lattice fringes."""

from __future__ import annotations

import numpy as np
import pytest

from nanorecon.brownian import particle_mask, resample_mask
from nanorecon.brownian._mask import FINAL_MAP_MARGIN_A, grow_mask
from nanorecon.simulate._render import atoms_to_volume

SIZE, VOXEL_A, LATTICE_A = 80, 0.4, 3.92


@pytest.fixture(scope="module")
def octahedron():
    """Pt-like fcc octahedron (vertex atoms 7.8 Å out) in a 13 Å sphere filled with noise.

    A plain map of a tumbling particle holds density out to its spherical support (noise, and
    the blur of orientation errors); only the crystal holds fringes.
    """
    axis = np.arange(-4, 5)
    cells = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 1, 3)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    sites = ((cells + basis) * LATTICE_A).reshape(-1, 3)
    sites = sites[np.abs(sites).sum(axis=1) <= 10.0]
    volume = atoms_to_volume(
        sites, np.ones(len(sites)), (SIZE,) * 3, VOXEL_A, 0.45, dtype=np.float32
    )
    z, y, x = (np.indices((SIZE,) * 3) - SIZE // 2) * VOXEL_A
    sphere = np.sqrt(x**2 + y**2 + z**2) <= 13.0
    rng = np.random.default_rng(0)
    noisy = volume + rng.normal(0, 0.3 * volume.max(), volume.shape) * sphere
    return {
        "map": np.clip(noisy, 0, None) * sphere,
        "sites": sites,
        "sphere": sphere,
        "l1": np.abs(x) + np.abs(y) + np.abs(z),
    }


def test_mask_follows_the_crystal_not_the_support(octahedron):
    mask = particle_mask(octahedron["map"], voxel_size_A=VOXEL_A, support=octahedron["sphere"])
    assert mask.dtype == bool and mask.shape == (SIZE,) * 3
    # every atom inside, vertices included (sites are (x, y, z); the map is (z, y, x))
    index = np.round(octahedron["sites"] / VOXEL_A + SIZE // 2).astype(int)
    assert mask[index[:, 2], index[:, 1], index[:, 0]].all()
    # Measured: 93 % of the octahedron grown by 1.5 Å, nothing 5 Å past its faces, 22 % of the
    # sphere.
    assert mask[octahedron["l1"] <= 11.5].mean() > 0.85
    assert not mask[octahedron["l1"] > 15.0].any()
    assert mask.sum() < 0.35 * octahedron["sphere"].sum()
    assert not mask[~octahedron["sphere"]].any()


def test_grown_mask_keeps_the_outer_atoms_whole(octahedron):
    """The own mask ends near the outer atoms' centres; grown by the final maps' margin it holds
    their whole density (the final maps are reconstructed within it and traced)."""
    mask = particle_mask(octahedron["map"], voxel_size_A=VOXEL_A, support=octahedron["sphere"])
    grown = grow_mask(mask, FINAL_MAP_MARGIN_A, VOXEL_A)
    assert grown.dtype == bool and (grown >= mask).all()
    outer = octahedron["sites"][np.abs(octahedron["sites"]).sum(axis=1) > 7.0]
    own_share, grown_share = [], []
    for site in outer:
        atom = atoms_to_volume(site[None], np.ones(1), (SIZE,) * 3, VOXEL_A, 0.45)
        own_share.append(atom[mask].sum() / atom.sum())
        grown_share.append(atom[grown].sum() / atom.sum())
    # Measured: the own mask keeps 92.6 % of the worst outer atom's density, grown 99.96 %
    assert min(own_share) < 0.97
    assert min(grown_share) > 0.995
    # ... for 41 % more volume
    assert grown.sum() < 1.6 * mask.sum()


def test_grow_mask_adds_the_voxels_within_the_margin():
    rng = np.random.default_rng(1)
    mask = rng.random((12, 12, 12)) > 0.995
    grown = grow_mask(mask, 1.1, 0.5)
    voxels = np.indices(mask.shape).reshape(3, -1).T
    seeds = np.argwhere(mask)
    nearest = np.sqrt(((voxels[:, None] - seeds[None]) ** 2).sum(-1)).min(axis=1) * 0.5
    assert (grown.ravel() == (nearest <= 1.1)).all()
    assert (grow_mask(mask, 0.0, 0.5) == mask).all()
    assert not grow_mask(np.zeros_like(mask), 2.0, 0.5).any()
    with pytest.raises(ValueError, match="margin_A"):
        grow_mask(mask, -1.0, 0.5)


def test_resample_mask_keeps_the_shape(octahedron):
    mask = particle_mask(octahedron["map"], voxel_size_A=VOXEL_A, support=octahedron["sphere"])
    coarse = resample_mask(mask, 40, VOXEL_A, 2 * VOXEL_A)
    assert coarse.shape == (40,) * 3 and coarse[20, 20, 20]
    # the same volume in Å³ within a few percent
    assert abs(coarse.sum() * 8 / mask.sum() - 1) < 0.1
    back = resample_mask(coarse, SIZE, 2 * VOXEL_A, VOXEL_A)
    assert (back == mask).mean() > 0.97


def test_bad_input_is_rejected(octahedron):
    with pytest.raises(ValueError, match="cubic"):
        particle_mask(np.zeros((4, 4)), voxel_size_A=VOXEL_A)
    with pytest.raises(ValueError, match="NaN"):
        particle_mask(np.full((8, 8, 8), np.nan), voxel_size_A=VOXEL_A)
    with pytest.raises(ValueError, match="two voxels"):
        particle_mask(octahedron["map"], voxel_size_A=1.0)
    with pytest.raises(ValueError, match="no lattice fringes"):
        particle_mask(np.zeros((32, 32, 32)), voxel_size_A=VOXEL_A)
