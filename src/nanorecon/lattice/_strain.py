"""Per-atom displacement-gradient (strain) fit over a neighbourhood."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

STRAIN_COLUMNS = ("exx", "eyy", "ezz", "exy", "exz", "eyz")
_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


# Gaussian weights beyond 2.5 σ are below 4 % of the centre's: the fit ignores them.
CUTOFF_SIGMAS = 2.5


def local_strain(
    positions_A: ArrayLike,
    ideal_positions_A: ArrayLike,
    *,
    sigma_A: float,
    rotation: Rotation | None = None,
    min_neighbours: int = 4,
    cutoff_sigmas: float = CUTOFF_SIGMAS,
) -> np.ndarray:
    """Strain tensor per atom from a Gaussian-weighted local displacement-gradient fit.

    For atom *i*, the neighbours *j* give the ideal bonds ``Δs = s_j − s_i`` and the measured
    bonds ``Δr = r_j − r_i``, weighted by ``w_j = exp(−|Δs|² / 2σ²)`` (neighbours with
    ``|Δs| ≤ cutoff_sigmas · σ``). The deformation gradient F minimises ``Σ_j w_j |Δr − F Δs|²``,
    i.e. ``F = (Σ w Δr Δsᵀ)(Σ w Δs Δsᵀ)⁻¹``, and the (small, symmetric) strain is
    ``ε = ½(F + Fᵀ) − I``; the antisymmetric part (local rotation) is dropped. This is the
    displacement-gradient form of smoothing the displacement field with a Gaussian kernel of
    width σ before differentiating it, as atomic electron tomography does (σ of about one lattice
    parameter), and it needs no interpolation onto a grid. The tensor is in the map frame, or in
    the crystal frame (``Rᵀ ε R``, x along [100]) when ``rotation`` is given.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Measured positions (x, y, z) [Å].
    ideal_positions_A : array_like of shape (N, 3)
        The atoms' reference lattice sites (x, y, z) [Å]; strain is relative to this lattice.
    sigma_A : float
        Smoothing length σ of the Gaussian weights [Å]. Position noise δ gives strain noise of
        roughly ``δ / (σ √n)`` with n the atoms within σ, so a larger σ trades spatial
        resolution for precision.
    rotation : Rotation, optional
        Crystal → map rotation of the lattice fit; given, the tensor is returned in the crystal
        frame.
    min_neighbours : int, optional
        Fewer neighbours than this (or a singular neighbourhood) give NaN.
    cutoff_sigmas : float, optional
        Neighbours farther than this many σ (ideal distance, 1 % margin) are left out.

    Returns
    -------
    strain : ndarray of shape (N, 6)
        ``(exx, eyy, ezz, exy, exz, eyz)``, tensor (not engineering) shear components
        [dimensionless].

    References
    ----------
    .. [1] Xu, R. et al. Three-dimensional coordinates of individual atoms in materials revealed by
       electron tomography. Nat. Mater. 14, 1099–1103 (2015). :doi:`10.1038/nmat4426`

    Examples
    --------
    >>> from ase.build import bulk
    >>> s = bulk("Pt", "fcc", a=3.92, cubic=True).repeat(3).positions
    >>> e = local_strain(s @ np.diag([1.01, 1.0, 1.0]), s, sigma_A=3.92)
    >>> np.round(e[0], 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    array([0.01, 0.  , 0.  , 0.  , 0.  , 0.  ])
    """
    r = np.asarray(positions_A, dtype=float)
    s = np.asarray(ideal_positions_A, dtype=float)
    if r.shape != s.shape or r.ndim != 2 or r.shape[1] != 3:
        raise ValueError("positions_A and ideal_positions_A must both have shape (N, 3)")
    if not sigma_A > 0:
        raise ValueError(f"sigma_A must be positive, got {sigma_A}")
    if not cutoff_sigmas > 0:
        raise ValueError(f"cutoff_sigmas must be positive, got {cutoff_sigmas}")
    pairs = cKDTree(s).query_pairs(cutoff_sigmas * sigma_A * 1.01, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    ds = s[j] - s[i]
    dr = r[j] - r[i]
    weight = np.exp(-np.sum(ds**2, axis=1) / (2.0 * sigma_A**2))
    n = len(r)
    rs = np.zeros((n, 3, 3))
    ss = np.zeros((n, 3, 3))
    np.add.at(rs, i, weight[:, None, None] * dr[:, :, None] * ds[:, None, :])
    np.add.at(ss, i, weight[:, None, None] * ds[:, :, None] * ds[:, None, :])
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
