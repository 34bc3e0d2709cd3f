"""The particle's own 3D mask, from where its map holds lattice fringes."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..backend import asnumpy, get_array_module

__all__ = ["FINAL_MAP_MARGIN_A", "FRINGE_BAND_A", "grow_mask", "particle_mask", "resample_mask"]

#: Band of the fringes that mark the crystal [Å]: from below the fcc metals' {111} spacings
#: (2.2–2.4 Å) to past their {200} spacings (1.9–2.0 Å).
FRINGE_BAND_A = (2.6, 1.8)

#: Margin [Å] by which the final maps' support extends the particle's own mask: about the
#: half-width of an atom's density at 1.1 Å resolution, so that atoms on the mask's edge
#: (vertices, where the fringe power falls off inside the outer atoms) keep their outer side.
FINAL_MAP_MARGIN_A = 1.0


def particle_mask(
    volume: Any,
    *,
    voxel_size_A: float,
    support: Any = None,
    band_A: tuple[float, float] = FRINGE_BAND_A,
    smooth_A: float = 2.0,
    threshold: float = 0.3,
    core_radius_A: float = 5.0,
) -> Any:
    """Voxels of a crystalline particle: where its map's lattice-fringe power is high.

    The map is band-passed to `band_A` (its lattice fringes), squared and smoothed by a Gaussian
    of σ = `smooth_A`; the mask is the connected region around the box centre where this power
    exceeds `threshold` × its median within `core_radius_A` of the centre, holes filled, within
    `support`. A plain map made under a spherical support holds density out to the support
    (noise and the blur of orientation errors fill it), but only the crystal holds fringes, so
    the fringe power follows the particle's own shape: on the demo movie's maps at 2.0 Å the
    mask's volume is that of a sphere of 15.0 Å for a sphere of atoms 13.6 Å in radius, and of
    12.2 Å for one of 10.4 Å; for an octahedron whose vertex atoms lie 16.0 Å out it holds 40 %
    of the volume of a 17 Å sphere and reaches 16.0 Å, so the outer side of the vertex atoms'
    density lies at or past its edge. The smoothing extends it about one σ past the outer atoms
    of faces, less at sparse vertices.

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Map (z, y, x) of a particle centred at ``N // 2``, numpy or cupy.
    voxel_size_A : float
        Voxel edge [Å].
    support : ndarray of bool, shape (N, N, N), optional
        Voxels the mask may cover (everything when None).
    band_A : (float, float), optional
        Longest and shortest spacing of the fringe band [Å].
    smooth_A : float, optional
        σ of the Gaussian that smooths the fringe power [Å].
    threshold : float, optional
        Fraction of the core's fringe power that marks the particle.
    core_radius_A : float, optional
        Radius of the central ball whose median power is the reference [Å].

    Returns
    -------
    ndarray of bool, shape (N, N, N)
        The mask, on the array module of `volume`.

    Examples
    --------
    >>> n, voxel = 48, 0.4
    >>> z, y, x = (np.indices((n, n, n)) - n // 2) * voxel
    >>> crystal = np.cos(2 * np.pi * x / 2.0) ** 2 * (np.sqrt(x**2 + y**2 + z**2) < 6.0)
    >>> mask = particle_mask(crystal, voxel_size_A=voxel)
    >>> bool(mask[n // 2, n // 2, n // 2]), bool(mask[n // 2, n // 2, 2])
    (True, False)
    """
    xp = get_array_module(volume)
    values = np.asarray(asnumpy(volume), dtype=np.float64)
    if values.ndim != 3 or len(set(values.shape)) != 1:
        raise ValueError(f"volume must be a cubic 3D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("volume holds NaN or infinite values")
    longest, shortest = band_A
    if not longest > shortest >= 2 * voxel_size_A:
        raise ValueError(
            f"band_A must run from a longer to a shorter spacing of at least two voxels "
            f"({2 * voxel_size_A:.2f} Å), got {band_A}"
        )
    if not 0 < threshold < 1 or smooth_A <= 0 or core_radius_A <= 0:
        raise ValueError(
            "need 0 < threshold < 1, smooth_A > 0 and core_radius_A > 0, got "
            f"{threshold}, {smooth_A}, {core_radius_A}"
        )
    n = values.shape[0]
    frequency = np.fft.fftfreq(n, d=voxel_size_A)
    k = np.sqrt(
        frequency[:, None, None] ** 2
        + frequency[None, :, None] ** 2
        + frequency[None, None, :] ** 2
    )
    band = (k > 1 / longest) & (k < 1 / shortest)
    fringes = np.fft.ifftn(np.fft.fftn(values) * band).real
    power = ndimage.gaussian_filter(fringes**2, smooth_A / voxel_size_A, mode="constant")
    offsets = (np.indices(values.shape) - n // 2) * voxel_size_A
    radius = np.sqrt((offsets**2).sum(axis=0))
    core = float(np.median(power[radius <= core_radius_A]))
    if core <= 0:
        raise ValueError("the map holds no lattice fringes at its centre: no particle to mask")
    inside = power > threshold * core
    if support is not None:
        inside &= np.asarray(asnumpy(support), dtype=bool)
    labels, _ = ndimage.label(inside)
    centre = labels[n // 2, n // 2, n // 2]
    mask = ndimage.binary_fill_holes(labels == centre) if centre else np.zeros_like(inside)
    return xp.asarray(mask)


def resample_mask(mask: Any, size: int, voxel_size_A: float, new_voxel_size_A: float) -> Any:
    """`mask` (N³, centre at ``N // 2``) on a grid of `size`³ voxels of `new_voxel_size_A`.

    Trilinear interpolation of the mask's indicator, kept where it exceeds one half; the two
    grids share their centre voxel. Returns a boolean array on the mask's array module.
    """
    xp = get_array_module(mask)
    values = np.asarray(asnumpy(mask), dtype=np.float32)
    n = values.shape[0]
    if size == n and np.isclose(voxel_size_A, new_voxel_size_A):
        return xp.asarray(values > 0.5)
    coordinates = (np.indices((size,) * 3) - size // 2) * (new_voxel_size_A / voxel_size_A) + n // 2
    resampled = ndimage.map_coordinates(values, coordinates, order=1, mode="constant")
    return xp.asarray(resampled > 0.5)


def grow_mask(mask: Any, margin_A: float, voxel_size_A: float) -> Any:
    """`mask` extended by every voxel within `margin_A` of it (Euclidean distance).

    Parameters
    ----------
    mask : ndarray of bool, shape (N, N, N)
        Mask, numpy or cupy.
    margin_A : float
        Distance [Å] from the mask's voxel centres within which voxels join it; 0 keeps it.
    voxel_size_A : float
        Voxel edge [Å].

    Returns
    -------
    ndarray of bool, shape (N, N, N)
        The grown mask, on the array module of `mask`.

    Examples
    --------
    >>> mask = np.zeros((9, 9, 9), dtype=bool)
    >>> mask[4, 4, 4] = True
    >>> int(grow_mask(mask, 1.0, 0.5).sum())  # a ball of two voxels' radius
    33
    """
    if margin_A < 0 or voxel_size_A <= 0:
        raise ValueError(f"need margin_A >= 0 and voxel_size_A > 0, got {margin_A}, {voxel_size_A}")
    xp = get_array_module(mask)
    inside = np.asarray(asnumpy(mask), dtype=bool)
    if not inside.any():
        return xp.asarray(inside)
    distance_A = ndimage.distance_transform_edt(~inside, sampling=voxel_size_A)
    return xp.asarray(distance_A <= margin_A)
