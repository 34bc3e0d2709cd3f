"""Candidate atom peaks: local maxima above a threshold, thinned to a minimum separation."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..backend import asnumpy, get_array_module, get_ndimage_module


def local_maxima(volume, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxels that are the maximum of their 3 × 3 × 3 neighbourhood and exceed ``threshold``.

    Returns (z, y, x) indices (M, 3) and values (M,) as numpy arrays, strongest first.
    """
    xp, ndi = get_array_module(volume), get_ndimage_module(volume)
    peak = ndi.maximum_filter(volume, size=3, mode="constant", cval=-xp.inf)
    mask = (volume >= peak) & (volume > threshold)
    index = asnumpy(xp.argwhere(mask))
    values = asnumpy(volume[mask])
    order = np.argsort(-values, kind="stable")
    return index[order], values[order]


def thin_peaks(points: np.ndarray, *, min_distance: float) -> np.ndarray:
    """Greedy non-maximum suppression: keep points in order unless a kept one is closer than
    ``min_distance``. ``points`` must be sorted strongest first; returns the kept rows' indices."""
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    pairs = cKDTree(points).query_pairs(min_distance, output_type="ndarray")
    partners: list[list[int]] = [[] for _ in range(len(points))]
    for a, b in pairs:
        partners[min(a, b)].append(max(a, b))
    removed = np.zeros(len(points), bool)
    for i in range(len(points)):
        if not removed[i]:
            removed[partners[i]] = True
    return np.nonzero(~removed)[0]
