"""Pre-alignment of a single-axis tilt series: shifts and the tilt-axis direction."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..backend import asnumpy, get_array_module, supported_float_type
from ..refine import cross_correlation_shifts

__all__ = [
    "axial_profiles",
    "centre_of_mass_shifts",
    "estimate_tilt_axis",
    "neighbour_shifts",
    "prealign_tilt_series",
]


def _check_images(images: Any, *, min_images: int = 2) -> Any:
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, Y, X), got {tuple(images.shape)}")
    if images.shape[0] < min_images:
        raise ValueError(f"a tilt series needs at least 2 images, got {images.shape[0]}")
    return images.astype(supported_float_type(images.dtype), copy=False)


def centre_of_mass_shifts(
    images: Any, *, mask_radius_px: float | None = None, n_iterations: int = 3
) -> np.ndarray:
    """Intensity-weighted centre of each (background-free) image relative to the image centre.

    For HAADF images (intensity linear in the projected mass) the centre of mass of image k is
    the projection of the particle's 3D centre of mass, so these shifts put the map origin on
    the particle's centre of mass. Negative pixels (noise around zero background) are ignored;
    with `mask_radius_px` the centre is recomputed `n_iterations` times inside a disc around the
    previous estimate, which keeps distant background residue out.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted images, numpy or cupy.
    mask_radius_px : float, optional
        Radius of the disc around the particle [px]; the whole image when None.
    n_iterations : int, optional
        Re-centrings of the disc.

    Returns
    -------
    ndarray of shape (n, 2)
        ``(shift_x, shift_y)`` [px] of the centre of mass from pixel ``(Y // 2, X // 2)``.

    Examples
    --------
    >>> images = np.zeros((1, 9, 9)); images[0, 6, 3] = 1.0
    >>> centre_of_mass_shifts(images)
    array([[-1.,  2.]])
    """
    images = _check_images(images, min_images=1)
    xp = get_array_module(images)
    n, ny, nx = images.shape
    y = (xp.arange(ny, dtype=images.dtype) - ny // 2)[None, :, None]
    x = (xp.arange(nx, dtype=images.dtype) - nx // 2)[None, None, :]
    weights = xp.maximum(images, 0)
    shifts = xp.zeros((n, 2), dtype=xp.float64)
    for _ in range(1 if mask_radius_px is None else n_iterations + 1):
        total = xp.maximum(weights.sum(axis=(1, 2)), xp.finfo(images.dtype).tiny)
        shifts = xp.stack(
            [(weights * x).sum(axis=(1, 2)) / total, (weights * y).sum(axis=(1, 2)) / total],
            axis=1,
        ).astype(xp.float64)
        if mask_radius_px is not None:
            r2 = (x - shifts[:, 0, None, None]) ** 2 + (y - shifts[:, 1, None, None]) ** 2
            weights = xp.where(r2 <= float(mask_radius_px) ** 2, xp.maximum(images, 0), 0)
    return asnumpy(shifts)


def neighbour_shifts(
    images: Any, tilt_angles_deg: ArrayLike, *, lowpass_px: float | None = 2.0
) -> np.ndarray:
    """Cumulative cross-correlation alignment from the lowest tilt outward.

    Each image is aligned to its neighbour one step closer to zero tilt and the steps are
    summed, so the lowest-tilt image keeps shift 0. Neighbouring projections differ only by a
    small tilt, which keeps the correlation peak sharp; the errors of the steps add up like a
    random walk, so this is a coarse alignment, to be followed by projection matching.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted images, numpy or cupy, in any order.
    tilt_angles_deg : array_like of shape (n,)
        Tilt of each image [deg].
    lowpass_px : float, optional
        Gaussian smoothing of the cross-correlation [px], so that the lattice fringes of
        neighbouring images cannot lock onto a wrong lattice vector.

    Returns
    -------
    ndarray of shape (n, 2)
        ``(shift_x, shift_y)`` [px] of each image relative to the lowest-tilt image.
    """
    images = _check_images(images)
    xp = get_array_module(images)
    tilts = np.asarray(tilt_angles_deg, dtype=float)
    if tilts.shape != (images.shape[0],):
        raise ValueError(f"{images.shape[0]} images but {tilts.size} tilt angles")
    order = np.argsort(tilts)
    zero = int(np.argmin(np.abs(tilts[order])))
    # Pairs (image, neighbour closer to zero) walking outward on both sides.
    moving = np.concatenate([order[zero + 1 :], order[:zero][::-1]])
    anchors = np.concatenate([order[zero:-1], order[1 : zero + 1][::-1]])
    steps = np.zeros((images.shape[0], 2))
    if moving.size:
        steps[moving] = cross_correlation_shifts(
            images[xp.asarray(moving)], images[xp.asarray(anchors)], lowpass_px=lowpass_px
        )
    shifts = np.zeros_like(steps)
    for index, anchor in zip(moving, anchors, strict=True):
        # Anchors are visited before the images that lean on them (outward order).
        shifts[index] = shifts[anchor] + steps[index]
    return shifts


def axial_profiles(images: Any, tilt_axis_deg: float, *, bin_px: float = 1.0) -> Any:
    """Projections of each image onto the tilt axis (sums across it).

    For a single-axis tilt series these 1D profiles are the projection of the 3D particle onto
    its tilt axis, the same at every tilt up to a shift along the axis (the common line of all
    images). Pixels are split linearly between the two nearest bins.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted images, numpy or cupy.
    tilt_axis_deg : float
        Axis direction, counter-clockwise from the image y axis [deg]
        (:mod:`nanorecon.geometry`).
    bin_px : float, optional
        Bin width along the axis [px].

    Returns
    -------
    ndarray of shape (n, L)
        Profiles; bin ``L // 2`` holds the image centre.
    """
    xp = get_array_module(images)
    n, ny, nx = images.shape
    phi = np.radians(float(tilt_axis_deg))
    y = xp.arange(ny, dtype=xp.float64)[:, None] - ny // 2
    x = xp.arange(nx, dtype=xp.float64)[None, :] - nx // 2
    # The axis is Rz(φ)·ŷ = (-sin φ, cos φ) in (x, y).
    t = (-x * np.sin(phi) + y * np.cos(phi)) / bin_px
    length = 2 * int(np.ceil(np.hypot(ny, nx) / (2 * bin_px))) + 3
    position = (t + length // 2).ravel()
    lower = xp.floor(position).astype(xp.int64)
    frac = position - lower
    flat = images.reshape(n, -1).astype(xp.float64)
    # One bincount for all images: image k uses bins k·L ... k·L + L - 1.
    offsets = (xp.arange(n, dtype=xp.int64) * length)[:, None]
    index = xp.concatenate([(lower + offsets).ravel(), (lower + 1 + offsets).ravel()])
    values = xp.concatenate([(flat * (1 - frac)).ravel(), (flat * frac).ravel()])
    return xp.bincount(index, weights=values, minlength=n * length).reshape(n, length)


def _profile_inconsistency(profiles: Any, max_frequency: float) -> float:
    """Spread of shift-invariant profile spectra |FFT| across images, relative to their mean."""
    xp = get_array_module(profiles)
    totals = xp.maximum(xp.abs(profiles.sum(axis=1, keepdims=True)), 1e-30)
    spectra = xp.abs(xp.fft.rfft(profiles / totals, axis=1))
    keep = xp.fft.rfftfreq(profiles.shape[1]) <= max_frequency
    spectra = spectra[:, keep]
    mean = spectra.mean(axis=0)
    return float(((spectra - mean) ** 2).sum() / (mean**2).sum() / spectra.shape[0])


def estimate_tilt_axis(
    images: Any,
    *,
    step_deg: float = 2.0,
    precision_deg: float = 0.05,
    max_frequency: float = 0.25,
) -> float:
    """Direction of the tilt axis from the consistency of the images' axial profiles.

    Only along the true axis is the projection of every image onto the axis the same 1D profile
    (up to a shift). Each candidate direction is scored by how much the amplitude spectra of the
    images' profiles (shift invariant, so no alignment is needed) differ; a coarse scan over
    180° is refined by golden-section search around its best point. A direction and its opposite
    give the same profiles; the estimate lies in (-90°, 90°], and the opposite direction
    describes the same data with the opposite hand (see Notes).

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted images of a single-axis tilt series, numpy or cupy.
    step_deg : float, optional
        Step of the coarse scan [deg].
    precision_deg : float, optional
        Width of the final bracket of the golden-section search [deg].
    max_frequency : float, optional
        Highest profile frequency compared [cycles/px]; higher ones hold mostly noise.

    Returns
    -------
    float
        Tilt-axis direction, counter-clockwise from the image y axis [deg], in (-90, 90].

    Notes
    -----
    ``Rz(φ + 180°)·Ry(θ) = Rz(φ)·Ry(-θ)·Rz(180°)``: turning the axis by 180° equals reversing the
    tilt signs, which projections cannot tell from mirroring the particle.
    """
    images = _check_images(images)
    if step_deg <= 0 or precision_deg <= 0:
        raise ValueError("step_deg and precision_deg must be positive")

    def cost(angle: float) -> float:
        return _profile_inconsistency(axial_profiles(images, angle), max_frequency)

    candidates = np.arange(-90.0, 90.0, step_deg)
    costs = np.array([cost(a) for a in candidates])
    best = float(candidates[int(np.argmin(costs))])
    # Golden-section search on the bracket of the best coarse point (the cost is periodic in 180°).
    lo, hi = best - step_deg, best + step_deg
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = cost(a), cost(b)
    while hi - lo > precision_deg:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = cost(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = cost(b)
    angle = 0.5 * (lo + hi)
    return float(angle - 180.0 * np.ceil((angle - 90.0) / 180.0))


def prealign_tilt_series(
    images: Any,
    *,
    tilt_axis_deg: float,
    mask_radius_px: float | None = None,
) -> np.ndarray:
    """Shifts of a tilt series: centre of mass across the axis, common line along it.

    Across the tilt axis each image's centre of mass (:func:`centre_of_mass_shifts`) is the
    projection of the particle's centre of mass. Along the axis every image has the same profile
    (:func:`axial_profiles`), so each profile is aligned to the mean profile by cross-correlation
    (twice, re-forming the mean), which uses all the structure along the axis rather than one
    moment; the mean of these shifts is set to the mean centre of mass along the axis.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted, intensity-normalised images, numpy or cupy.
    tilt_axis_deg : float
        Tilt-axis direction in the images [deg].
    mask_radius_px : float, optional
        Radius of the disc around the particle used for the centre of mass [px].

    Returns
    -------
    ndarray of shape (n, 2)
        ``(shift_x, shift_y)`` [px]: where the particle's centre of mass appears, relative to
        pixel ``(Y // 2, X // 2)``.
    """
    images = _check_images(images)
    xp = get_array_module(images)
    com = centre_of_mass_shifts(images, mask_radius_px=mask_radius_px)
    phi = np.radians(float(tilt_axis_deg))
    axis = np.array([-np.sin(phi), np.cos(phi)])
    across = np.array([np.cos(phi), np.sin(phi)])
    profiles = axial_profiles(images, tilt_axis_deg)[:, None, :]
    along = np.zeros(images.shape[0])
    for _ in range(2):
        shifted = _shift_profiles(profiles, -along)
        reference = xp.broadcast_to(shifted.mean(axis=0, keepdims=True), profiles.shape)
        along = cross_correlation_shifts(profiles, reference)[:, 0]
    along = along - along.mean() + float((com @ axis).mean())
    return along[:, None] * axis[None, :] + (com @ across)[:, None] * across[None, :]


def _shift_profiles(profiles: Any, shifts_px: np.ndarray) -> Any:
    """Move profiles (n, 1, L) by `shifts_px` with a Fourier phase ramp."""
    xp = get_array_module(profiles)
    k = xp.fft.fftfreq(profiles.shape[-1])[None, None, :]
    ramp = xp.exp(-2j * np.pi * k * xp.asarray(shifts_px)[:, None, None])
    return xp.fft.ifft(xp.fft.fft(profiles, axis=-1) * ramp, axis=-1).real
