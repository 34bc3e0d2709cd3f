"""Per-atom displacement-gradient (strain) fit over a neighbourhood."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

STRAIN_COLUMNS = ("exx", "eyy", "ezz", "exy", "exz", "eyz")
_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def local_strain(
    positions_A: ArrayLike,
    ideal_positions_A: ArrayLike,
    *,
    radius_A: float,
    rotation: Rotation | None = None,
    min_neighbours: int = 4,
) -> np.ndarray:
    """Strain tensor per atom from a local least-squares displacement-gradient fit.

    For atom *i*, the neighbours *j* with ideal distance ``|s_j − s_i| ≤ radius_A`` give the ideal
    bonds ``Δs = s_j − s_i`` and the measured bonds ``Δr = r_j − r_i``. The deformation gradient F
    minimises ``Σ_j |Δr − F Δs|²``, i.e. ``F = (Σ Δr Δsᵀ)(Σ Δs Δsᵀ)⁻¹``, and the (small, symmetric)
    strain is ``ε = ½(F + Fᵀ) − I``; the antisymmetric part (local rotation) is dropped. The tensor
    is in the map frame, or in the crystal frame (``Rᵀ ε R``, x along [100]) when ``rotation`` is
    given.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Measured positions (x, y, z) [Å].
    ideal_positions_A : array_like of shape (N, 3)
        The atoms' reference lattice sites (x, y, z) [Å]; strain is relative to this lattice.
    radius_A : float
        Smoothing radius r_s [Å] (inclusive, with a 1 % margin so a shell lying exactly on it
        counts).
    rotation : Rotation, optional
        Crystal → map rotation of the lattice fit; given, the tensor is returned in the crystal
        frame.
    min_neighbours : int, optional
        Fewer neighbours than this (or a singular neighbourhood) give NaN.

    Returns
    -------
    strain : ndarray of shape (N, 6)
        ``(exx, eyy, ezz, exy, exz, eyz)``, tensor (not engineering) shear components
        [dimensionless].

    Examples
    --------
    >>> from ase.build import bulk
    >>> s = bulk("Pt", "fcc", a=3.92, cubic=True).repeat(3).positions
    >>> e = local_strain(s @ np.diag([1.01, 1.0, 1.0]), s, radius_A=3.92)
    >>> np.round(e[0], 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    array([0.01, 0.  , 0.  , 0.  , 0.  , 0.  ])
    """
    r = np.asarray(positions_A, dtype=float)
    s = np.asarray(ideal_positions_A, dtype=float)
    if r.shape != s.shape or r.ndim != 2 or r.shape[1] != 3:
        raise ValueError("positions_A and ideal_positions_A must both have shape (N, 3)")
    if radius_A <= 0:
        raise ValueError(f"radius_A must be positive, got {radius_A}")
    pairs = cKDTree(s).query_pairs(radius_A * 1.01, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    ds = s[j] - s[i]
    dr = r[j] - r[i]
    n = len(r)
    rs = np.zeros((n, 3, 3))
    ss = np.zeros((n, 3, 3))
    np.add.at(rs, i, dr[:, :, None] * ds[:, None, :])
    np.add.at(ss, i, ds[:, :, None] * ds[:, None, :])
    count = np.bincount(i, minlength=n)
    ok = (count >= min_neighbours) & (np.linalg.cond(ss) < 1e6)
    f = np.full((n, 3, 3), np.nan)
    f[ok] = rs[ok] @ np.linalg.inv(ss[ok])
    eps = 0.5 * (f + np.swapaxes(f, 1, 2)) - np.eye(3)
    if rotation is not None:
        m = rotation.as_matrix()
        eps = np.einsum("ji,njk,kl->nil", m, eps, m)
    return np.stack([eps[:, a, b] for a, b in _PAIRS], axis=1)


def strain_matrices(strain: ArrayLike) -> np.ndarray:
    """(N, 6) Voigt-ordered ``(exx, eyy, ezz, exy, exz, eyz)`` → (N, 3, 3) symmetric tensors."""
    e = np.asarray(strain, dtype=float)
    out = np.empty((len(e), 3, 3))
    for k, (a, b) in enumerate(_PAIRS):
        out[:, a, b] = e[:, k]
        out[:, b, a] = e[:, k]
    return out


def strain_components(tensors: ArrayLike) -> np.ndarray:
    """(N, 3, 3) tensors → (N, 6) ``(exx, eyy, ezz, exy, exz, eyz)``."""
    t = np.asarray(tensors, dtype=float)
    return np.stack([t[:, a, b] for a, b in _PAIRS], axis=1)
