"""Global least-squares fit of a cubic lattice (lattice parameter, orientation, origin) to atoms."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ._elements import nearest_neighbour_per_lattice_parameter

# Nearest-neighbour vectors in units of the lattice parameter.
_NN_VECTORS = {
    "fcc": np.array(
        [v for v in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, v)) == 2], float
    )
    / 2.0,
    "bcc": np.array(list(itertools.product((-1, 1), repeat=3)), float) / 2.0,
    "sc": np.array(
        [v for v in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, v)) == 1], float
    ),
}
# The 24 proper rotations of the cube (signed permutation matrices with det +1).
CUBIC_ROTATIONS = np.array(
    [
        m
        for perm in itertools.permutations(range(3))
        for signs in itertools.product((-1, 1), repeat=3)
        if np.isclose(np.linalg.det(m := np.eye(3)[list(perm)] * np.array(signs)[:, None]), 1.0)
    ]
)


@dataclass
class LatticeFit:
    """Result of :func:`fit_lattice`.

    Attributes
    ----------
    structure : str
        ``"fcc"``, ``"bcc"`` or ``"sc"``.
    lattice_parameter_A : float
        Cubic lattice parameter [Å].
    rotation : Rotation
        Crystal frame → map frame: a site at cell coordinates ``s`` lies at ``origin_A + a · R s``.
        Chosen among the 24 cubic-equivalent rotations as the one closest to the identity.
    origin_A : ndarray of shape (3,)
        Position (x, y, z) of the lattice site (0, 0, 0) [Å].
    hkl : ndarray of shape (N, 3), int
        Lattice site of each atom in units of a/2 (fcc sites have h + k + l even, bcc sites all-even
        or all-odd), so the site lies at ``origin_A + a/2 · R hkl``.
    ideal_positions_A : ndarray of shape (N, 3)
        The assigned lattice sites (x, y, z) [Å].
    site_distance_A : ndarray of shape (N,)
        Distance of each atom from its site [Å].
    fitted : ndarray of shape (N,), bool
        Atoms used in the final least-squares step.
    rms_residual_A : float
        RMS distance of the fitted atoms from their sites [Å].
    n_iterations : int
        Assignment / refinement cycles run.
    """

    structure: str
    lattice_parameter_A: float
    rotation: Rotation
    origin_A: np.ndarray
    hkl: np.ndarray
    ideal_positions_A: np.ndarray
    site_distance_A: np.ndarray
    fitted: np.ndarray
    rms_residual_A: float
    n_iterations: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (quaternion scalar-last, as in :mod:`nanorecon.geometry`)."""
        return {
            "structure": self.structure,
            "lattice_parameter_A": float(self.lattice_parameter_A),
            "orientation_quaternion_xyzw": self.rotation.as_quat(canonical=True).tolist(),
            "orientation_matrix": self.rotation.as_matrix().tolist(),
            "origin_A": [float(v) for v in self.origin_A],
            "rms_residual_A": float(self.rms_residual_A),
            "n_atoms": int(len(self.hkl)),
            "n_fitted": int(self.fitted.sum()),
            "n_iterations": int(self.n_iterations),
        }


def nearest_sites(cell_coordinates: np.ndarray, structure: str) -> np.ndarray:
    """Nearest lattice sites, in units of a/2, to points given in units of a.

    fcc sites (h + k + l even) are the D3 lattice: round every coordinate and, where the sum is odd,
    round the worst coordinate the other way (Conway & Sloane). bcc sites are the nearer of the
    all-even and all-odd roundings; sc sites are all-even.
    """
    v = 2.0 * cell_coordinates
    if structure == "fcc":
        rounded = np.rint(v)
        odd = (rounded.sum(axis=1) % 2) != 0
        err = v - rounded
        worst = np.argmax(np.abs(err), axis=1)
        rows = np.nonzero(odd)[0]
        cols = worst[odd]
        rounded[rows, cols] += np.where(err[rows, cols] > 0, 1.0, -1.0)
        return rounded.astype(np.int64)
    even = 2.0 * np.rint(v / 2.0)
    if structure == "sc":
        return even.astype(np.int64)
    if structure == "bcc":
        odd = 2.0 * np.rint((v - 1.0) / 2.0) + 1.0
        use_odd = np.sum((v - odd) ** 2, axis=1) < np.sum((v - even) ** 2, axis=1)
        return np.where(use_odd[:, None], odd, even).astype(np.int64)
    raise ValueError(f"structure must be 'fcc', 'bcc' or 'sc', not {structure!r}")


