"""From a raw tilt series to a particle stack: background, alignment, box, orientations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module, get_ndimage_module
from ..geometry import tilt_series_rotations
from ._alignment import _check_images, centre_of_mass_shifts, estimate_tilt_axis
from ._alignment import prealign_tilt_series as _prealign
from ._background import normalise_intensity, remove_background

__all__ = [
    "TiltSeriesStack",
    "estimate_particle_radius",
    "prepare_tilt_series",
    "spherical_support",
]


@dataclass(frozen=True)
class TiltSeriesStack:
    """A pre-aligned tilt series cut to a box: the input of projection matching.

    Attributes
    ----------
    images : ndarray of shape (n, box, box)
        Background-free, intensity-normalised images, same array module as the input.
    tilt_angles_deg : ndarray of shape (n,)
        Nominal tilts [deg].
    tilt_axis_deg : float
        Tilt-axis direction in the images [deg].
    rotations : Rotation
        ``tilt_series_rotations(tilt_angles_deg, tilt_axis_deg=tilt_axis_deg)``.
    shifts_A : ndarray of shape (n, 2)
        ``(shift_x_A, shift_y_A)`` of the particle's centre of mass from the box centre [Å].
    crop_offset_px : tuple of int
        ``(x, y)`` of the box centre from the raw images' centre pixel ``(X // 2, Y // 2)``
        [px]; a shift in the raw images is ``shifts_A / pixel_size_A + crop_offset_px``.
    particle_radius_A : float
        Largest distance of the particle's projected outline from its centre of mass [Å].
    pixel_size_A : float
        [Å].
    """

    images: Any
    tilt_angles_deg: np.ndarray
    tilt_axis_deg: float
    rotations: Rotation
    shifts_A: np.ndarray
    crop_offset_px: tuple[int, int]
    particle_radius_A: float
    pixel_size_A: float

    @property
    def raw_shifts_px(self) -> np.ndarray:
        """``(shift_x, shift_y)`` [px] relative to the centre of the raw images."""
        return self.shifts_A / self.pixel_size_A + np.asarray(self.crop_offset_px, dtype=float)


def estimate_particle_radius(
    images: Any, *, pixel_size_A: float, smoothing_A: float = 1.0, threshold: float = 0.15
) -> float:
    """Radius of a particle from the outline of its background-free projections.

    Each image is smoothed (atoms merge into a continuous projected thickness), thresholded at
    `threshold` of its maximum, and the connected region holding the maximum is kept; its
    radius is the largest distance of that region from the image's centre of mass. The particle's
    radius is the 90th percentile over the images, so that a few images whose outline merges
    with something else (a support film seen edge-on at high tilt, a neighbouring particle) do
    not set it.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted images, numpy or cupy.
    pixel_size_A : float
        [Å].
    smoothing_A : float, optional
        Gaussian smoothing before thresholding [Å].
    threshold : float, optional
        Fraction of the smoothed maximum that counts as particle.

    Returns
    -------
    float
        Radius [Å].
    """
    images = _check_images(images, min_images=1)
    ndi = get_ndimage_module(images)
    smooth = asnumpy(
        ndi.gaussian_filter(images, (0, smoothing_A / pixel_size_A, smoothing_A / pixel_size_A))
    )
    centres = centre_of_mass_shifts(images)
    n, ny, nx = smooth.shape
    y, x = np.mgrid[:ny, :nx]
    radii = np.empty(n)
    for k in range(n):
        mask = smooth[k] >= threshold * smooth[k].max()
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        peak = np.unravel_index(np.argmax(smooth[k]), mask.shape)
        region = labels == labels[peak]
        cx, cy = centres[k] + (nx // 2, ny // 2)
        radii[k] = np.sqrt((x[region] - cx) ** 2 + (y[region] - cy) ** 2).max()
    return float(np.percentile(radii, 90)) * pixel_size_A


def spherical_support(
    size: int, radius_A: float, voxel_size_A: float, *, device: str = "cpu"
) -> Any:
    """Boolean sphere of `radius_A` around voxel ``(N // 2,) * 3`` of an ``N³`` grid.

    Examples
    --------
    >>> int(spherical_support(5, 1.0, 1.0).sum())
    7
    """
    axis = (np.arange(size) - size // 2) * float(voxel_size_A)
    r2 = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    mask = r2 <= float(radius_A) ** 2
    return mask if device == "cpu" else get_array_module("gpu").asarray(mask)


def _crop(images: Any, centre_xy: tuple[int, int], box: int) -> Any:
    """Cut (n, box, box) around raw pixel `centre_xy`, padding with zeros outside the images."""
    xp = get_array_module(images)
    n, ny, nx = images.shape
    out = xp.zeros((n, box, box), dtype=images.dtype)
    y0, x0 = centre_xy[1] - box // 2, centre_xy[0] - box // 2
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(ny, y0 + box), min(nx, x0 + box)
    out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = images[:, ys:ye, xs:xe]
    return out


def prepare_tilt_series(
    images: Any,
    tilt_angles_deg: ArrayLike,
    *,
    pixel_size_A: float,
    box_px: int | None = None,
    tilt_axis_deg: float | None = None,
    margin_A: float = 3.0,
) -> TiltSeriesStack:
    """Background, intensity, tilt axis and shifts of a HAADF tilt series; cut to a box.

    Steps: (1) subtract a plane fitted to the darkest pixels, find the particle's outline
    (:func:`estimate_particle_radius`); (2) subtract a plane fitted to everything outside the
    particle (radius + `margin_A`) and scale every image to the series' mean integrated
    intensity (:func:`normalise_intensity`); (3) estimate the tilt axis from the consistency of
    the axial profiles (:func:`estimate_tilt_axis`) unless given; (4) shifts from the centre of
    mass across the axis and the common line along it (:func:`prealign_tilt_series`); (5) cut a
    box around the median particle position, one window for all images, so the stored shifts
    keep the full per-image motion.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Raw HAADF tilt series, numpy or cupy.
    tilt_angles_deg : array_like of shape (n,)
        Nominal tilts [deg].
    pixel_size_A : float
        [Å].
    box_px : int, optional
        Edge of the output box [px]; default: the particle diameter plus twice `margin_A` plus
        the spread of the shifts, rounded up to an even number.
    tilt_axis_deg : float, optional
        Known tilt-axis direction [deg]; estimated when None.
    margin_A : float, optional
        Gap kept around the particle outline [Å].

    Returns
    -------
    TiltSeriesStack
    """
    images = _check_images(images)
    tilts = np.asarray(tilt_angles_deg, dtype=float)
    if tilts.shape != (images.shape[0],):
        raise ValueError(
            f"{images.shape[0]} images but {tilts.size} tilt angles; give one angle per image"
        )
    if not np.all(np.isfinite(tilts)) or np.abs(tilts).max() > 90:
        raise ValueError("tilt angles must be finite and within ±90°")
    if pixel_size_A <= 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    if box_px is not None and box_px < 8:
        raise ValueError(f"box_px must be at least 8, got {box_px}")
    rough = remove_background(images)
    radius_A = estimate_particle_radius(rough, pixel_size_A=pixel_size_A)
    mask_px = (radius_A + margin_A) / pixel_size_A
    clean = normalise_intensity(remove_background(images, particle_radius_px=mask_px))
    axis_deg = estimate_tilt_axis(clean) if tilt_axis_deg is None else float(tilt_axis_deg)
    shifts_px = _prealign(clean, tilt_axis_deg=axis_deg, mask_radius_px=mask_px)
    n, ny, nx = clean.shape
    centre_offset = np.rint(np.median(shifts_px, axis=0)).astype(int)
    if box_px is None:
        spread = float(np.abs(shifts_px - centre_offset).max())
        box_px = 2 * int(np.ceil(mask_px + spread + 1))
    crop_centre = (int(nx // 2 + centre_offset[0]), int(ny // 2 + centre_offset[1]))
    stack = _crop(clean, crop_centre, int(box_px))
    shifts_A = (shifts_px - centre_offset) * pixel_size_A
    return TiltSeriesStack(
        images=stack,
        tilt_angles_deg=tilts,
        tilt_axis_deg=axis_deg,
        rotations=tilt_series_rotations(tilts, tilt_axis_deg=axis_deg),
        shifts_A=shifts_A,
        crop_offset_px=(int(centre_offset[0]), int(centre_offset[1])),
        particle_radius_A=radius_A,
        pixel_size_A=float(pixel_size_A),
    )
