"""Rejection of non-atoms after tracing: reproducibility in independent half maps and a
physically plausible coordination."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..backend import asnumpy, get_array_module, get_ndimage_module


def half_map_significance(
    positions_vox: np.ndarray,
    half_maps,
    *,
    support,
    smooth_sigma_vox: float,
    noise_sigma: float,
) -> np.ndarray:
    """Significance of each atom in each of two independent half maps.

    Each half map is smoothed by the tracer's matched filter; the value at the atom's fitted
    full-map position (trilinear), above the half's background (median of the smoothed half inside
    ``support``), is divided by the half's noise σ. Sampling at the full-map position, not at a
    maximum searched nearby, keeps the null distribution that of one map value.

    Parameters
    ----------
    positions_vox : ndarray of shape (N, 3)
        Atom positions as (z, y, x) voxel indices.
    half_maps : sequence of two ndarrays of shape (Z, Y, X)
        The half maps, numpy or cupy.
    support : ndarray of bool, shape (Z, Y, X)
        Particle region (for the background).
    smooth_sigma_vox : float
        σ of the matched filter [voxel].
    noise_sigma : float
        Noise σ of one smoothed half map [map units].

    Returns
    -------
    ndarray of shape (N, 2)
        Significance in half 1 and half 2 [σ].
    """
    out = np.zeros((len(positions_vox), 2))
    if len(positions_vox) == 0:
        return out
    for i, half in enumerate(half_maps):
        xp, ndi = get_array_module(half), get_ndimage_module(half)
        smooth = ndi.gaussian_filter(half, smooth_sigma_vox) if smooth_sigma_vox > 0 else half
        inside = xp.asarray(support).astype(bool)
        background = float(xp.median(smooth[inside])) if bool(inside.any()) else 0.0
        coords = xp.asarray(np.asarray(positions_vox, dtype=float).T)
        values = asnumpy(ndi.map_coordinates(smooth, coords, order=1, mode="nearest"))
        out[:, i] = (values - background) / max(noise_sigma, 1e-30)
    return out


def coordination_filter(
    positions_A: np.ndarray,
    *,
    bond_range_A: tuple[float, float],
    min_neighbours: int,
) -> np.ndarray:
    """Keep atoms with at least ``min_neighbours`` others at a plausible bond distance.

    Rejected atoms no longer count as neighbours, so the test is repeated until no atom changes
    (a cluster of spurious peaks cannot support itself once its anchors go).

    Parameters
    ----------
    positions_A : ndarray of shape (N, 3)
        Atom positions [Å].
    bond_range_A : (float, float)
        Smallest and largest bond length [Å].
    min_neighbours : int
        Fewest neighbours an atom needs.

    Returns
    -------
    ndarray of bool, shape (N,)
        True for the atoms kept.

    Examples
    --------
    >>> square = np.array([[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [2.5, 2.5, 0], [9, 9, 9.0]])
    >>> coordination_filter(square, bond_range_A=(2.0, 3.0), min_neighbours=2)
    array([ True,  True,  True,  True, False])
    """
    positions = np.asarray(positions_A, dtype=float)
    keep = np.ones(len(positions), bool)
    lo, hi = bond_range_A
    while keep.any():
        index = np.nonzero(keep)[0]
        tree = cKDTree(positions[index])
        count = tree.query_ball_point(positions[index], hi, return_length=True) - (
            tree.query_ball_point(positions[index], lo, return_length=True)
        )
        weak = index[count < min_neighbours]
        if len(weak) == 0:
            break
        keep[weak] = False
    return keep
