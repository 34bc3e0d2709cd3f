"""Movie preparation: dose normalisation, graphene notch filter and background removal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nanorecon.backend import get_array_module, get_ndimage_module, supported_float_type

__all__ = [
    "GRAPHENE_SPACINGS_A",
    "frequency_magnitude",
    "lattice_notch_filter",
    "normalise_dose",
    "power_spectrum_sum",
    "remove_background",
]

#: graphene {10-10} and {11-20} lattice-plane spacings [Å]
GRAPHENE_SPACINGS_A = (2.13, 1.23)


def _frames(frames: Any) -> tuple[Any, Any]:
    xp = get_array_module(frames)
    frames = xp.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise ValueError(f"frames must have shape (n, Y, X), not {tuple(frames.shape)}")
    return xp, frames.astype(supported_float_type(frames.dtype), copy=False)


def frequency_magnitude(shape: Sequence[int], pixel_size_A: float, *, xp: Any = np) -> Any:
    """|k| on the ``rfft2`` grid of an image (ny, nx) [1/Å]."""
    ky = xp.fft.fftfreq(int(shape[0]), d=pixel_size_A)[:, None]
    kx = xp.fft.rfftfreq(int(shape[1]), d=pixel_size_A)[None, :]
    return xp.sqrt(kx**2 + ky**2)


def normalise_dose(frames: Any) -> Any:
    """Divide each frame by its mean dose, so that the background level is 1.

    Parameters
    ----------
    frames : ndarray of shape (n, Y, X)
        Counts (numpy or cupy).

    Returns
    -------
    ndarray of shape (n, Y, X)
        Frames relative to their mean (float32 or float64).

    Examples
    --------
    >>> normalise_dose(np.array([[[2.0, 6.0]], [[1.0, 1.0]]]))[:, 0].tolist()
    [[0.5, 1.5], [1.0, 1.0]]
    """
    xp, frames = _frames(frames)
    mean = frames.mean(axis=(1, 2), keepdims=True)
    if bool(xp.any(mean <= 0)):
        raise ValueError("a frame has no dose (mean ≤ 0); drop empty frames before tracking")
    return frames / mean


def power_spectrum_sum(frames: Any) -> Any:
    """Sum over frames of ``|rfft2(frame - mean)|²`` (accumulate blocks, then find notches).

    Parameters
    ----------
    frames : ndarray of shape (n, Y, X)

    Returns
    -------
    ndarray of shape (Y, X // 2 + 1)
        float64 power, same array module.
    """
    xp, frames = _frames(frames)
    spectra = xp.fft.rfft2(frames - frames.mean(axis=(1, 2), keepdims=True))
    return (xp.abs(spectra) ** 2).sum(axis=0).astype(xp.float64)


def lattice_notch_filter(
    power: Any,
    pixel_size_A: float,
    *,
    image_shape: Sequence[int],
    spacings_A: Sequence[float] = GRAPHENE_SPACINGS_A,
    tolerance: float = 0.04,
    threshold: float = 6.0,
    radius_px: float = 1.5,
) -> tuple[Any, int]:
    """Notch filter suppressing the sharp reflections of a static crystal (graphene).

    In the summed power spectrum of a movie the support's reflections are sharp spots (the
    support only drifts, which changes phases, not amplitudes), while tumbling particles spread
    their fringes over whole rings. Each spectrum pixel within ``±tolerance`` (relative) of the
    given spacings is compared with the median power of its ring; pixels more than `threshold`
    robust standard deviations (1.4826 × median absolute deviation) above it are reflections,
    and a disc of `radius_px` around each (and its Friedel
    mate) is set to zero, with a one-pixel linear edge.

    Parameters
    ----------
    power : ndarray of shape (Y, X // 2 + 1)
        Summed power spectrum on the ``rfft2`` grid (:func:`power_spectrum_sum`).
    pixel_size_A : float
        [Å].
    image_shape : (int, int)
        (Y, X) of the frames [px].
    spacings_A : sequence of float, optional
        Lattice-plane spacings to search [Å] (graphene 2.13 and 1.23 Å).
    tolerance : float, optional
        Relative half-width of each search ring.
    threshold : float, optional
        Robust standard deviations above the ring median that make a reflection.
    radius_px : float, optional
        Notch radius [Fourier px].

    Returns
    -------
    notch : ndarray of shape (Y, X // 2 + 1)
        Multiplicative filter in [0, 1] (float32).
    n_reflections : int
        Number of distinct reflections found on the ``rfft2`` half grid.
    """
    xp = get_array_module(power)
    ndi = get_ndimage_module(power)
    power = xp.asarray(power, dtype=xp.float64)
    ny, nx = (int(v) for v in image_shape)
    nxh = nx // 2 + 1
    if power.shape != (ny, nxh):
        raise ValueError(f"power must have shape {(ny, nxh)} for images {(ny, nx)}")
    k = frequency_magnitude((ny, nx), pixel_size_A, xp=xp)
    dk = 1.0 / (max(ny, nx) * pixel_size_A)
    # The median of each one-pixel ring is the smooth (amorphous + particle) level there.
    ring = xp.rint(k / dk).astype(xp.int64)
    peaks = xp.zeros(power.shape, dtype=bool)
    for d in spacings_A:
        k0 = 1.0 / float(d)
        near = xp.abs(k - k0) <= tolerance * k0
        if k0 > 0.5 / pixel_size_A or not bool(near.any()):
            continue  # beyond Nyquist
        for r in xp.unique(ring[near]).tolist():
            on = near & (ring == r)
            level = xp.median(power[on])
            spread = 1.4826 * xp.median(xp.abs(power[on] - level))
            peaks |= on & (power > level + threshold * spread)
    n_reflections = int(ndi.label(peaks)[1])
    if n_reflections == 0:
        return xp.ones(power.shape, dtype=xp.float32), 0
    # Full grid (Friedel mates included) so that discs wrap across the kx = 0 column.
    full = xp.zeros((ny, nx), dtype=bool)
    full[:, :nxh] = peaks
    mate_rows = (-xp.arange(ny)) % ny
    mate_cols = nx - xp.arange(nxh, nx)
    full[:, nxh:] = peaks[mate_rows][:, mate_cols]
    tiled = xp.tile(~full, (3, 3))  # wrap-around distances
    dist = ndi.distance_transform_edt(tiled)[ny : 2 * ny, nx : 2 * nx]
    notch = xp.clip(dist - radius_px, 0.0, 1.0)
    return notch[:, :nxh].astype(xp.float32), n_reflections


def remove_background(
    frames: Any,
    pixel_size_A: float,
    *,
    sigma_A: float = 15.0,
    notch: Any = None,
) -> Any:
    """Subtract the slowly varying liquid/graphene background and apply a lattice notch.

    The background is the frame low-passed by a Gaussian of `sigma_A` (in Fourier space, so
    that the edges wrap consistently with the notch); `notch` (from
    :func:`lattice_notch_filter`) removes the support's lattice reflections.

    Parameters
    ----------
    frames : ndarray of shape (n, Y, X)
        Dose-normalised frames (numpy or cupy).
    pixel_size_A : float
        [Å].
    sigma_A : float, optional
        Standard deviation of the background's Gaussian low-pass [Å].
    notch : ndarray of shape (Y, X // 2 + 1), optional
        Multiplicative Fourier filter.

    Returns
    -------
    ndarray of shape (n, Y, X)
        Background-free frames (zero mean), same array module.

    Examples
    --------
    >>> y, x = np.mgrid[:64, :64]
    >>> smooth = 1 + 0.2 * np.sin(2 * np.pi * x / 64)
    >>> bool(np.abs(remove_background(smooth[None], 0.5, sigma_A=1.0)).max() < 0.01)
    True
    """
    xp, frames = _frames(frames)
    if sigma_A <= 0:
        raise ValueError(f"sigma_A must be positive, not {sigma_A}")
    shape = frames.shape[-2:]
    k = frequency_magnitude(shape, pixel_size_A, xp=xp)
    keep = 1.0 - xp.exp(-2.0 * (np.pi * sigma_A * k) ** 2)
    if notch is not None:
        if tuple(notch.shape) != tuple(keep.shape):
            raise ValueError(f"notch must have shape {tuple(keep.shape)}, not {notch.shape}")
        keep = keep * xp.asarray(notch)
    out = xp.fft.irfft2(xp.fft.rfft2(frames) * keep, s=shape)
    return out.astype(frames.dtype, copy=False)
