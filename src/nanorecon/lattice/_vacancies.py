"""Empty lattice sites inside a traced particle: vacancies, or atoms its map did not resolve."""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay, QhullError, cKDTree

from ._fit import LatticeFit, nearest_sites


def empty_sites_inside(
    positions_A: np.ndarray, fit: LatticeFit, *, tolerance: float = 0.35
) -> np.ndarray:
    """Sites of a fitted lattice inside the atoms' convex hull that hold no atom.

    Parameters
    ----------
    positions_A : ndarray of shape (N, 3)
        Atom positions (x, y, z) [Å], those `fit` was fitted to.
    fit : LatticeFit
        From :func:`fit_lattice`.
    tolerance : float, optional
        A site is empty when no atom lies within ``tolerance · a`` of it (default 0.35, about
        half the fcc nearest-neighbour distance).

    Returns
    -------
    ndarray of shape (M, 3)
        The empty sites (x, y, z) [Å]; none for fewer than four atoms or a flat set, which
        enclose no volume.
    """
    positions = np.asarray(positions_A, dtype=float).reshape(-1, 3)
    half_cell = fit.lattice_parameter_A / 2.0
    if len(positions) < 4:
        return np.empty((0, 3))
    try:
        hull = Delaunay(positions)
    except QhullError:
        return np.empty((0, 3))
    # every site of the lattice in the atoms' bounding box, in units of a/2
    cell = fit.rotation.inv().apply(positions - fit.origin_A) / half_cell
    low, high = np.floor(cell.min(axis=0)) - 1, np.ceil(cell.max(axis=0)) + 1
    axes = [np.arange(lo, hi + 1) for lo, hi in zip(low, high, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid[(nearest_sites(grid / 2.0, fit.structure) == grid).all(axis=1)]  # takes units of a
    sites = fit.origin_A + half_cell * fit.rotation.apply(grid)
    sites = sites[hull.find_simplex(sites) >= 0]
    distance, _ = cKDTree(positions).query(sites)
    return sites[distance > tolerance * fit.lattice_parameter_A]
