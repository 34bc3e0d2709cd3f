"""How well traced atoms fill a fitted lattice: a truth-free score of a map's atom model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._fit import LatticeFit
from ._vacancies import empty_sites_inside


@dataclass(frozen=True)
class SiteScore:
    """Result of :func:`lattice_site_score`.

    Attributes
    ----------
    n_atoms : int
        Atoms traced.
    n_outliers : int
        Atoms the lattice fit left out (too far from every site).
    n_empty : int
        Sites inside the atoms' convex hull that hold no atom.
    rms_residual_A : float
        RMS distance of the fitted atoms from their sites [Å] (the fit's own figure).
    score_A : float
        RMS over atoms and empty sites of each one's distance from the crystal, capped [Å]:
        an atom counts its distance from its site, an empty site counts the cap.
    """

    n_atoms: int
    n_outliers: int
    n_empty: int
    rms_residual_A: float
    score_A: float


def lattice_site_score(
    positions_A: np.ndarray,
    fit: LatticeFit,
    *,
    cap: float = 0.25,
    empty_tolerance: float = 0.35,
) -> SiteScore:
    """Score an atom model by how closely and how completely it fills its fitted lattice.

    The fit's RMS residual alone rewards a map that lost its worst-resolved atoms (they leave
    the fit, not the figure). Here every atom counts its distance from its site, capped at
    ``cap · a`` (an outlier counts the cap), and every empty site inside the atoms' convex hull
    counts the cap too; the score is the RMS over both. Lower is better. A real particle's
    strain and vacancies add the same to every map of it, so the score ranks maps of one particle.

    Parameters
    ----------
    positions_A : ndarray of shape (N, 3)
        Atom positions (x, y, z) [Å], those `fit` was fitted to.
    fit : LatticeFit
        From :func:`fit_lattice`.
    cap : float, optional
        Largest distance an atom or empty site counts, in units of the lattice parameter
        (default 0.25: beyond it an atom is as wrong as a missing one).
    empty_tolerance : float, optional
        Passed to :func:`empty_sites_inside` as its ``tolerance`` (units of the lattice
        parameter).

    Returns
    -------
    SiteScore
    """
    positions = np.asarray(positions_A, dtype=float).reshape(-1, 3)
    if not cap > 0:
        raise ValueError(f"cap must be positive, not {cap}")
    limit_A = cap * fit.lattice_parameter_A
    empty = empty_sites_inside(positions, fit, tolerance=empty_tolerance)
    distance_A = np.minimum(np.asarray(fit.site_distance_A, dtype=float), limit_A)
    distance_A[~np.asarray(fit.fitted, dtype=bool)] = limit_A
    squares = np.concatenate([distance_A**2, np.full(len(empty), limit_A**2)])
    return SiteScore(
        n_atoms=len(positions),
        n_outliers=int((~np.asarray(fit.fitted, dtype=bool)).sum()),
        n_empty=len(empty),
        rms_residual_A=float(fit.rms_residual_A),
        score_A=float(np.sqrt(squares.mean())) if squares.size else float("nan"),
    )
