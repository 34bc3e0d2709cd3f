"""Nanoparticles with known atoms: fcc spheres and ase clusters, alloys, surface relaxation."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from ase.build import bulk
from ase.cluster import Decahedron, Icosahedron, Octahedron
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

from nanorecon.lattice import bulk_lattice_parameter_A
from nanorecon.lattice import vegard_lattice_parameter_A as lattice_vegard

SHAPES = ("sphere", "octahedron", "decahedron", "icosahedron")


@dataclass(frozen=True)
class Particle:
    """A simulated nanoparticle.

    Attributes
    ----------
    positions_A : ndarray of shape (N, 3)
        Atom positions (x, y, z) in the particle frame [Å], centroid at 0.
    elements : ndarray of shape (N,)
        Chemical symbol of every atom.
    lattice_parameter_A : float
        fcc lattice parameter of the undistorted crystal [Å].
    shape : str
        One of ``"sphere"``, ``"octahedron"``, ``"decahedron"``, ``"icosahedron"``.
    diameter_nm : float
        Volume-equivalent diameter of the built particle,
        ``(6 N a³ / (4 π))^(1/3)`` [nm] (fcc atomic volume ``a³/4``).
    crystal_rotation : Rotation
        Crystal axes → particle frame.
    surface_strain : float
        Relative radial displacement ``s`` of the outermost atoms (see :func:`make_particle`).
    """

    positions_A: np.ndarray
    elements: np.ndarray
    lattice_parameter_A: float
    shape: str
    diameter_nm: float
    crystal_rotation: Rotation
    surface_strain: float = 0.0

    @property
    def n_atoms(self) -> int:
        return int(self.positions_A.shape[0])


def fcc_equivalent_lattice_parameter_A(element: str) -> float:
    """fcc lattice parameter with the bulk atomic volume of `element` [Å] (see nanorecon.lattice)."""
    return bulk_lattice_parameter_A(element, structure="fcc")


def vegard_lattice_parameter_A(elements: list[str], fractions: np.ndarray) -> float:
    """Composition-weighted mean of fcc-equivalent bulk lattice parameters [Å] (Vegard's law)."""
    return lattice_vegard(elements, fractions=fractions, structure="fcc")


def _equivalent_diameter_A(n_atoms: int, a: float) -> float:
    return float((6.0 * n_atoms * a**3 / (4.0 * np.pi)) ** (1.0 / 3.0))


@functools.lru_cache(maxsize=64)
def _decahedron_table(p_max: int) -> tuple[tuple[int, int, int, int], ...]:
    """(p, q, r, n_atoms) of roughly isotropic decahedra (extent ratio ≤ 1.3)."""
    rows = []
    for p in range(1, p_max + 1):
        for q in range(max(1, p - 3), p + 1):
            for r in (0, 1, 2):
                if r > 0 and p < 2:
                    continue
                atoms = Decahedron("Cu", p, q, r, latticeconstant=1.0)
                extent = np.ptp(atoms.positions, axis=0)
                if len(atoms) > 3 and extent.max() > 1.3 * extent.min():
                    continue
                rows.append((p, q, r, len(atoms)))
    return tuple(rows)


def _build_cluster(shape: str, diameter_A: float, a: float, symbol: str, truncation: float):
    """Build the ase cluster whose volume-equivalent diameter is closest to `diameter_A`."""
    if shape == "sphere":
        n_cells = int(np.ceil(diameter_A / a)) + 2
        crystal = bulk(symbol, "fcc", a=a, cubic=True).repeat((n_cells, n_cells, n_cells))
        positions = crystal.positions
        # centre on a lattice site so the sphere keeps the cubic point symmetry
        site = positions[np.argmin(np.linalg.norm(positions - positions.mean(0), axis=1))]
        positions = positions - site
        # radius from the requested volume-equivalent diameter, tuned to the discrete shells
        radii = np.sort(np.linalg.norm(positions, axis=1))
        counts = np.arange(1, radii.size + 1)
        d = (6.0 * counts * a**3 / (4.0 * np.pi)) ** (1.0 / 3.0)
        shell_end = np.r_[radii[1:] > radii[:-1] + 1e-6, True]
        k = np.argmin(np.where(shell_end, np.abs(d - diameter_A), np.inf))
        return positions[np.linalg.norm(positions, axis=1) <= radii[k] + 1e-6]
    candidates = []
    if shape == "octahedron":
        for length in range(2, 80):
            cutoff = int(round(truncation * (length - 1) / 2))
            n = Octahedron("Cu", length, cutoff, latticeconstant=1.0).get_global_number_of_atoms()
            candidates.append(((length, cutoff), n))
            if _equivalent_diameter_A(n, a) > diameter_A + 2 * a:
                break
        build = lambda args: Octahedron(symbol, *args, latticeconstant=a)  # noqa: E731
    elif shape == "icosahedron":
        for shells in range(1, 40):
            n = Icosahedron("Cu", shells, latticeconstant=1.0).get_global_number_of_atoms()
            candidates.append(((shells,), n))
            if _equivalent_diameter_A(n, a) > diameter_A + 2 * a:
                break
        build = lambda args: Icosahedron(symbol, *args, latticeconstant=a)  # noqa: E731
    elif shape == "decahedron":
        p_max = 2
        while _equivalent_diameter_A(
            Decahedron("Cu", p_max, p_max, 0).get_global_number_of_atoms(), a
        ) < (diameter_A + 2 * a):
            p_max += 1
        candidates = [((p, q, r), n) for p, q, r, n in _decahedron_table(p_max)]
        build = lambda args: Decahedron(symbol, *args, latticeconstant=a)  # noqa: E731
    else:
        raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")
    errors = [abs(_equivalent_diameter_A(n, a) - diameter_A) for _, n in candidates]
    args = candidates[int(np.argmin(errors))][0]
    positions = build(args).positions
    return positions - positions.mean(axis=0)


def _depth_below_surface_A(positions: np.ndarray) -> np.ndarray:
    """Distance of each atom below the convex-hull surface through the outermost atoms [Å]."""
    if positions.shape[0] < 5:
        return np.zeros(positions.shape[0])
    hull = ConvexHull(positions)
    # hull.equations: n·x + b <= 0 inside; depth = min over facets of -(n·x + b)
    signed = positions @ hull.equations[:, :3].T + hull.equations[:, 3]
    return np.clip(-signed.max(axis=1), 0.0, None)


def make_particle(
    *,
    shape: str = "sphere",
    diameter_nm: float = 2.0,
    elements: list[str] | tuple[str, ...] = ("Pt",),
    composition: list[float] | tuple[float, ...] | None = None,
    lattice_parameter_A: float | None = None,
    surface_strain: float = 0.0,
    strain_decay_length_A: float = 2.5,
    static_displacement_A: float = 0.05,
    octahedron_truncation: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Particle:
    """Build a nanoparticle with known atom positions.

    The undistorted crystal (fcc sphere or ase cluster) is scaled to `lattice_parameter_A`; species
    are assigned by random site occupation with the exact requested composition (counts rounded).
    Each atom then moves radially by the smooth surface relaxation

    ``u(r) = s · a · exp(-(R_surface - r) / λ)``,

    where ``s`` is `surface_strain`, ``a`` the lattice parameter, ``λ`` `strain_decay_length_A` and
    ``R_surface - r`` the atom's depth below the particle surface (distance to the convex hull of
    the atoms, which equals ``R - r`` for a sphere). Finally every coordinate gets an independent
    Gaussian static displacement of standard deviation `static_displacement_A`, the crystal is
    rotated randomly and the centroid is moved to 0.

    Parameters
    ----------
    shape : {"sphere", "octahedron", "decahedron", "icosahedron"}
        Single-crystal fcc sphere, (truncated) octahedron, Ino/Marks decahedron (five twinned
        tetrahedra) or Mackay icosahedron (twenty twinned tetrahedra).
    diameter_nm : float
        Requested volume-equivalent diameter [nm]; the cluster size closest to it is built.
    elements : sequence of str
        Chemical symbols.
    composition : sequence of float, optional
        Relative amounts of `elements` (default: equal).
    lattice_parameter_A : float, optional
        fcc lattice parameter [Å]; default: Vegard average of the bulk values (fcc-equivalent atomic
        volume for non-fcc elements, from ``ase.data.reference_states``).
    surface_strain : float
        ``s``, relative radial displacement at the surface (e.g. -0.02 … 0.02).
    strain_decay_length_A : float
        ``λ`` [Å].
    static_displacement_A : float
        Standard deviation of the random displacement per coordinate [Å].
    octahedron_truncation : float
        Vertex truncation of octahedra in [0, 1): ase ``cutoff = truncation · (length - 1) / 2``.
    rng : numpy.random.Generator, optional
        Random source (species, displacements, orientation).

    Returns
    -------
    Particle

    Examples
    --------
    >>> p = make_particle(shape="sphere", diameter_nm=1.0, rng=np.random.default_rng(0))
    >>> str(p.elements[0]), round(p.lattice_parameter_A, 2)
    ('Pt', 3.92)
    """
    rng = np.random.default_rng() if rng is None else rng
    elements = [str(e) for e in elements]
    if not elements:
        raise ValueError("elements must name at least one element")
    fractions = np.ones(len(elements)) if composition is None else np.asarray(composition, float)
    if fractions.shape != (len(elements),) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ValueError(
            f"composition {composition!r} must give one non-negative amount per element"
        )
    fractions = fractions / fractions.sum()
    if diameter_nm <= 0:
        raise ValueError(f"diameter_nm must be positive, got {diameter_nm}")
    if not 0.0 <= octahedron_truncation < 1.0:
        raise ValueError(f"octahedron_truncation must lie in [0, 1), got {octahedron_truncation}")
    a = (
        vegard_lattice_parameter_A(elements, fractions)
        if lattice_parameter_A is None
        else float(lattice_parameter_A)
    )
    crystal = _build_cluster(shape, 10.0 * diameter_nm, a, elements[0], octahedron_truncation)
    n = crystal.shape[0]

    counts = np.floor(fractions * n).astype(int)
    remainder = fractions * n - counts
    counts[np.argsort(-remainder)[: n - counts.sum()]] += 1
    species = np.repeat(np.array(elements, dtype=object), counts)
    species = species[rng.permutation(n)].astype(str)

    centred = crystal - crystal.mean(axis=0)
    radius = np.linalg.norm(centred, axis=1)
    direction = np.divide(
        centred, radius[:, None], out=np.zeros_like(centred), where=radius[:, None] > 0
    )
    depth = _depth_below_surface_A(centred)
    relaxed = (
        centred + (surface_strain * a * np.exp(-depth / strain_decay_length_A))[:, None] * direction
    )
    relaxed = relaxed + rng.normal(0.0, static_displacement_A, size=relaxed.shape)

    rotation = Rotation.random(random_state=rng)
    positions = rotation.apply(relaxed)
    positions -= positions.mean(axis=0)
    return Particle(
        positions_A=positions,
        elements=species,
        lattice_parameter_A=a,
        shape=shape,
        diameter_nm=_equivalent_diameter_A(n, a) / 10.0,
        crystal_rotation=rotation,
        surface_strain=float(surface_strain),
    )
