"""Global drift of a movie: phase correlation of filtered frames against a running reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._prepare import _frames, frequency_magnitude

__all__ = ["DriftState", "estimate_drift"]


@dataclass
class DriftState:
    """Running state of :func:`estimate_drift` over the blocks of one movie.

    Attributes
    ----------
    reference : ndarray of shape (Y, X // 2 + 1) or None
        Sum of the drift-corrected, filtered group spectra so far (complex).
    group_centres : list of float
        Mean frame index of each measured group.
    group_shifts_px : list of ndarray
        (x, y) drift of each group relative to the first group [px].
    pending : ndarray or None
        Summed spectra of the frames of the group not yet complete.
    n_pending : int
        Frames in `pending`.
    n_frames : int
        Frames seen.
    pixel_size_A : float
        [Å].
    """

    reference: Any = None
    group_centres: list = field(default_factory=list)
    group_shifts_px: list = field(default_factory=list)
    pending: Any = None
    n_pending: int = 0
    n_frames: int = 0
    pixel_size_A: float = 1.0

    def drift_A(self) -> np.ndarray:
        """Drift (x, y) of every frame seen, relative to frame 0 [Å], shape (n_frames, 2).

        Group drifts are placed at their mean frame index and interpolated linearly (extrapolated
        with the end slopes); a trailing incomplete group counts as measured only if it is the
        only one.
        """
        if not self.group_centres:
            return np.zeros((self.n_frames, 2))
        t = np.asarray(self.group_centres)
        s = np.asarray(self.group_shifts_px)
        frames = np.arange(self.n_frames, dtype=float)
        if t.size == 1:
            out = np.repeat(s, self.n_frames, axis=0)
        else:
            out = np.stack([_interp_extrap(frames, t, s[:, j]) for j in range(2)], axis=1)
        return (out - out[0]) * self.pixel_size_A


def _interp_extrap(x: np.ndarray, xp_: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation, extended linearly beyond both ends."""
    out = np.interp(x, xp_, fp)
    lo, hi = x < xp_[0], x > xp_[-1]
    out[lo] = fp[0] + (x[lo] - xp_[0]) * (fp[1] - fp[0]) / (xp_[1] - xp_[0])
    out[hi] = fp[-1] + (x[hi] - xp_[-1]) * (fp[-1] - fp[-2]) / (xp_[-1] - xp_[-2])
    return out


def _shift_ramp(shape: tuple[int, int], shift_px: Any, xp: Any) -> Any:
    """Fourier factor that moves image content by `shift_px` (x, y) [px] on the rfft grid.

    `shift_px` of shape (2,) gives one factor; of shape (n, 2), one per image, stacked.
    """
    shift = xp.asarray(shift_px, dtype=xp.float64)
    ky = xp.fft.fftfreq(shape[0])[:, None]
    kx = xp.fft.rfftfreq(shape[1])[None, :]
    return xp.exp(-2j * np.pi * (kx * shift[..., 0, None, None] + ky * shift[..., 1, None, None]))


def _peak_near(corr: Any, centre: np.ndarray, search_px: float, xp: Any) -> np.ndarray:
    """(x, y) [px] of the correlation maximum on the pixel grid within `search_px` of `centre`."""
    ny, nx = corr.shape
    dy = (xp.arange(ny) + ny // 2) % ny - ny // 2  # signed shifts of the unshifted FFT grid
    dx = (xp.arange(nx) + nx // 2) % nx - nx // 2
    inside = (dx[None, :] - float(centre[0])) ** 2 + (dy[:, None] - float(centre[1])) ** 2
    masked = xp.where(inside <= search_px**2, corr, -xp.inf)
    iy, ix = np.unravel_index(int(xp.argmax(masked)), corr.shape)
    return np.array([float(dx[ix]), float(dy[iy])])


def _refine_peak(cross: Any, kx: Any, ky: Any, start_px: np.ndarray, xp: Any) -> np.ndarray:
    """Newton ascent of ``c(s) = Re Σ X(k) e^{2πi k·s}`` (the band-limited correlation) from
    `start_px`: the exact sub-pixel maximum, without upsampling the correlation map."""
    s = np.array(start_px, dtype=float)
    kx2, ky2 = 2 * np.pi * kx, 2 * np.pi * ky
    for _ in range(8):
        z = cross * xp.exp(1j * (kx2 * s[0] + ky2 * s[1]))
        re, im = z.real, z.imag
        grad = -np.array([float((kx2 * im).sum()), float((ky2 * im).sum())])
        hxx = -float((kx2 * kx2 * re).sum())
        hxy = -float((kx2 * ky2 * re).sum())
        hyy = -float((ky2 * ky2 * re).sum())
        hess = np.array([[hxx, hxy], [hxy, hyy]])
        if np.any(np.linalg.eigvalsh(hess) >= 0):
            break  # not at a maximum's basin: keep the grid estimate
        step = -np.linalg.solve(hess, grad)
        step = np.clip(step, -0.5, 0.5)
        s += step
        if np.abs(step).max() < 1e-4:
            break
    return s


def estimate_drift(
    frames: Any,
    pixel_size_A: float,
    *,
    state: DriftState | None = None,
    group_frames: int = 8,
    lowpass_A: float = 1.0,
    highpass_A: float = 20.0,
    max_step_px: float = 3.0,
    weights: Any = None,
) -> DriftState:
    """Global (stage) drift of a movie by correlation against a running reference.

    Frames are summed in groups of `group_frames` (one low-dose frame holds too little of the
    support's signal; stage drift within a group is small) and each group is band-pass filtered
    (Gaussian low-pass at `lowpass_A`, which keeps the graphene lattice that moves rigidly with
    the stage; high-pass at `highpass_A`, which removes the liquid's slowly varying thickness)
    and cross-correlated with the running reference: the sum of all earlier groups, each moved
    back by its own drift. The peak is searched within `max_step_px` of the previous group's
    drift (the lattice gives periodic peaks) and refined to the exact sub-pixel maximum of the
    band-limited correlation by Newton steps. Drift is absolute (group against reference), not a
    sum of steps, so errors do not accumulate. Blocks of a long movie are passed in order with
    the returned `state`; :meth:`DriftState.drift_A` gives the per-frame drift.

    Parameters
    ----------
    frames : ndarray of shape (n, Y, X)
        Dose-normalised frames (numpy or cupy).
    pixel_size_A : float
        [Å].
    state : DriftState, optional
        State returned for the previous block; None starts a movie.
    group_frames : int, optional
        Frames summed per drift measurement.
    lowpass_A, highpass_A : float, optional
        Gaussian low- and high-pass lengths of the correlation filter [Å].
    max_step_px : float, optional
        Largest drift change between consecutive groups [px].
    weights : ndarray of shape (Y, X // 2 + 1), optional
        Fourier weights replacing the band-pass, e.g. ``1 - notch`` of
        :func:`lattice_notch_filter`: only the support's reflections, which move exactly with
        the stage while the particles diffuse and the liquid stays put.

    Returns
    -------
    DriftState
        Pass to the next call for the next block; ``state.drift_A()`` is the drift (x, y) of
        the frame content relative to frame 0 [Å] for every frame so far.

    References
    ----------
    C. D. Kuglin, D. C. Hines, Proc. IEEE Int. Conf. Cybernetics and Society, 163-165 (1975).
    """
    xp, frames = _frames(frames)
    if group_frames < 1:
        raise ValueError(f"group_frames must be at least 1, not {group_frames}")
    shape = frames.shape[-2:]
    if weights is None:
        k = frequency_magnitude(shape, pixel_size_A, xp=xp)
        band = xp.exp(-2.0 * (np.pi * lowpass_A * k) ** 2 / 4.0) * (
            1.0 - xp.exp(-2.0 * (np.pi * highpass_A * k) ** 2)
        )
    else:
        band = xp.asarray(weights, dtype=xp.float64)
        if band.shape != (shape[0], shape[1] // 2 + 1):
            raise ValueError(f"weights must have the rfft2 shape of the frames, not {band.shape}")
    # rfft half grid: columns 0 < kx < X/2 stand for two Fourier coefficients each
    twice = xp.full(band.shape, 2.0)
    twice[:, 0] = 1.0
    if shape[1] % 2 == 0:
        twice[:, -1] = 1.0
    kx = xp.broadcast_to(xp.fft.rfftfreq(shape[1])[None, :], band.shape)
    ky = xp.broadcast_to(xp.fft.fftfreq(shape[0])[:, None], band.shape)
    state = DriftState(pixel_size_A=float(pixel_size_A)) if state is None else state
    for frame in frames:
        spectrum = xp.fft.rfft2(frame) * band
        state.pending = spectrum if state.pending is None else state.pending + spectrum
        state.n_pending += 1
        state.n_frames += 1
        if state.n_pending < group_frames:
            continue
        centre = state.n_frames - 1 - (state.n_pending - 1) / 2
        group, state.pending, state.n_pending = state.pending, None, 0
        if state.reference is None:
            state.reference = group
            state.group_centres.append(centre)
            state.group_shifts_px.append(np.zeros(2))
            continue
        cross = group * xp.conj(state.reference)
        corr = xp.fft.irfft2(cross, s=shape)
        coarse = _peak_near(corr, state.group_shifts_px[-1], max_step_px, xp)
        shift = _refine_peak(cross * twice, kx, ky, coarse, xp)
        state.reference = state.reference + group * _shift_ramp(shape, -shift, xp)
        state.group_centres.append(centre)
        state.group_shifts_px.append(shift)
    return state
