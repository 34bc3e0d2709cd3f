"""Per-particle stacks: sub-pixel centred boxes, frame quality and the initial orientations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from nanorecon.backend import get_array_module, supported_float_type

from ._prepare import frequency_magnitude

__all__ = ["extract_boxes", "fringe_quality", "initial_orientations", "select_frames"]


def extract_boxes(frame: Any, centres_A: Any, pixel_size_A: float, *, box_px: int) -> Any:
    """Cut boxes centred (sub-pixel) on given positions of one frame.

    An integer window of ``box_px + 2·pad`` around the nearest pixel is cut (edges replicated
    where it leaves the frame), moved by the remaining fraction of a pixel with a Fourier phase
    ramp, and cropped, so that each centre lands on pixel ``box_px // 2`` of its box (the
    geometry convention).

    Parameters
    ----------
    frame : ndarray of shape (Y, X)
        One frame (numpy or cupy).
    centres_A : array_like of shape (n, 2)
        (x, y) [Å] measured from the centre of pixel (0, 0).
    pixel_size_A : float
        [Å].
    box_px : int
        Box edge [px].

    Returns
    -------
    ndarray of shape (n, box_px, box_px)
        Same array module as `frame` (float32 or float64).

    Examples
    --------
    >>> frame = np.zeros((32, 32)); frame[10, 20] = 1
    >>> box = extract_boxes(frame, [[20 * 0.5, 10 * 0.5]], 0.5, box_px=8)
    >>> [int(v) for v in np.unravel_index(np.argmax(box[0]), box[0].shape)]
    [4, 4]
    """
    xp = get_array_module(frame)
    frame = xp.asarray(frame)
    frame = frame.astype(supported_float_type(frame.dtype), copy=False)
    centres = np.atleast_2d(np.asarray(centres_A, dtype=float)) / pixel_size_A
    if box_px < 2:
        raise ValueError(f"box_px must be at least 2, not {box_px}")
    pad = 4
    size = box_px + 2 * pad
    ny, nx = frame.shape
    ky = xp.fft.fftfreq(size)[:, None]
    kx = xp.fft.rfftfreq(size)[None, :]
    out = xp.empty((len(centres), box_px, box_px), dtype=frame.dtype)
    for i, (cx, cy) in enumerate(centres):
        ix, iy = int(np.rint(cx)), int(np.rint(cy))
        rows = xp.clip(xp.arange(iy - box_px // 2 - pad, iy - box_px // 2 - pad + size), 0, ny - 1)
        cols = xp.clip(xp.arange(ix - box_px // 2 - pad, ix - box_px // 2 - pad + size), 0, nx - 1)
        window = frame[rows[:, None], cols[None, :]]
        fx, fy = cx - ix, cy - iy  # content must move by (-fx, -fy)
        ramp = xp.exp(2j * np.pi * (kx * fx + ky * fy))
        moved = xp.fft.irfft2(xp.fft.rfft2(window) * ramp, s=(size, size))
        out[i] = moved[pad : pad + box_px, pad : pad + box_px]
    return out


def fringe_quality(
    boxes: Any,
    pixel_size_A: float,
    *,
    fringe_band_A: Sequence[float] = (1.8, 2.4),
    reference_band_A: Sequence[float] = (2.8, 4.0),
    radius_A: float | None = None,
) -> np.ndarray:
    """Frame quality: power in the metal lattice-fringe band over power in a nearby band.

    Pt {111} (2.27 Å) and {200} (1.96 Å) fringes fall in 1.8–2.4 Å; a particle seen along a
    zone axis with sharp fringes scores high, a blurred, off-axis or empty box scores ≈ 1
    (the amorphous background's power is similar in both bands after normalising by band area).

    Parameters
    ----------
    boxes : ndarray of shape (n, box, box)
        Particle boxes (numpy or cupy).
    pixel_size_A : float
        [Å].
    fringe_band_A, reference_band_A : (float, float)
        Spacing bands [Å] (smallest, largest).
    radius_A : float, optional
        Radius of a soft circular mask applied first [Å] (default: none).

    Returns
    -------
    ndarray of shape (n,)
        Power per Fourier pixel in the fringe band over that in the reference band.
    """
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    if boxes.ndim != 3:
        raise ValueError(f"boxes must have shape (n, box, box), not {boxes.shape}")
    shape = boxes.shape[-2:]
    boxes = boxes - boxes.mean(axis=(1, 2), keepdims=True)
    if radius_A is not None:
        yy, xx = xp.mgrid[: shape[0], : shape[1]]
        r = xp.hypot(yy - shape[0] // 2, xx - shape[1] // 2) * pixel_size_A
        boxes = boxes * xp.clip((radius_A + 2.0 - r) / 2.0, 0.0, 1.0)
    power = xp.abs(xp.fft.rfft2(boxes)) ** 2
    k = frequency_magnitude(shape, pixel_size_A, xp=xp)

    def band_mean(band: Sequence[float]) -> Any:
        lo, hi = 1.0 / float(band[1]), 1.0 / float(band[0])
        mask = (k >= lo) & (k <= hi)
        if not bool(mask.any()):
            raise ValueError(f"band {band} Å holds no Fourier pixel of a {shape} box")
        return (power * mask).sum(axis=(1, 2)) / mask.sum()

    ratio = band_mean(fringe_band_A) / xp.maximum(band_mean(reference_band_A), 1e-30)
    return np.asarray(ratio.get() if hasattr(ratio, "get") else ratio, dtype=float)


def select_frames(
    quality: np.ndarray, *, min_quality: float | None = None, n_mad: float = 3.0
) -> pd.DataFrame:
    """Weights and used flags from frame quality; poor frames are dropped with a reason.

    A frame is poor when its quality is below `min_quality` or more than `n_mad` robust
    standard deviations below the particle's median quality. Weights are the quality relative to
    the median, clipped to [0, 1] (so good frames count fully), and 0 for dropped frames.

    Parameters
    ----------
    quality : ndarray of shape (n,)
        :func:`fringe_quality` of the particle's frames.
    min_quality : float, optional
        Absolute lower limit.
    n_mad : float, optional
        Robust standard deviations below the median that make a frame poor.

    Returns
    -------
    DataFrame
        ``quality, weight, used, reason`` (reason ``"low quality"`` or ``""``).
    """
    q = np.asarray(quality, dtype=float)
    median = float(np.median(q)) if q.size else 0.0
    spread = 1.4826 * float(np.median(np.abs(q - median))) if q.size else 0.0
    poor = q < median - n_mad * spread
    if min_quality is not None:
        poor |= q < min_quality
    poor |= ~np.isfinite(q)
    weight = np.clip(q / median, 0.0, 1.0) if median > 0 else np.ones_like(q)
    weight[poor] = 0.0
    return pd.DataFrame(
        {"quality": q, "weight": weight, "used": ~poor, "reason": np.where(poor, "low quality", "")}
    )


def initial_orientations(selection: pd.DataFrame, *, half_set_block: int = 10) -> dict[str, Any]:
    """Arguments of :func:`nanorecon.io.orientations_table` before any orientation is known.

    Identity rotations and zero shifts; half sets alternate in blocks of `half_set_block`
    consecutive images (neighbouring frames see nearly the same orientation, so alternating
    single frames would make the half maps dependent).
    """
    n = len(selection)
    return {
        "rotations": Rotation.identity(n),
        "shifts_A": np.zeros((n, 2)),
        "half_sets": 1 + (np.arange(n) // max(1, half_set_block)) % 2,
        "scores": selection["quality"].to_numpy(dtype=float),
        "weights": selection["weight"].to_numpy(dtype=float),
        "used": selection["used"].to_numpy(dtype=bool),
    }
