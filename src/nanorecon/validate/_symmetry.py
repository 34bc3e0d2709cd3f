"""Point group of an atomic model: the rotations that map it onto itself."""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

__all__ = ["point_group"]


def point_group(
    positions_A: ArrayLike,
    *,
    tolerance_A: float = 0.3,
    n_axes: int = 1000,
    max_order: int = 6,
) -> Rotation:
    """Proper rotations about the centroid that map the atoms onto themselves.

    Candidate axes (a Fibonacci sphere of `n_axes`) are scored for every rotation order 2 …
    `max_order`; the best-scoring axes are polished by Nelder–Mead, those whose RMS
    nearest-neighbour distance after rotation is below `tolerance_A` become generators, and the
    group is closed under multiplication. Projections cannot tell symmetry-equivalent
    orientations apart, so orientation errors of a symmetric particle are measured modulo this
    group (:func:`nanorecon.brownian.align_orientations` with ``symmetry``).

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].
    tolerance_A : float, optional
        Largest RMS distance [Å] of the rotated atoms to their nearest atoms (static
        displacements and surface relaxation make real particles only nearly symmetric).
    n_axes : int, optional
        Candidate axis directions.
    max_order : int, optional
        Highest rotation order tried.

    Returns
    -------
    Rotation
        The group elements, the identity first (a single identity for an asymmetric model).

    Examples
    --------
    >>> from ase.cluster import Octahedron
    >>> len(point_group(Octahedron("Pt", 5, 1).positions))  # the cube's rotation group O
    24
    """
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) < 3:
        raise ValueError(f"positions_A must have shape (N ≥ 3, 3), got {positions.shape}")
    positions = positions - positions.mean(axis=0)
    tree = cKDTree(positions)

    def mismatch(rotation: Rotation) -> float:
        return float(np.sqrt(np.mean(tree.query(rotation.apply(positions))[0] ** 2)))

    i = np.arange(n_axes) + 0.5
    z = 1 - i / n_axes  # one hemisphere: an axis and its opposite give the same rotations
    phi = np.pi * (1 + 5**0.5) * i
    axes = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], 1)
    generators = []
    for order in range(2, max_order + 1):
        angle = 2 * np.pi / order
        scores = np.array([mismatch(Rotation.from_rotvec(a * angle)) for a in axes])
        for k in np.argsort(scores)[:20]:
            fit = minimize(
                lambda v, angle=angle: mismatch(
                    Rotation.from_rotvec(v / np.linalg.norm(v) * angle)
                ),
                axes[k],
                method="Nelder-Mead",
                options={"xatol": 1e-4, "fatol": 1e-5},
            )
            if fit.fun < tolerance_A:
                generators.append(Rotation.from_rotvec(fit.x / np.linalg.norm(fit.x) * angle))
    group = [Rotation.identity()]
    grown = True
    while grown and len(group) < 120:
        grown = False
        for g, h in itertools.product(list(group), generators):
            product = g * h
            if all((product * e.inv()).magnitude() > np.radians(3) for e in group):
                if mismatch(product) < tolerance_A:
                    group.append(product)
                    grown = True
    return Rotation.concatenate(group)


def is_centrosymmetric(positions_A: ArrayLike, *, tolerance_A: float = 0.3) -> bool:
    """Whether the atoms, inverted through their centroid, land on atoms.

    A map with a centre of inversion projects identically at orientations ``R`` and ``C₂z R``
    (the half turn about the beam), so each frame's orientation is defined only modulo that
    half turn (:func:`nanorecon.brownian.align_orientations` with ``centrosymmetric``).

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].
    tolerance_A : float, optional
        Largest RMS distance [Å] of the inverted atoms to their nearest atoms (as in
        :func:`point_group`).

    Returns
    -------
    bool

    Examples
    --------
    >>> from ase.cluster import Octahedron
    >>> is_centrosymmetric(Octahedron("Pt", 5, 1).positions)
    True
    >>> is_centrosymmetric([[0, 0, 0], [1.5, 0, 0], [0, 2.5, 0], [0, 0, 4.0]])
    False
    """
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) < 1:
        raise ValueError(f"positions_A must have shape (N, 3), got {positions.shape}")
    positions = positions - positions.mean(axis=0)
    distances, _ = cKDTree(positions).query(-positions)
    return bool(np.sqrt(np.mean(distances**2)) < tolerance_A)
