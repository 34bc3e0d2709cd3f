"""Adaptive common-neighbour analysis (a-CNA) of atom positions."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

STRUCTURES = ("other", "fcc", "hcp", "bcc", "ico")
_SHELL_FACTOR = (1.0 + np.sqrt(2.0)) / 2.0


def _signatures(vectors: np.ndarray, cutoff: np.ndarray) -> tuple[np.ndarray, ...]:
    """CNA signature of every bond of every atom.

    ``vectors`` (N, M, 3) are the M neighbour vectors of each atom and ``cutoff`` (N,) its local
    cutoff. Returns, per bond (N, M): number of common neighbours, number of bonds among them, and
    the largest and smallest degree inside that common-neighbour graph (telling a chain from
    separate bonds).
    """
    diff = vectors[:, :, None, :] - vectors[:, None, :, :]
    bonded = np.einsum("nijk,nijk->nij", diff, diff) < cutoff[:, None, None] ** 2
    m = vectors.shape[1]
    bonded[:, np.arange(m), np.arange(m)] = False
    b = bonded.astype(np.int32)
    n_common = b.sum(axis=2)
    paths = np.einsum("nij,njk->nik", b, b)  # paths[n, j, k]: common neighbours of bonds j and k
    n_bonds = (paths * b).sum(axis=2) // 2
    degree = np.where(bonded, paths, -1)  # degree of common neighbour k inside bond j's graph
    max_degree = degree.max(axis=2)
    min_degree = np.where(bonded, paths, 99).min(axis=2)
    return n_common, n_bonds, max_degree, min_degree


def common_neighbour_analysis(positions_A: ArrayLike) -> np.ndarray:
    """Classify each atom as fcc, hcp, bcc, icosahedral or other by adaptive CNA.

    For fcc/hcp/ico the local cutoff of atom *i* is ``(1 + √2)/2`` times the mean distance to its 12
    nearest neighbours; bonds among those 12 decide the signature of each (i, j) bond: fcc has
    12 × (421), hcp 6 × (421) + 6 × (422), icosahedral 12 × (555). For bcc the 14 nearest
    neighbours are used with the cutoff ``(1 + √2)/2 · [(2/√3) Σ₁⁸ r + Σ₉¹⁴ r] / 14`` and the
    signature 8 × (666) + 6 × (444). Atoms with an incomplete shell (surface) are "other".

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].

    Returns
    -------
    structure : ndarray of shape (N,), dtype object
        One of ``"fcc", "hcp", "bcc", "ico", "other"`` per atom.

    References
    ----------
    A. Stukowski, "Structure identification methods for atomistic simulations of crystalline
    materials", Modelling Simul. Mater. Sci. Eng. 20, 045021 (2012).
    doi:10.1088/0965-0393/20/4/045021

    Examples
    --------
    >>> from ase.build import bulk
    >>> atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(4)
    >>> labels = common_neighbour_analysis(atoms.positions)
    >>> inner = np.linalg.norm(atoms.positions - atoms.positions.mean(axis=0), axis=1) < 4.0
    >>> sorted(set(labels[inner])), sorted(set(labels[~inner]))
    (['fcc'], ['fcc', 'other'])
    """
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions_A must have shape (N, 3), got {positions.shape}")
    n = len(positions)
    result = np.full(n, "other", dtype=object)
    if n < 15:
        return result
    tree = cKDTree(positions)
    dist, idx = tree.query(positions, k=15)
    dist, idx = dist[:, 1:], idx[:, 1:]
    vectors = positions[idx] - positions[:, None, :]

    # fcc / hcp / icosahedral: the 12 nearest neighbours, all inside the local cutoff
    cut12 = _SHELL_FACTOR * dist[:, :12].mean(axis=1)
    shell12 = dist[:, 11] < cut12
    n_common, n_bonds, max_deg, min_deg = _signatures(vectors[:, :12], cut12)
    s421 = (n_common == 4) & (n_bonds == 2) & (max_deg == 1)
    s422 = (n_common == 4) & (n_bonds == 2) & (max_deg == 2)
    s555 = (n_common == 5) & (n_bonds == 5) & (max_deg == 2) & (min_deg == 2)
    c421, c422, c555 = s421.sum(1), s422.sum(1), s555.sum(1)
    result[shell12 & (c421 == 12)] = "fcc"
    result[shell12 & (c421 == 6) & (c422 == 6)] = "hcp"
    result[shell12 & (c555 == 12)] = "ico"

    # bcc: 14 neighbours (8 first-shell + 6 second-shell)
    cut14 = _SHELL_FACTOR * (2.0 / np.sqrt(3.0) * dist[:, :8].sum(1) + dist[:, 8:14].sum(1)) / 14.0
    n_common, n_bonds, max_deg, min_deg = _signatures(vectors[:, :14], cut14)
    ring = (max_deg == 2) & (min_deg == 2)
    s666 = (n_common == 6) & (n_bonds == 6) & ring
    s444 = (n_common == 4) & (n_bonds == 4) & ring
    is_bcc = (dist[:, 13] < cut14) & (s666.sum(1) == 8) & (s444.sum(1) == 6)
    result[is_bcc & (result == "other")] = "bcc"
    return result
