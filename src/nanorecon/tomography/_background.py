"""Background removal and intensity normalisation of HAADF-STEM images."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module, supported_float_type
from ._alignment import centre_of_mass_shifts

__all__ = ["normalise_intensity", "remove_background"]


#: smallest fraction of an image outside the particle disc that is fitted as background
MIN_BACKGROUND_FRACTION = 0.1


def remove_background(
    images: Any, *, particle_radius_px: float | None = None, percentile: float = 20.0
) -> Any:
    """Subtract a plane fitted to the background of each image.

    The background pixels are those outside a disc of `particle_radius_px` around the image's
    intensity-weighted centre (after a rough darkest-pixel plane fit) — unless that leaves under
    10 % of the image — or, without a radius, those at or below the `percentile` of each image
    (a HAADF particle is brighter than its support everywhere). A least-squares plane
    ``a + b·x + c·y`` through them is subtracted, which removes a uniform support and its
    first-order thickness gradient at high tilt.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        HAADF images, numpy or cupy.
    particle_radius_px : float, optional
        Radius [px] of the disc excluded from the fit.
    percentile : float, optional
        Pixels at or below this percentile of an image are background when no radius is given
        [%].

    Returns
    -------
    ndarray of shape (n, Y, X)
        Background-subtracted images (float32 or float64), same array module.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:16, :16]
    >>> images = (3.0 + 0.1 * x + 0.2 * y)[None]
    >>> bool(np.abs(remove_background(images)).max() < 1e-9)
    True
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, Y, X), got {tuple(images.shape)}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must lie in (0, 100), got {percentile}")
    images = images.astype(supported_float_type(images.dtype), copy=False)
    n, ny, nx = images.shape
    y, x = xp.meshgrid(
        xp.arange(ny, dtype=images.dtype) - ny // 2,
        xp.arange(nx, dtype=images.dtype) - nx // 2,
        indexing="ij",
    )
    if particle_radius_px is None:
        threshold = xp.percentile(images.reshape(n, -1), percentile, axis=1)
        background = images <= threshold[:, None, None]
    else:
        # Centre the disc on the particle after a rough (darkest-pixel) background removal.
        rough = remove_background(images, percentile=percentile)
        cx, cy = (xp.asarray(c) for c in centre_of_mass_shifts(rough).T)
        r2 = (x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2
        background = r2 > float(particle_radius_px) ** 2
        # Too little outside the disc (a radius as large as the image) cannot pin a plane:
        # those images fall back to their darkest pixels.
        threshold = xp.percentile(images.reshape(n, -1), percentile, axis=1)
        too_few = background.reshape(n, -1).mean(axis=1) < MIN_BACKGROUND_FRACTION
        background = xp.where(
            too_few[:, None, None], images <= threshold[:, None, None], background
        )
    # Weighted least squares with 0/1 weights: the 3 × 3 normal equations of every image at once.
    weights = background.astype(images.dtype)
    basis = xp.stack([xp.ones_like(x), x, y])
    gram = xp.einsum("nyx,ayx,byx->nab", weights, basis, basis)
    rhs = xp.einsum("nyx,ayx->na", weights * images, basis)
    coefficients = xp.linalg.solve(gram.astype(xp.float64), rhs.astype(xp.float64)[..., None])
    plane = xp.einsum("na,ayx->nyx", coefficients[..., 0].astype(images.dtype), basis)
    return images - plane


def normalise_intensity(images: Any) -> Any:
    """Scale each image to the mean integrated intensity of the series.

    The integrated HAADF intensity of an isolated particle hardly changes with tilt (incoherent
    scattering, every atom seen at every tilt), so differences between images are dose or
    detector drift and are divided out. Call it on background-subtracted images.

    Parameters
    ----------
    images : ndarray of shape (n, Y, X)
        Background-subtracted images, numpy or cupy.

    Returns
    -------
    ndarray of shape (n, Y, X)
        Images with equal sums, same array module.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.ones((2, 4, 4)); images[1] *= 3
    >>> normalise_intensity(images).sum(axis=(1, 2))
    array([32., 32.])
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, Y, X), got {tuple(images.shape)}")
    images = images.astype(supported_float_type(images.dtype), copy=False)
    totals = images.sum(axis=(1, 2))
    if bool(xp.any(totals <= 0)):
        raise ValueError(
            "an image has no positive integrated intensity after background removal; "
            "is the particle inside every image?"
        )
    return images * (totals.mean() / totals)[:, None, None]
