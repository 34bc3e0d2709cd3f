"""Noise level of a density map: from half maps, the region outside the particle, or non-zero
voxels."""

from __future__ import annotations

import numpy as np

from ..backend import asnumpy, get_array_module, get_ndimage_module


def _smooth(volume, sigma_vox: float):
    if sigma_vox <= 0:
        return volume
    return get_ndimage_module(volume).gaussian_filter(volume, sigma_vox)


def kernel_norm(sigma_vox: float) -> float:
    """L2 norm of a normalised 3D Gaussian of ``sigma_vox`` voxels (1 for no smoothing): the factor
    by which smoothing scales the standard deviation of white noise."""
    if sigma_vox <= 0:
        return 1.0
    h = int(np.ceil(4.0 * sigma_vox))
    g = np.exp(-(np.arange(-h, h + 1) ** 2) / (2.0 * sigma_vox**2))
    g /= g.sum()
    return float(np.sum(g**2) ** 1.5)


def estimate_noise(
    volume,
    *,
    support,
    half_maps=None,
    smooth_sigma_vox: float = 0.0,
    margin_vox: float = 3.0,
) -> tuple[float, str]:
    """Standard deviation of the noise of ``volume`` after Gaussian smoothing by
    ``smooth_sigma_vox`` [voxel].

    In order of preference:

    1. Half maps: the standard deviation of the smoothed ``(half1 − half2) / 2`` inside
       ``support`` (outside it, positivity and support constraints zero both halves alike).
    2. The region more than ``margin_vox`` outside the support, when most of it is not exactly
       zero: 1.4826 × the median absolute deviation of the smoothed map there.
    3. Non-zero voxels of the region outside the support (or of the whole map when that region
       has none), taken as the positive half of zero-mean noise clipped by positivity:
       σ = median / 0.6745, scaled by the smoothing kernel's L2 norm (white noise, an upper bound
       for the high-pass noise of reconstructions).

    Returns
    -------
    sigma : float
        Noise standard deviation of the smoothed map [map units].
    method : str
        ``"half_maps"``, ``"outside"`` or ``"nonzero"``.
    """
    ndi = get_ndimage_module(volume)
    inside = support.astype(bool)
    if half_maps is not None:
        xp = get_array_module(volume)
        difference = 0.5 * (xp.asarray(half_maps[0]) - xp.asarray(half_maps[1]))
        values = asnumpy(_smooth(difference.astype(volume.dtype), smooth_sigma_vox)[inside])
        sigma = float(np.std(values)) if values.size else 0.0
        if sigma > 0:
            return sigma, "half_maps"
    outside = ~ndi.binary_dilation(inside, iterations=max(1, int(round(margin_vox))))
    raw = asnumpy(volume[outside])
    if raw.size > 1000 and np.mean(raw == 0) < 0.5:
        values = asnumpy(_smooth(volume, smooth_sigma_vox)[outside])
        sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
        if sigma > 0:
            return sigma, "outside"
    nonzero = raw[raw != 0]
    if nonzero.size < 100:
        everything = asnumpy(volume).ravel()
        nonzero = everything[everything != 0]
    if nonzero.size == 0:
        return 0.0, "nonzero"
    sigma = float(np.median(np.abs(nonzero))) / 0.6745
    return sigma * kernel_norm(smooth_sigma_vox), "nonzero"
