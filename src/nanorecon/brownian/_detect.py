"""Particle detection in liquid-cell HRTEM frames by local lattice-fringe power."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from skimage.feature import peak_local_max

from nanorecon.backend import asnumpy, get_ndimage_module

from ._prepare import _frames, frequency_magnitude

__all__ = ["DETECTION_COLUMNS", "detect_particles", "fringe_power_map"]

#: columns of the detection table (positions [Å] from the centre of pixel (0, 0))
DETECTION_COLUMNS = ["frame", "x_A", "y_A", "score"]


def fringe_power_map(
    frames: Any,
    pixel_size_A: float,
    *,
    band_A: Sequence[float] = (1.0, 3.0),
    smooth_A: float = 4.0,
    smooth_frames: float = 0.0,
) -> Any:
    """Local power of lattice fringes: band-pass, square, Gaussian smoothing.

    A crystalline particle in HRTEM shows fringes with spacings of 1-3 Å; the liquid is
    amorphous and the graphene lattice should have been notched out
    (:func:`lattice_notch_filter`), so the local power in that band is high on particles only.

    Parameters
    ----------
    frames : ndarray of shape (n, Y, X)
        Background-free frames (numpy or cupy).
    pixel_size_A : float
        [Å].
    band_A : (float, float), optional
        Smallest and largest fringe spacing kept [Å] (Gaussian edges).
    smooth_A : float, optional
        Standard deviation of the smoothing of the squared band-pass image [Å].

    Returns
    -------
    ndarray of shape (n, Y, X)
        Fringe power (float32 or float64), same array module.
    """
    xp, frames = _frames(frames)
    ndi = get_ndimage_module(frames)
    d_min, d_max = (float(v) for v in band_A)
    if not 0 < d_min < d_max:
        raise ValueError(f"band_A must be (smallest, largest) spacing > 0, not {band_A}")
    shape = frames.shape[-2:]
    k = frequency_magnitude(shape, pixel_size_A, xp=xp)
    lowpass = xp.exp(-0.5 * (k * d_min) ** 2 * 4.0)
    highpass = 1.0 - xp.exp(-0.5 * (k * d_max) ** 2 * 4.0)
    filtered = xp.fft.irfft2(xp.fft.rfft2(frames) * (lowpass * highpass), s=shape)
    sigma = smooth_A / pixel_size_A
    out = ndi.gaussian_filter(filtered**2, (smooth_frames, sigma, sigma), mode="nearest")
    return out.astype(frames.dtype, copy=False)


def _centroid(power: np.ndarray, x: float, y: float, radius: float) -> tuple[float, float]:
    """Background-subtracted power centroid within `radius` of (x, y) [px], iterated."""
    ny, nx = power.shape
    r = int(np.ceil(radius)) + 1
    for _ in range(4):
        x0, y0 = int(round(x)), int(round(y))
        ys, xs = (
            slice(max(y0 - r, 0), min(y0 + r + 1, ny)),
            slice(max(x0 - r, 0), min(x0 + r + 1, nx)),
        )
        yy, xx = np.mgrid[ys, xs]
        patch = power[ys, xs]
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        ring = ~inside & ((xx - x) ** 2 + (yy - y) ** 2 <= (radius + 2) ** 2)
        floor = float(np.median(patch[ring])) if ring.any() else 0.0
        w = np.where(inside, np.clip(patch - floor, 0.0, None), 0.0)
        total = float(w.sum())
        if total <= 0:
            break
        x_new, y_new = float((w * xx).sum() / total), float((w * yy).sum() / total)
        moved = np.hypot(x_new - x, y_new - y)
        x, y = x_new, y_new
        if moved < 0.01:
            break
    return x, y


def detect_particles(
    frames: Any,
    pixel_size_A: float,
    *,
    diameter_A: float,
    threshold: float = 3.5,
    first_frame: int = 0,
    band_A: Sequence[float] = (1.0, 3.0),
    smooth_frames: float = 1.5,
) -> pd.DataFrame:
    """Detect particles in each frame as maxima of the fringe-power map.

    Maxima at least a particle radius apart whose height above the frame's median exceeds
    `threshold` robust standard deviations (1.4826 × median absolute deviation of the map) are
    particles; their centres are refined to sub-pixel precision as the centroid of the
    background-subtracted fringe power within the particle radius.

    Parameters
    ----------
    frames : ndarray of shape (n, Y, X)
        Background-free, graphene-notched frames (numpy or cupy).
    pixel_size_A : float
        [Å].
    diameter_A : float
        Expected particle diameter [Å].
    threshold : float, optional
        Detection threshold in robust standard deviations of the map.
    first_frame : int, optional
        Index of ``frames[0]`` in the movie (for block-wise processing).
    band_A : (float, float), optional
        Fringe-spacing band of :func:`fringe_power_map` [Å].

    Returns
    -------
    DataFrame
        :data:`DETECTION_COLUMNS`: frame, centre (x_A, y_A) measured from the centre of pixel
        (0, 0) [Å], and score (peak height in robust standard deviations).
    """
    if diameter_A <= 0:
        raise ValueError(f"diameter_A must be positive, not {diameter_A}")
    radius_px = 0.5 * diameter_A / pixel_size_A
    # smoothing over neighbouring frames gains more signal than the motion blur costs
    power = fringe_power_map(
        frames, pixel_size_A, band_A=band_A, smooth_A=diameter_A / 4, smooth_frames=smooth_frames
    )
    rows = []
    for i, frame_power in enumerate(asnumpy(power)):
        level = float(np.median(frame_power))
        spread = 1.4826 * float(np.median(np.abs(frame_power - level)))
        if spread <= 0:
            continue
        z = (frame_power - level) / spread
        peaks = peak_local_max(
            z,
            min_distance=max(1, int(round(radius_px))),
            threshold_abs=threshold,
            exclude_border=False,
        )
        for y, x in peaks:
            xc, yc = _centroid(frame_power, float(x), float(y), radius_px)
            rows.append(
                {
                    "frame": first_frame + i,
                    "x_A": xc * pixel_size_A,
                    "y_A": yc * pixel_size_A,
                    "score": float(z[y, x]),
                }
            )
    table = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    return table.astype({"frame": np.int64, "x_A": float, "y_A": float, "score": float})
