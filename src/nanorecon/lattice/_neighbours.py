"""Coordination numbers, surface flags and the radial interatomic-distance profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

# Between the first (d) and second (√2 d) fcc shells, as in adaptive CNA.
SHELL_CUTOFF_FACTOR = (1.0 + np.sqrt(2.0)) / 2.0


def nearest_neighbour_distance_A(positions_A: ArrayLike) -> float:
    """Median distance of each atom to its nearest neighbour [Å]."""
    positions = np.asarray(positions_A, dtype=float)
    dist, _ = cKDTree(positions).query(positions, k=2)
    return float(np.median(dist[:, 1]))


def coordination_numbers(positions_A: ArrayLike, *, cutoff_A: float | None = None) -> np.ndarray:
    """Number of neighbours of each atom within a cut-off [Å].

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].
    cutoff_A : float, optional
        Neighbour cut-off [Å]; by default ``(1 + √2)/2`` × the median nearest-neighbour distance,
        between the first and second fcc shells (bcc atoms then count their 8 + 6 neighbours).

    Returns
    -------
    ndarray of shape (N,), int
    """
    positions = np.asarray(positions_A, dtype=float)
    if cutoff_A is None:
        cutoff_A = SHELL_CUTOFF_FACTOR * nearest_neighbour_distance_A(positions)
    tree = cKDTree(positions)
    return tree.query_ball_point(positions, cutoff_A, return_length=True) - 1


def radial_distance_profile(
    positions_A: ArrayLike,
    *,
    bin_width_A: float = 1.0,
    cutoff_A: float | None = None,
    centre_A: ArrayLike | None = None,
) -> pd.DataFrame:
    """Nearest-neighbour (first-shell) bond lengths binned by radial distance from the centre.

    Every bond shorter than ``cutoff_A`` is binned at the radial distance of its midpoint.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        Atom positions (x, y, z) [Å].
    bin_width_A : float, optional
        Radial bin width [Å].
    cutoff_A : float, optional
        First-shell cut-off [Å]; default as in :func:`coordination_numbers`.
    centre_A : array_like of shape (3,), optional
        Centre (x, y, z) [Å]; the centroid of the atoms by default.

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``r_min_A, r_max_A, r_mid_A, mean_distance_A, std_distance_A,
        n_bonds``.
    """
    positions = np.asarray(positions_A, dtype=float)
    if bin_width_A <= 0:
        raise ValueError(f"bin_width_A must be positive, got {bin_width_A}")
    if cutoff_A is None:
        cutoff_A = SHELL_CUTOFF_FACTOR * nearest_neighbour_distance_A(positions)
    centre = positions.mean(axis=0) if centre_A is None else np.asarray(centre_A, dtype=float)
    pairs = cKDTree(positions).query_pairs(cutoff_A, output_type="ndarray")
    length = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    radius = np.linalg.norm(
        0.5 * (positions[pairs[:, 0]] + positions[pairs[:, 1]]) - centre, axis=1
    )
    bins = np.floor(radius / bin_width_A).astype(int)
    frame = pd.DataFrame({"bin": bins, "d": length})
    grouped = frame.groupby("bin")["d"].agg(["mean", "std", "count"]).reset_index()
    return pd.DataFrame(
        {
            "r_min_A": grouped["bin"] * bin_width_A,
            "r_max_A": (grouped["bin"] + 1) * bin_width_A,
            "r_mid_A": (grouped["bin"] + 0.5) * bin_width_A,
            "mean_distance_A": grouped["mean"],
            "std_distance_A": grouped["std"].fillna(0.0),
            "n_bonds": grouped["count"].astype(int),
        }
    )