def _seed_rotation(neighbour_vectors: np.ndarray, ideal: np.ndarray) -> Rotation:
    """Rotation taking ideal bond directions onto one atom's bonds (best of all pairings)."""
    b = neighbour_vectors / np.linalg.norm(neighbour_vectors, axis=1, keepdims=True)
    s = ideal / np.linalg.norm(ideal, axis=1, keepdims=True)
    ideal_cos = np.unique(np.round(s @ s[0], 6))
    smallest = ideal_cos[(ideal_cos < 0.999) & (ideal_cos > -0.999)].max()
    b1 = b[0]
    b2 = b[1 + np.argmin(np.abs(b[1:] @ b1 - smallest))]
    best, best_score = Rotation.identity(), np.inf
    pairs = np.argwhere(np.abs(s @ s.T - float(b1 @ b2)) < 0.15)
    for i, j in pairs:
        rot, _ = Rotation.align_vectors([b1, b2], [s[i], s[j]])
        score = np.min(np.linalg.norm(b[:, None, :] - rot.apply(s)[None], axis=2), axis=1).sum()
        if score < best_score:
            best, best_score = rot, score
    return best


def _canonical(rotation: Rotation) -> tuple[Rotation, np.ndarray]:
    """Cubic-equivalent rotation closest to the identity, and the matrix g with R' = R g."""
    traces = np.einsum("ij,kji->k", rotation.as_matrix(), CUBIC_ROTATIONS)
    g = CUBIC_ROTATIONS[int(np.argmax(traces))]
    return rotation * Rotation.from_matrix(g), g


def fit_lattice(
    positions_A: ArrayLike,
    *,
    structure: str = "fcc",
    fit_mask: ArrayLike | None = None,
    seed_index: int | None = None,
    max_site_distance: float = 0.3,
    max_iterations: int = 30,
    n_seeds: int = 8,
) -> LatticeFit:
    """Least-squares fit of an ideal cubic lattice to atom positions.

    Starts from the bonds of a seed atom (orientation) and the median bond length (scale), then
    alternates (1) assigning every atom to its nearest lattice site and (2) the closed-form
    least-squares similarity transform (Umeyama: scale a, rotation R, origin t) minimising
    ``Σ |r_i − t − a R s_i|²`` over the atoms within ``max_site_distance`` nearest-neighbour
    distances of their sites, until the assignment stops changing. One seed's bonds can be
    distorted (a missed or spurious neighbour) and lead the fit into a wrong lattice, so the fit
    is started from the `n_seeds` allowed atoms nearest the centroid and the one that places the
    most atoms on lattice sites (then the smallest residual) is kept.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].
    structure : {"fcc", "bcc", "sc"}, optional
        Lattice to fit.
    fit_mask : array_like of bool, shape (N,), optional
        Atoms allowed in the least-squares step (e.g. the core, leaving out relaxed surface atoms);
        all atoms by default. Every atom gets a site either way.
    seed_index : int, optional
        Atom whose 12 (fcc) / 8 (bcc) / 6 (sc) nearest neighbours give the initial orientation; by
        default the best of `n_seeds` allowed atoms nearest the centroid of the allowed atoms.
    max_site_distance : float, optional
        Outlier cut, as a fraction of the nearest-neighbour distance.
    max_iterations : int, optional
        Upper bound on assignment / refinement cycles.
    n_seeds : int, optional
        Seed atoms tried when `seed_index` is not given.

    Returns
    -------
    LatticeFit

    References
    ----------
    S. Umeyama, "Least-squares estimation of transformation parameters between two point patterns",
    IEEE Trans. Pattern Anal. Mach. Intell. 13, 376 (1991). doi:10.1109/34.88573

    Examples
    --------
    >>> from ase.cluster import Octahedron
    >>> fit = fit_lattice(Octahedron("Pt", 6, 2, latticeconstant=3.95).positions)
    >>> round(fit.lattice_parameter_A, 4)
    3.95
    """
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) < 8:
        raise ValueError(f"positions_A must have shape (N>=8, 3), got {positions.shape}")
    if structure not in _NN_VECTORS:
        raise ValueError(f"structure must be 'fcc', 'bcc' or 'sc', not {structure!r}")
    allowed = np.ones(len(positions), bool) if fit_mask is None else np.asarray(fit_mask, bool)
    if allowed.shape != (len(positions),) or allowed.sum() < 4:
        raise ValueError("fit_mask must be a boolean array of length N selecting at least 4 atoms")

    ideal = _NN_VECTORS[structure]
    tree = cKDTree(positions)
    dist, idx = tree.query(positions, k=len(ideal) + 1)
    d_nn = float(np.median(dist[allowed, 1]))
    if seed_index is not None:
        seeds = [int(seed_index)]
    else:
        candidates = np.nonzero(allowed)[0]
        centre = positions[allowed].mean(axis=0)
        order = np.argsort(np.linalg.norm(positions[candidates] - centre, axis=1))
        seeds = [int(i) for i in candidates[order[: max(1, n_seeds)]]]
    fits = []
    for seed in seeds:
        try:
            fits.append(
                _fit_from_seed(
                    positions,
                    allowed,
                    seed,
                    idx,
                    d_nn,
                    structure,
                    max_site_distance,
                    max_iterations,
                )
            )
        except RuntimeError:
            continue
    if not fits:
        raise RuntimeError("lattice fit lost its atoms from every seed: too few near lattice sites")
    return max(fits, key=lambda fit: (int(fit.fitted.sum()), -fit.rms_residual_A))


