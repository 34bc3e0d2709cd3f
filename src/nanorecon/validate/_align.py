"""Rigid alignment (rotation, translation, optional mirror) of two atomic models; matching."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

_MIRROR = np.diag([1.0, 1.0, -1.0])
#: fitted starts stepped through the lattice (`_climb`), the best first
CLIMBED = 4


@dataclass
class Alignment:
    """``reference ≈ moving @ matrix.T + translation_A``; ``matrix`` is orthogonal, det −1 if
    mirrored.

    ``pairs`` (M, 2) holds matched (moving, reference) indices; ``rms_A`` their RMS distance [Å].
    """

    matrix: np.ndarray
    translation_A: np.ndarray
    pairs: np.ndarray
    rms_A: float
    mirrored: bool

    def apply(self, positions_A: ArrayLike) -> np.ndarray:
        """Move (N, 3) positions (x, y, z) [Å] into the reference frame."""
        return np.asarray(positions_A, dtype=float) @ self.matrix.T + self.translation_A


def match_atoms(
    moving_A: ArrayLike, reference_A: ArrayLike, *, match_distance_A: float
) -> np.ndarray:
    """One-to-one matches: mutual nearest neighbours closer than ``match_distance_A`` [Å].

    Returns (M, 2) index pairs (moving, reference).
    """
    moving = np.asarray(moving_A, dtype=float)
    reference = np.asarray(reference_A, dtype=float)
    if len(moving) == 0 or len(reference) == 0:
        return np.zeros((0, 2), int)
    d, j = cKDTree(reference).query(moving, distance_upper_bound=match_distance_A)
    _, back = cKDTree(moving).query(reference)
    i = np.nonzero(np.isfinite(d))[0]
    i = i[back[j[i]] == i]
    return np.stack([i, j[i]], axis=1)


def _icp(moving, reference, tree, matrix, translation, distances):
    """ICP with mutual-nearest-neighbour pairs; distance threshold tightened over ``distances``."""
    pairs = np.zeros((0, 2), int)
    for limit in distances:
        moved = moving @ matrix.T + translation
        d, j = tree.query(moved, distance_upper_bound=limit)
        i = np.nonzero(np.isfinite(d))[0]
        _, back = cKDTree(moved).query(reference[j[i]])
        i = i[back == i]
        if len(i) < 3:
            return matrix, translation, np.zeros((0, 2), int)
        pairs = np.stack([i, j[i]], axis=1)
        improper = np.linalg.det(matrix) < 0
        src = moving[i] @ _MIRROR.T if improper else moving[i]
        src_mean, dst_mean = src.mean(axis=0), reference[j[i]].mean(axis=0)
        rotation, _ = Rotation.align_vectors(reference[j[i]] - dst_mean, src - src_mean)
        matrix = rotation.as_matrix() @ (_MIRROR if improper else np.eye(3))
        translation = dst_mean - rotation.apply(src_mean)
    return matrix, translation, pairs


def _neighbour_shifts(reference: np.ndarray, tree: cKDTree) -> np.ndarray:
    """The vectors from the reference atom nearest the centroid to its 18 nearest neighbours
    (fcc: the 12 nearest and the 6 one lattice parameter away): the steps by which two models
    of a crystal can be misregistered."""
    centre = int(np.argmin(np.linalg.norm(reference, axis=1)))
    _, index = tree.query(reference[centre], k=min(len(reference), 19))
    return reference[index[1:]] - reference[centre]


def _climb(m0, r0, tree, best, shifts, match_distance_A):
    """Move a fitted alignment by neighbour steps while that matches more atoms (then at a lower
    RMS): ICP from the centroids can stay a lattice step off when a model lacks a side (its
    centroid moves), and a crystal shifted by a lattice vector still matches most of its atoms."""
    for _ in range(8):
        _, matrix0, translation0, _, _ = best
        improved = False
        for shift in shifts:
            candidate = _refine(m0, r0, tree, matrix0, translation0 + shift, [match_distance_A] * 4)
            if candidate is not None and candidate[0] > best[0]:
                best, improved = candidate, True
        if not improved:
            break
    return best


def _refine(m0, r0, tree, matrix, translation, distances):
    """ICP over the thresholds `distances`; (key, matrix, translation, pairs, rms) or None."""
    matrix, translation, pairs = _icp(m0, r0, tree, matrix, translation, distances)
    if len(pairs) == 0:
        return None
    moved_pairs = m0[pairs[:, 0]] @ matrix.T + translation
    rms = float(np.sqrt(np.mean(np.sum((moved_pairs - r0[pairs[:, 1]]) ** 2, axis=1))))
    return (len(pairs), -rms), matrix, translation, pairs, rms


def align_models(
    moving_A: ArrayLike,
    reference_A: ArrayLike,
    *,
    allow_mirror: bool = True,
    match_distance_A: float = 0.8,
    n_grid: int = 1500,
    n_refine: int = 8,
    seed: int = 0,
    symmetry_ops: ArrayLike | None = None,
    start_matrices: ArrayLike | None = None,
) -> Alignment:
    """Find the rigid transform (rotation, translation and, if allowed, a mirror) putting ``moving``
    on ``reference``.

    Handedness cannot be told from projections, so with ``allow_mirror`` both proper and improper
    orientations are tried. Both models are centred on their centroids; start orientations are the
    principal-axis alignments (all sign choices) and a fixed pseudo-random grid of ``n_grid``
    rotations, each scored by the fraction of moving atoms with a reference atom within 1.5 ×
    ``match_distance_A``; the ``n_refine`` best of each handedness run ICP (mutual nearest
    neighbours, Kabsch via ``Rotation.align_vectors``) with a threshold shrinking to
    ``match_distance_A``, as does each of `start_matrices`. The best few results are then moved
    by steps to the reference's 18 nearest neighbours of its central atom while that matches
    more atoms (a crystal shifted by a lattice vector still matches most of its atoms, and a
    model lacking a side starts off by such a step). The result with most matches (then lowest
    RMS) wins.

    Parameters
    ----------
    moving_A, reference_A : array_like of shape (N, 3), (M, 3)
        Positions (x, y, z) [Å].
    allow_mirror : bool, optional
        Also try improper transforms.
    match_distance_A : float, optional
        Final matching distance [Å].
    n_grid : int, optional
        Random start rotations (per handedness).
    n_refine : int, optional
        Starts refined by ICP.
    seed : int, optional
        Seed of the rotation grid (the result is deterministic).
    symmetry_ops : array_like of shape (K, 3, 3), optional
        Orthogonal point-group operations of the reference (e.g. the 48 cubic operations of its
        fitted lattice, in the map frame). A crystal matches itself under these, so every start ends
        on one of several equally well-matched solutions; each operation is applied to the best one
        and refined again, and the lowest RMS wins.
    start_matrices : array_like of shape (S, 3, 3), optional
        Further start orientations (orthogonal; det −1 for a mirror), each refined by ICP besides
        the grid's best: e.g. the orientations that put the two models' fitted lattices onto each
        other, which find a model that lacks a side, whose centroid and principal axes moved
        (the grid's starts are scored from the centroids).

    Returns
    -------
    Alignment
    """
    moving = np.asarray(moving_A, dtype=float)
    reference = np.asarray(reference_A, dtype=float)
    if len(moving) < 3 or len(reference) < 3:
        raise ValueError("both models need at least 3 atoms")
    mc, rc = moving.mean(axis=0), reference.mean(axis=0)
    m0, r0 = moving - mc, reference - rc
    tree = cKDTree(r0)

    _, mv = np.linalg.eigh(np.cov(m0.T))
    _, rv = np.linalg.eigh(np.cov(r0.T))
    starts = [
        rv @ np.diag(signs) @ mv.T
        for signs in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3)
    ]
    grid = Rotation.random(n_grid, random_state=seed).as_matrix()
    starts.extend(grid)
    if allow_mirror:
        starts.extend(grid @ _MIRROR)
    starts = np.asarray(starts)
    if not allow_mirror:
        starts = starts[np.linalg.det(starts) > 0]

    moved = np.einsum("sij,nj->sni", starts, m0).reshape(-1, 3)
    d, _ = tree.query(moved, distance_upper_bound=1.5 * match_distance_A)
    score = np.isfinite(d).reshape(len(starts), -1).mean(axis=1)
    results = []
    schedule = [3.0 * match_distance_A] * 3 + [2.0 * match_distance_A] * 3 + [match_distance_A] * 6
    # The best starts of each handedness: a symmetric particle scores alike in both.
    proper = np.linalg.det(starts) > 0
    chosen = [
        np.nonzero(group)[0][np.argsort(-score[group], kind="stable")[:n_refine]]
        for group in (proper, ~proper)
        if group.any()
    ]
    extra = np.zeros((0, 3, 3)) if start_matrices is None else np.asarray(start_matrices, float)
    if not allow_mirror:
        extra = extra[np.linalg.det(extra) > 0]
    for start in [*starts[np.concatenate(chosen)], *extra]:
        result = _refine(m0, r0, tree, start, np.zeros(3), schedule)
        if result is not None:
            results.append(result)
    if not results:
        raise RuntimeError("no alignment found: the models share no atoms within reach")
    # the best few, each stepped through the lattice: the right one may start a step off
    shifts = _neighbour_shifts(r0, tree)
    results.sort(key=lambda result: result[0], reverse=True)
    climbed = [_climb(m0, r0, tree, r, shifts, match_distance_A) for r in results[:CLIMBED]]
    best = max(climbed, key=lambda result: result[0])
    if symmetry_ops is not None:
        _, matrix0, translation0, _, _ = best
        for op in np.asarray(symmetry_ops, dtype=float):
            if not allow_mirror and np.linalg.det(op @ matrix0) < 0:
                continue
            candidate = _refine(
                m0, r0, tree, op @ matrix0, op @ translation0, [match_distance_A] * 4
            )
            if candidate is not None and candidate[0] > best[0]:
                best = candidate
        best = _climb(m0, r0, tree, best, shifts, match_distance_A)
    _, matrix, translation, pairs, rms = best
    translation = rc + translation - matrix @ mc
    return Alignment(
        matrix=matrix,
        translation_A=translation,
        pairs=pairs,
        rms_A=rms,
        mirrored=bool(np.linalg.det(matrix) < 0),
    )
