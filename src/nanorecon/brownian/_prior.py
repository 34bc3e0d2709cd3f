"""Rotational-diffusion prior linking the orientations of consecutive frames of a tumbling particle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

__all__ = [
    "DiffusionEstimate",
    "brownian_log_prior",
    "estimate_rotational_diffusion",
    "smooth_orientations",
]

# The squared angle of an isotropic small rotation is σ² χ²₃; median / mean of χ²₃.
_CHI2_3_MEDIAN_OVER_MEAN = float(chi2.median(3)) / 3.0


@dataclass(frozen=True)
class DiffusionEstimate:
    """Outcome of :func:`estimate_rotational_diffusion`.

    Attributes
    ----------
    rotational_diffusion_rad2_per_s : float
        ``D_r`` [rad²/s] (per frame when the frame rate is 1).
    step_rms_deg : float
        RMS rotation per frame of the diffusion alone, ``√(6 D_r Δt)`` [deg].
    error_rms_deg : float
        RMS orientation error per frame implied by the lag-0 intercept [deg].
    """

    rotational_diffusion_rad2_per_s: float
    step_rms_deg: float
    error_rms_deg: float


def brownian_log_prior(
    angle_rad: ArrayLike,
    *,
    rotational_diffusion_rad2_per_s: float,
    frame_rate_hz: float = 1.0,
    n_frames: ArrayLike = 1,
) -> np.ndarray:
    """Log of the rotational-diffusion transition density, up to a constant.

    For isotropic rotational diffusion the rotation vector of one step has independent Gaussian
    components of variance ``2 D_r Δt``, so ``log p(R_t | R_{t-1}) = −θ² / (4 D_r Δt)`` for the
    geodesic angle ``θ`` between the two orientations (small steps).

    Parameters
    ----------
    angle_rad : array_like
        Geodesic angles θ between orientations [rad].
    rotational_diffusion_rad2_per_s : float
        ``D_r`` [rad²/s].
    frame_rate_hz : float, optional
        Frames per second; Δt is ``n_frames / frame_rate_hz``.
    n_frames : array_like, optional
        Frames between the two orientations (broadcast against `angle_rad`).

    Returns
    -------
    ndarray
        ``−θ² / (4 D_r Δt)``.

    Examples
    --------
    >>> round(float(brownian_log_prior(0.1, rotational_diffusion_rad2_per_s=0.5, frame_rate_hz=10.0)), 6)
    -0.05
    """
    if rotational_diffusion_rad2_per_s <= 0:
        raise ValueError(
            f"rotational_diffusion_rad2_per_s must be positive, got {rotational_diffusion_rad2_per_s}"
        )
    if frame_rate_hz <= 0:
        raise ValueError(f"frame_rate_hz must be positive, got {frame_rate_hz}")
    dt = np.asarray(n_frames, dtype=np.float64) / float(frame_rate_hz)
    theta = np.asarray(angle_rad, dtype=np.float64)
    return -(theta**2) / (4.0 * rotational_diffusion_rad2_per_s * dt)


def estimate_rotational_diffusion(
    rotations: Rotation, *, frame_rate_hz: float = 1.0, max_lag: int = 3
) -> DiffusionEstimate:
    """Rotational diffusion constant from the angles between orientations of nearby frames.

    For Brownian rotation the mean squared angle between frames ``k`` apart grows as
    ``6 D_r k Δt``; independent orientation errors of RMS ``e`` per frame add ``2 e²`` at every lag.
    A straight line through the mean squared angles at lags ``1 … max_lag`` therefore gives ``D_r``
    from its slope, free of the error term, and ``e`` from its intercept. Each mean is taken as
    ``median(θ²) / 0.789`` (the median of a χ²₃ variable relative to its mean), so a few frames
    assigned to a wrong orientation do not inflate it.

    Parameters
    ----------
    rotations : Rotation
        Orientations of consecutive frames (at least ``max_lag + 2``).
    frame_rate_hz : float, optional
        Frames per second; with 1 the constant is per frame.
    max_lag : int, optional
        Largest lag of the fit; 1 uses the lag-1 steps alone (and reports no error term).

    Returns
    -------
    DiffusionEstimate

    Examples
    --------
    >>> from nanorecon.simulate import brownian_rotations
    >>> r = brownian_rotations(2000, rotational_diffusion_rad2_per_s=0.4, frame_rate_hz=400.0,
    ...                        rng=np.random.default_rng(0))
    >>> round(estimate_rotational_diffusion(r, frame_rate_hz=400.0).rotational_diffusion_rad2_per_s, 1)
    0.4
    """
    n = len(rotations)
    if max_lag < 1:
        raise ValueError(f"max_lag must be at least 1, got {max_lag}")
    if n < max_lag + 2:
        raise ValueError(f"need at least {max_lag + 2} orientations, got {n}")
    if frame_rate_hz <= 0:
        raise ValueError(f"frame_rate_hz must be positive, got {frame_rate_hz}")
    lags = np.arange(1, max_lag + 1)
    mean_sq = np.empty(max_lag)
    for i, lag in enumerate(lags):
        angles = (rotations[lag:] * rotations[:-lag].inv()).magnitude()
        mean_sq[i] = np.median(angles**2) / _CHI2_3_MEDIAN_OVER_MEAN
    if max_lag > 1:
        slope, intercept = np.polyfit(lags, mean_sq, 1)
        if intercept < 0 or slope <= 0:
            # Noise in the means can tilt the line; then no error term is resolved.
            slope, intercept = float(lags @ mean_sq / (lags @ lags)), 0.0
    else:
        slope, intercept = float(mean_sq[0]), 0.0
    slope = max(float(slope), np.finfo(float).tiny)
    dt = 1.0 / float(frame_rate_hz)
    return DiffusionEstimate(
        rotational_diffusion_rad2_per_s=slope / (6.0 * dt),
        step_rms_deg=float(np.degrees(np.sqrt(slope))),
        error_rms_deg=float(np.degrees(np.sqrt(intercept / 2.0))),
    )


def smooth_orientations(
    log_likelihood: ArrayLike,
    candidates: ArrayLike,
    *,
    rotational_diffusion_rad2_per_s: float,
    frame_rate_hz: float = 1.0,
    prior_weight: float = 1.0,
    frame_gaps: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Most probable chain of orientations under a rotational-diffusion prior (Viterbi).

    Maximises ``Σ_t ℓ_t(k_t) + λ Σ_t log p(R_{k_t} | R_{k_{t-1}})`` over one candidate ``k_t`` per
    frame, where ``ℓ`` is the data log-likelihood and ``log p`` is :func:`brownian_log_prior`.

    Parameters
    ----------
    log_likelihood : array_like of shape (n, K)
        Data log-likelihood of each candidate of each frame; ``-inf`` marks an unused slot.
    candidates : array_like of shape (n, K, 4)
        Candidate orientations as scalar-last quaternions.
    rotational_diffusion_rad2_per_s : float
        ``D_r`` [rad²/s].
    frame_rate_hz : float, optional
        Frames per second.
    prior_weight : float, optional
        ``λ``; 0 picks each frame's best candidate independently.
    frame_gaps : array_like of shape (n - 1,), optional
        Frames elapsed between consecutive entries (ones by default; larger after dropped frames).

    Returns
    -------
    indices : ndarray of shape (n,)
        Chosen candidate per frame.
    log_posterior : float ndarray of shape ()
        Value of the maximised sum.

    References
    ----------
    .. [1] Viterbi, A. Error bounds for convolutional codes and an asymptotically optimum decoding
       algorithm. IEEE Trans. Inf. Theory 13, 260–269 (1967). :doi:`10.1109/TIT.1967.1054010`
    """
    ll = np.asarray(log_likelihood, dtype=np.float64)
    quats = np.asarray(candidates, dtype=np.float64)
    if ll.ndim != 2 or quats.shape != ll.shape + (4,):
        raise ValueError(
            f"log_likelihood (n, K) and candidates (n, K, 4) disagree: {ll.shape}, {quats.shape}"
        )
    n = ll.shape[0]
    gaps = np.ones(max(n - 1, 0)) if frame_gaps is None else np.asarray(frame_gaps, dtype=float)
    if gaps.shape != (max(n - 1, 0),):
        raise ValueError(f"frame_gaps must have shape ({n - 1},), got {gaps.shape}")
    quats = quats / np.linalg.norm(quats, axis=-1, keepdims=True)
    score = ll[0].copy()
    back = np.zeros(ll.shape, dtype=np.int64)
    for t in range(1, n):
        # Geodesic angle between every pair of candidates of frames t-1 and t.
        dots = np.abs(np.einsum("ia,ja->ij", quats[t - 1], quats[t]))
        angles = 2.0 * np.arccos(np.clip(dots, 0.0, 1.0))
        transition = prior_weight * brownian_log_prior(
            angles,
            rotational_diffusion_rad2_per_s=rotational_diffusion_rad2_per_s,
            frame_rate_hz=frame_rate_hz,
            n_frames=gaps[t - 1],
        )
        total = score[:, None] + transition
        back[t] = np.argmax(total, axis=0)
        score = total[back[t], np.arange(ll.shape[1])] + ll[t]
    indices = np.empty(n, dtype=np.int64)
    indices[-1] = int(np.argmax(score))
    best = score[indices[-1]]
    for t in range(n - 1, 0, -1):
        indices[t - 1] = back[t, indices[t]]
    return indices, np.asarray(best)
