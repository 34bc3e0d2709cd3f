"""Species classification of traced atoms by integrated intensity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..lattice import atomic_number


def classify_species(
    intensity: ArrayLike,
    elements: Sequence[str],
    *,
    z_exponent: float = 1.7,
    max_iterations: int = 100,
) -> np.ndarray:
    """Assign each atom an element by 1D k-means on its log integrated intensity.

    The spread of each species' intensities grows with its mean (noise, shot noise, neighbour
    overlap scale with the signal), so clusters are sought on a log scale: with a 6:1 heavy/light
    contrast the boundary falls near the geometric mean, not at the arithmetic midpoint that would
    hand the heavy cluster's low tail to the light one. Cluster centres start from the intensity
    histogram's top (the 95th percentile, taken as the heaviest element) scaled by the expected
    ratios ``(Z / Z_max) ** z_exponent`` (HAADF contrast); Lloyd iterations then converge.
    Clusters are ordered by intensity and named in order of atomic number, so the heavier element
    always gets the larger intensity.

    Parameters
    ----------
    intensity : array_like of shape (N,)
        Integrated intensity per atom (any positive unit).
    elements : sequence of str
        The particle's elements.
    z_exponent : float, optional
        Exponent of the Z-contrast law used only for the starting centres.
    max_iterations : int, optional
        Upper bound on Lloyd iterations.

    Returns
    -------
    ndarray of shape (N,), dtype object
        Element symbol per atom.

    Examples
    --------
    >>> classify_species([1.0, 6.1, 0.9, 5.8], ["Pt", "Fe"])
    array(['Fe', 'Pt', 'Fe', 'Pt'], dtype=object)
    """
    values = np.asarray(intensity, dtype=float)
    symbols = sorted(set(elements), key=atomic_number)
    if not symbols:
        raise ValueError("elements must name at least one element")
    if len(symbols) == 1 or values.size == 0:
        return np.full(values.shape, symbols[-1], dtype=object)
    z = np.array([atomic_number(s) for s in symbols], float)
    # Non-positive intensities (failed fits) go to the lightest element.
    floor = np.min(values[values > 0]) if np.any(values > 0) else 1.0
    values = np.log(np.maximum(values, floor))
    centres = np.percentile(values, 95.0) + z_exponent * np.log(z / z.max())
    labels = np.zeros(values.shape, int)
    for _ in range(max_iterations):
        new = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        for k in range(len(centres)):
            if np.any(new == k):
                centres[k] = values[new == k].mean()
        order = np.argsort(centres)
        centres = centres[order]
        new = np.argsort(order)[new]
        if np.array_equal(new, labels):
            break
        labels = new
    return np.asarray(symbols, dtype=object)[labels]