def _fit_from_seed(
    positions: np.ndarray,
    allowed: np.ndarray,
    seed_index: int,
    idx: np.ndarray,
    d_nn: float,
    structure: str,
    max_site_distance: float,
    max_iterations: int,
) -> LatticeFit:
    """One run of :func:`fit_lattice` from one seed atom."""
    ideal = _NN_VECTORS[structure]
    rotation = _seed_rotation(positions[idx[seed_index, 1:]] - positions[seed_index], ideal)
    a = d_nn / nearest_neighbour_per_lattice_parameter(structure)
    origin = positions[seed_index].copy()

    hkl = None
    n_iter = 0
    while n_iter < max_iterations:
        n_iter += 1
        cell = rotation.inv().apply(positions - origin) / a
        new_hkl = nearest_sites(cell, structure)
        sites = origin + a * rotation.apply(new_hkl / 2.0)
        distance = np.linalg.norm(positions - sites, axis=1)
        use = allowed & (distance < max_site_distance * d_nn)
        if use.sum() < 4:
            raise RuntimeError("lattice fit lost its atoms: too few within max_site_distance")
        s = new_hkl[use] / 2.0
        r = positions[use]
        s_mean, r_mean = s.mean(axis=0), r.mean(axis=0)
        rotation, _ = Rotation.align_vectors(r - r_mean, s - s_mean)
        rs = rotation.apply(s - s_mean)
        a = float(np.sum((r - r_mean) * rs) / np.sum(rs * rs))
        origin = r_mean - a * rotation.apply(s_mean)
        if hkl is not None and np.array_equal(new_hkl, hkl):
            break
        hkl = new_hkl

    rotation, g = _canonical(rotation)
    cell = rotation.inv().apply(positions - origin) / a
    hkl = nearest_sites(cell, structure)
    sites = origin + a * rotation.apply(hkl / 2.0)
    distance = np.linalg.norm(positions - sites, axis=1)
    fitted = allowed & (distance < max_site_distance * d_nn)
    return LatticeFit(
        structure=structure,
        lattice_parameter_A=a,
        rotation=rotation,
        origin_A=origin,
        hkl=hkl,
        ideal_positions_A=sites,
        site_distance_A=distance,
        fitted=fitted,
        rms_residual_A=float(np.sqrt(np.mean(distance[fitted] ** 2))),
        n_iterations=n_iter,
    )
