"""Depth of atoms below the particle surface (the convex hull of the atoms)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import ConvexHull, QhullError


def depth_below_surface_A(positions_A: ArrayLike) -> np.ndarray:
    """Distance of each atom below the convex hull through the outermost atoms [Å].

    The hull's facet planes satisfy ``n·x + b ≤ 0`` inside, so an atom's depth is the smallest
    ``−(n·x + b)`` over the facets; hull atoms have depth 0. For a convex (faceted) particle this is
    the distance to the nearest facet plane; atoms in surface pits or behind an adatom are measured
    to the hull, not to the true local surface.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].

    Returns
    -------
    ndarray of shape (N,)
        Depth [Å]; all zeros when the atoms span no volume (fewer than 4, or coplanar).

    Examples
    --------
    >>> from ase.build import bulk
    >>> pos = bulk("Cu", "sc", a=2.0, cubic=True).repeat(5).positions
    >>> float(depth_below_surface_A(pos).max())
    4.0
    """
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions_A must have shape (N, 3), got {positions.shape}")
    if len(positions) < 4:
        return np.zeros(len(positions))
    try:
        hull = ConvexHull(positions)
    except QhullError:
        return np.zeros(len(positions))
    signed = positions @ hull.equations[:, :3].T + hull.equations[:, 3]
    return np.clip(-signed.max(axis=1), 0.0, None)
