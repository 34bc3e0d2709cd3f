"""Separable rendering of Gaussian atoms into pixel- or voxel-integrated images and volumes.

A Gaussian of an atom integrated over a pixel factorises into one factor per axis, each a difference
of two error functions at the pixel edges. An image is then ``(Gy · w)ᵀ @ Gx``: one matrix product,
no cut-off radius, and exact integrals (the sum over an unbounded grid equals the sum of the
weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nanorecon.backend import get_array_module

# Work-array budget (elements) for chunking over atoms in the 3D renderer.
_CHUNK_ELEMENTS = 8_000_000


def _erf(xp: Any):
    if xp is np:
        from scipy.special import erf

        return erf
    from cupyx.scipy.special import erf  # pragma: no cover - GPU only

    return erf  # pragma: no cover - GPU only


def pixel_integrated_gaussians(
    centres_px: Any, sigma_px: Any, n_pixels: int, *, dtype: Any = np.float64
) -> Any:
    """Integrals of unit 1D Gaussians over the pixels ``[j - ½, j + ½]``, ``j = 0 … n - 1``.

    Parameters
    ----------
    centres_px : ndarray of shape (N,)
        Gaussian centres in pixel coordinates (pixel j is centred on j).
    sigma_px : float or ndarray of shape (N,)
        Standard deviations [px].
    n_pixels : int
        Number of pixels along the axis.

    Returns
    -------
    ndarray of shape (N, n_pixels)
        Same array module as `centres_px`.
    """
    xp = get_array_module(centres_px)
    erf = _erf(xp)
    centres = xp.asarray(centres_px, dtype=dtype)[:, None]
    sigma = xp.asarray(sigma_px, dtype=dtype)
    scale = 1.0 / (math.sqrt(2.0) * (sigma[:, None] if sigma.ndim else sigma))
    edges = xp.arange(n_pixels + 1, dtype=dtype)[None, :] - 0.5
    cdf = erf((edges - centres) * scale)
    return 0.5 * (cdf[:, 1:] - cdf[:, :-1])


def project_gaussians(
    positions_A: Any,
    weights: Any,
    *,
    shape: Sequence[int],
    pixel_size_A: float,
    sigma_A: Any,
    origin_A: Sequence[float] = (0.0, 0.0),
    dtype: Any = np.float64,
) -> Any:
    """Project Gaussian atoms along z into a pixel-integrated image.

    Parameters
    ----------
    positions_A : ndarray of shape (N, 2) or (N, 3)
        (x, y[, z]) [Å]; z is ignored.
    weights : ndarray of shape (N,)
        Integrated weight of each atom (any unit); the image holds the weight per pixel.
    shape : (int, int)
        (ny, nx) [px].
    pixel_size_A : float
        Pixel edge length [Å].
    sigma_A : float or ndarray of shape (N,)
        Gaussian standard deviation per axis [Å].
    origin_A : (float, float)
        (x, y) position of the centre of pixel ``(ny // 2, nx // 2)`` [Å].

    Returns
    -------
    ndarray of shape (ny, nx)
        Same array module as `positions_A`, dtype `dtype`.

    Examples
    --------
    >>> img = project_gaussians(np.zeros((1, 3)), np.ones(1), shape=(9, 9), pixel_size_A=1.0,
    ...                         sigma_A=0.5)
    >>> round(float(img.sum()), 6), [int(i) for i in np.unravel_index(img.argmax(), img.shape)]
    (1.0, [4, 4])
    """
    xp = get_array_module(positions_A)
    positions = xp.asarray(positions_A, dtype=dtype)
    ny, nx = (int(s) for s in shape)
    sigma_px = xp.asarray(sigma_A, dtype=dtype) / float(pixel_size_A)
    ox, oy, p = float(origin_A[0]), float(origin_A[1]), float(pixel_size_A)
    cx = (positions[:, 0] - ox) / p + nx // 2
    cy = (positions[:, 1] - oy) / p + ny // 2
    gx = pixel_integrated_gaussians(cx, sigma_px, nx, dtype=dtype)
    gy = pixel_integrated_gaussians(cy, sigma_px, ny, dtype=dtype)
    w = xp.asarray(weights, dtype=dtype)
    return (gy * w[:, None]).T @ gx


def atoms_to_volume(
    positions_A: Any,
    weights: Any,
    shape: Sequence[int],
    voxel_size_A: float,
    sigma_A: Any,
    *,
    dtype: Any = np.float32,
) -> Any:
    """Render Gaussian atoms into a voxel-integrated volume (the ground-truth map).

    Parameters
    ----------
    positions_A : ndarray of shape (N, 3)
        (x, y, z) [Å]; 0 lies on voxel ``(nz // 2, ny // 2, nx // 2)``.
    weights : ndarray of shape (N,)
        Integrated weight per atom; each voxel holds the weight inside it.
    shape : (int, int, int)
        (nz, ny, nx) [voxels].
    voxel_size_A : float
        Voxel edge length [Å].
    sigma_A : float or ndarray of shape (N,)
        Gaussian standard deviation [Å].

    Returns
    -------
    ndarray of shape (nz, ny, nx)
        Same array module as `positions_A`. Its sum along z equals :func:`project_gaussians` of the
        same atoms.

    Examples
    --------
    >>> vol = atoms_to_volume(np.zeros((1, 3)), np.ones(1), (5, 5, 5), 1.0, 0.5)
    >>> round(float(vol.sum()), 5)
    1.0
    """
    xp = get_array_module(positions_A)
    positions = xp.asarray(positions_A, dtype=np.float64)
    nz, ny, nx = (int(s) for s in shape)
    w = xp.asarray(weights, dtype=np.float64)
    sigma = xp.broadcast_to(xp.asarray(sigma_A, dtype=np.float64), w.shape) / voxel_size_A
    centre = np.array([nx // 2, ny // 2, nz // 2], dtype=np.float64)
    c = positions / voxel_size_A + xp.asarray(centre)
    out = xp.zeros((nz * ny, nx), dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, nz * ny))
    for start in range(0, w.shape[0], step):
        sl = slice(start, start + step)
        gx = pixel_integrated_gaussians(c[sl, 0], sigma[sl], nx)
        gy = pixel_integrated_gaussians(c[sl, 1], sigma[sl], ny)
        gz = pixel_integrated_gaussians(c[sl, 2], sigma[sl], nz) * w[sl, None]
        zy = (gz[:, :, None] * gy[:, None, :]).reshape(gz.shape[0], nz * ny)
        out += zy.T @ gx
    return out.reshape(nz, ny, nx).astype(dtype, copy=False)
