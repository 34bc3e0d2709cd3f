"""Twin planes: hcp-coordinated {111} layers between fcc domains."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._neighbours import SHELL_CUTOFF_FACTOR, nearest_neighbour_distance_A


def _close_packed_normals(positions: np.ndarray, index: np.ndarray, d_nn: float) -> np.ndarray:
    """Normal of each atom's close-packed plane: the one holding most of its 12 neighbours."""
    _, idx = cKDTree(positions).query(positions[index], k=13)
    b = positions[idx[:, 1:]] - positions[index][:, None, :]
    # Candidate normals from every pair of bonds; score: bonds lying in that plane.
    normals = np.cross(b[:, :, None, :], b[:, None, :, :]).reshape(len(index), -1, 3)
    norm = np.linalg.norm(normals, axis=2, keepdims=True)
    normals = np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 1e-6 * d_nn**2)
    in_plane = np.abs(np.einsum("nck,nbk->ncb", normals, b)) < 0.2 * d_nn
    in_plane &= norm > 1e-6 * d_nn**2  # parallel bond pairs give no normal
    best = np.argmax(in_plane.sum(axis=2), axis=1)
    return normals[np.arange(len(index)), best]


def find_twin_planes(
    positions_A: ArrayLike,
    structure: ArrayLike,
    *,
    min_plane_atoms: int = 3,
    parallel_cos: float = 0.95,
) -> tuple[np.ndarray, dict]:
    """Group hcp-classified atoms into twin planes and judge how the particle is twinned.

    In an fcc particle a coherent twin boundary is a {111} layer whose atoms have hcp stacking. hcp
    atoms are linked when they are neighbours, share the close-packed plane normal and their bond
    lies in that plane; each connected group of at least ``min_plane_atoms`` atoms is one twin
    plane. Atoms not in fcc stacking (e.g. surface atoms, the five-fold axis of a decahedron) that
    lie in a found plane (within 0.25 × the nearest-neighbour distance) next to its atoms are added
    to it.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].
    structure : array_like of str, shape (N,)
        Per-atom structure from :func:`common_neighbour_analysis`.
    min_plane_atoms : int, optional
        Smallest group of hcp atoms counted as a plane.
    parallel_cos : float, optional
        Planes whose normals have ``|cos| >`` this are parallel (one twin family).

    Returns
    -------
    plane : ndarray of shape (N,), int
        Twin-plane label per atom; -1 for atoms on no twin plane.
    summary : dict
        ``n_twin_planes``, ``n_twin_orientations`` (non-parallel plane families), ``n_icosahedral``,
        ``twinning`` (``"single_crystal"``, ``"twinned"`` for parallel planes only, or
        ``"multiply_twinned"`` for non-parallel planes or an icosahedral centre) and ``normals``.
    """
    positions = np.asarray(positions_A, dtype=float)
    structure = np.asarray(structure, dtype=object)
    if structure.shape != (len(positions),):
        raise ValueError("structure must have one entry per atom")
    n = len(positions)
    plane = np.full(n, -1, dtype=int)
    n_ico = int(np.sum(structure == "ico"))
    hcp = np.nonzero(structure == "hcp")[0]
    normals_out: list[list[float]] = []
    if len(hcp) >= min_plane_atoms and n >= 13:
        d_nn = nearest_neighbour_distance_A(positions)
        cutoff = SHELL_CUTOFF_FACTOR * d_nn
        normals = _close_packed_normals(positions, hcp, d_nn)
        local = hcp
        pairs = cKDTree(positions[local]).query_pairs(cutoff, output_type="ndarray")
        if len(pairs):
            p, q = pairs[:, 0], pairs[:, 1]
            bond = positions[local[q]] - positions[local[p]]
            same = np.abs(np.sum(normals[p] * normals[q], axis=1)) > parallel_cos
            flat = np.abs(np.sum(bond * normals[p], axis=1)) < 0.25 * d_nn
            keep = same & flat
            graph = coo_matrix((np.ones(keep.sum()), (p[keep], q[keep])), shape=(len(local),) * 2)
            _, labels = connected_components(graph, directed=False)
        else:
            labels = np.arange(len(local))
        sizes = np.bincount(labels)
        big = np.nonzero(sizes >= min_plane_atoms)[0]
        centres, plane_normals = [], []
        for new_label, old_label in enumerate(big):
            members = local[labels == old_label]
            plane[members] = new_label
            centre = positions[members].mean(axis=0)
            # Plane normal from the members' spread (smallest principal axis), or their mean normal.
            mean_normal = normals[labels == old_label]
            mean_normal = mean_normal * np.sign(mean_normal @ mean_normal[0])[:, None]
            normal = mean_normal.mean(axis=0)
            normal /= np.linalg.norm(normal)
            centres.append(centre)
            plane_normals.append(normal)
        if big.size:
            # Attach non-fcc atoms lying in a plane and bonded to one of its atoms.
            tree = cKDTree(positions)
            others = np.nonzero((plane < 0) & (structure != "fcc"))[0]
            for atom in others:
                neighbours = tree.query_ball_point(positions[atom], cutoff)
                labels_near = {plane[k] for k in neighbours if plane[k] >= 0}
                best, best_dist = -1, 0.25 * d_nn
                for lab in labels_near:
                    dist = abs(float((positions[atom] - centres[lab]) @ plane_normals[lab]))
                    if dist < best_dist:
                        best, best_dist = lab, dist
                plane[atom] = best
        normals_out = [list(map(float, v)) for v in plane_normals]
    families: list[np.ndarray] = []
    for normal in map(np.asarray, normals_out):
        if not any(abs(float(normal @ f)) > parallel_cos for f in families):
            families.append(normal)
    n_planes = len(normals_out)
    if len(families) >= 2 or n_ico > 0:
        twinning = "multiply_twinned"
    elif n_planes:
        twinning = "twinned"
    else:
        twinning = "single_crystal"
    summary = {
        "n_twin_planes": n_planes,
        "n_twin_orientations": len(families),
        "n_icosahedral": n_ico,
        "twinning": twinning,
        "normals": normals_out,
    }
    return plane, summary
