"""How completely a set of projections samples Fourier space (the missing wedge or cone)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation


def largest_fourier_gap_deg(
    rotations: Rotation | ArrayLike, *, n_directions: int = 20000, chunk: int = 4096
) -> float:
    """The largest angle between a Fourier-space direction and every sampled central section.

    By the Fourier-slice theorem each projection samples the central plane normal to its viewing
    direction. A direction of the map's Fourier space at angle ``g`` from the nearest such plane
    is sampled only through the real-space constraints (support, positivity): resolution along it
    degrades, and atoms elongate. This returns the largest such ``g`` over all directions: 0 for
    complete coverage, ``90 − θ_max`` for a single-axis tilt series over ``±θ_max`` (its missing
    wedge), 90 for a single view. A tumbling particle seen over a short movie covers only a cone
    of viewing directions, so its map has a missing cone; this measures it. (Orientations of a
    symmetric particle known only modulo its point group sample the symmetry-equivalent views
    too: on the demo movie the true orientations leave gaps of 42–64°, the refined ones 11–33°.)

    Parameters
    ----------
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per projection (the beam runs along microscope z).
    n_directions : int, optional
        Directions tested, spread evenly over the sphere (Fibonacci lattice); 20000 resolves the
        gap to about 1° (half the lattice's spacing).
    chunk : int, optional
        Directions per block (memory: ``chunk × n`` floats).

    Returns
    -------
    float
        The largest gap [deg].

    Examples
    --------
    >>> from nanorecon.geometry import tilt_series_rotations
    >>> gap = largest_fourier_gap_deg(tilt_series_rotations(np.arange(-70.0, 71.0, 2.0)))
    >>> bool(abs(gap - 20.0) < 1.5)  # the ±70° tilt series' missing wedge
    True
    """
    matrices = (
        rotations.as_matrix()
        if isinstance(rotations, Rotation)
        else np.asarray(rotations, dtype=float)
    )
    if matrices.ndim == 2:
        matrices = matrices[None]
    if matrices.ndim != 3 or matrices.shape[1:] != (3, 3) or len(matrices) == 0:
        raise ValueError(f"rotations must be one or more 3 × 3 matrices, got {matrices.shape}")
    if n_directions < 2:
        raise ValueError(f"n_directions must be at least 2, got {n_directions}")
    # The viewing direction in the map frame is R⁻¹ ẑ, the third row of R.
    views = matrices[:, 2, :]
    views = views / np.linalg.norm(views, axis=1, keepdims=True)
    sphere = _fibonacci_sphere(n_directions)
    gap = 0.0
    for start in range(0, n_directions, chunk):
        directions = sphere[start : start + chunk]
        # sin(angle to the plane normal to v) = |s · v|; the nearest plane has the smallest.
        nearest = np.abs(directions @ views.T).min(axis=1)
        gap = max(gap, float(nearest.max()))
    return float(np.degrees(np.arcsin(min(gap, 1.0))))


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (golden-angle spiral)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    radius = np.sqrt(1 - z**2)
    azimuth = np.pi * (3 - np.sqrt(5)) * k
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), z], axis=1)
