"""Local refinement of a tumbling particle: discrete orientation and shift search under the prior."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module, supported_float_type
from ._abinitio import _log_likelihood, _outside_median, _Stage
from ._drift import _shift_ramp
from ._prior import smooth_orientations

__all__ = [
    "HIGH_RESOLUTION_BALL_DEG",
    "HIGH_RESOLUTION_FRACTION",
    "HIGH_RESOLUTION_ITERATIONS",
    "HIGH_RESOLUTION_MIN_BAND_PX",
    "HIGH_RESOLUTION_SHRINK",
    "LOCAL_BALL_DEG",
    "LOCAL_BANDS_A",
    "LOCAL_SHRINK",
    "POLISH_BALL_DEG",
    "POLISH_BANDS_A",
    "POLISH_SHRINK",
    "RESEARCH_BALL_DEG",
    "RESEARCH_BANDS_A",
    "RESEARCH_SHRINK",
    "LocalRefinement",
    "refine_locally",
]

#: Band limit of each iteration of :func:`refine_locally` [Å]: below lattice resolution first,
#: then at the fcc metals' {111} and {200} fringes (2.2–2.4 Å and 1.9–2.0 Å).
LOCAL_BANDS_A = (3.0, 2.7, 2.5, 2.3, 2.2, 2.1, 2.0, 2.0, 2.0, 2.0)
#: Radius and spacing of the first candidate ball [deg], and its shrink per iteration.
LOCAL_BALL_DEG = (12.0, 4.0)
LOCAL_SHRINK = 0.75
#: Wide re-search of refined frames against their common map: bands from below to just past the
#: {111} fringes, a 30° ball 6° apart (stretches of frames a local search left on a wrong
#: optimum lie 10–25° off), halved from the second iteration.
RESEARCH_BANDS_A = (2.5, 2.3, 2.2)
RESEARCH_BALL_DEG = (30.0, 6.0)
RESEARCH_SHRINK = 0.5
#: The last iterations, each half set on its own, from the re-searched orientations.
POLISH_BANDS_A = (2.1, 2.0, 2.0, 2.0)
POLISH_BALL_DEG = (6.0, 2.0)
POLISH_SHRINK = 0.6
#: Rounds past the {200} fringes, all frames together: each round's band this fraction of the
#: last (1.7, 1.45, 1.23 Å after 2.0 Å), its ball half the last round's.
HIGH_RESOLUTION_FRACTION = 0.85
HIGH_RESOLUTION_ITERATIONS = 4
HIGH_RESOLUTION_BALL_DEG = (3.0, 1.0)
HIGH_RESOLUTION_SHRINK = 0.8
#: Finest band of those rounds [pixels] (refine_locally needs at least two).
HIGH_RESOLUTION_MIN_BAND_PX = 2.1
#: Iterations of the late re-search: the wide ball of the re-search (30°, 6° apart, halved from
#: the second iteration) against the best map past 2 Å, at the first round's band (1.7 Å).
LATE_RESEARCH_ITERATIONS = 3

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRefinement:
    """Outcome of :func:`refine_locally`.

    Attributes
    ----------
    rotations : Rotation
        Refined orientation of every image (map frame → microscope frame).
    shifts_A : ndarray of shape (n, 2)
        ``(shift_x_A, shift_y_A)``: where the particle centre lies in each box relative to the
        box centre [Å] (the convention of :class:`nanorecon.refine.FourierSliceProjector`).
    scores : ndarray of shape (n,)
        Normalised correlation of each image with the last map's projection at its chosen
        orientation and shift, in the last band.
    history : DataFrame
        One row per iteration: ``iteration``, ``lowpass_A``, ``search_radius_deg``,
        ``mean_score``, ``mean_angle_change_deg``, ``rms_shift_change_A``.
    """

    rotations: Rotation
    shifts_A: np.ndarray
    scores: np.ndarray
    history: pd.DataFrame


def refine_locally(
    images: Any,
    rotations: Rotation,
    *,
    pixel_size_A: float,
    rotational_diffusion_rad2_per_s: float | None,
    frame_rate_hz: float = 1.0,
    frame_gaps: ArrayLike | None = None,
    shifts_A: ArrayLike | None = None,
    bands_A: Sequence[float] = LOCAL_BANDS_A,
    search_radius_deg: float = LOCAL_BALL_DEG[0],
    search_step_deg: float = LOCAL_BALL_DEG[1],
    shrink: float = LOCAL_SHRINK,
    shift_range_A: float = 2.0,
    shift_step_A: float = 0.25,
    shift_sigma_A: float = 0.8,
    prior_weight: float = 1.0,
    mask_radius_A: float | None = None,
    support: Any = None,
    ctf: dict | None = None,
    positivity: bool = True,
    reconstruction_iterations: int = 10,
    batch_frames: int = 10,
    n_threads: int | None = 1,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> LocalRefinement:
    """Refine orientations and centring of consecutive frames by exhaustive local search.

    Every iteration reconstructs the map from the current geometry, then scores each frame
    against the map's projections at a ball of candidate orientations around its own (a cubic
    grid of rotation vectors, `search_step_deg` apart within `search_radius_deg`, applied in the
    microscope frame) and, for every candidate, at every shift within `shift_range_A` of its
    current centre (`shift_step_A` apart; correlations for all shifts from one product in Fourier
    space). A candidate's log-likelihood is that of its best shift (the Gaussian model of
    :func:`ab_initio_orientations`) plus a Gaussian prior of width `shift_sigma_A` on the distance
    of the centre from the box centre: the boxes were cut around the tracked positions, and a
    crystal's lattice repeats its fringes, so shifts by a lattice vector must cost something. The
    candidates of consecutive frames are linked by the rotational-diffusion prior and the most
    probable chain is taken (:func:`smooth_orientations`). The band limit follows `bands_A`; after
    the second iteration the candidate ball shrinks by `shrink` per iteration.

    Unlike least-squares projection matching, which follows the local gradient of each frame's
    residual, the search sees every candidate within the ball at once and lets the neighbouring
    frames vote through the prior, so it moves frames out of shallow wrong minima; the shift
    search lets it correct centring errors of the tracking, which at lattice resolution blur the
    map as much as orientation errors do.

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Particle boxes (y, x) of consecutive frames, numpy or cupy, density positive (atoms
        bright), in time order.
    rotations : Rotation
        Starting orientations, one per image.
    pixel_size_A : float
        Pixel edge [Å].
    rotational_diffusion_rad2_per_s : float or None
        ``D_r`` of the prior [rad²/s]; None: no prior (each frame takes its best candidate). The
        prior's RMS step is never below the current candidate spacing.
    frame_rate_hz : float, optional
        Frames per second (the unit of ``D_r``).
    frame_gaps : array_like of shape (n - 1,), optional
        Frames elapsed between consecutive images (the prior widens with the gap).
    shifts_A : array_like of shape (n, 2), optional
        Starting centres (zeros: the boxes are centred).
    bands_A : sequence of float, optional
        Band limit of each iteration [Å]; its length is the number of iterations.
    search_radius_deg, search_step_deg : float, optional
        Radius and spacing of the first candidate ball [deg].
    shrink : float, optional
        Factor applied to the ball after each iteration from the second on.
    shift_range_A, shift_step_A : float, optional
        Radius and spacing of the shift search around each frame's current centre [Å].
    shift_sigma_A : float, optional
        Width of the Gaussian prior on the distance of a centre from the box centre [Å].
    prior_weight : float, optional
        Weight of the rotational-diffusion prior against the data.
    mask_radius_A : float, optional
        Radius of the circular mask and spherical support [Å]; ``0.45 N`` pixels when None.
    support : ndarray of bool, shape (N, N, N), optional
        The map's support (centre at ``N // 2``, the images' pixel size) in place of the sphere
        of `mask_radius_A`, e.g. the particle's own mask (:func:`particle_mask`). Each frame is
        then compared within the support's footprint at its current orientation (over one voxel
        thick, tapered to zero at its edge over about two pixels) instead of the circle: a
        particle smaller than the circle, or not round, adds no empty pixels' noise to its
        comparisons, and whatever lies beside it in the box (a neighbour's edge, liquid) little.
    ctf : dict, optional
        Optics of phase-flipped images (``voltage_kV``, ``defocus_A``, ``cs_mm``): comparisons
        are weighted by ``|sin χ|``.
    positivity : bool, optional
        Clip negative densities in the reconstructions.
    reconstruction_iterations : int, optional
        Reconstruction iterations per map update.
    batch_frames : int, optional
        Frames whose candidates are projected together (memory ∝ frames × candidates).
    n_threads : int, optional
        CPU threads per NUFFT.
    callback : callable, optional
        Called as ``callback(iteration, row)`` with each history row.

    Returns
    -------
    LocalRefinement
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, N, N), got {tuple(images.shape)}")
    n, size = images.shape[0], images.shape[1]
    if len(rotations) != n:
        raise ValueError(f"need one rotation per image ({n}), got {len(rotations)}")
    if support is not None and tuple(support.shape) != (size,) * 3:
        raise ValueError(f"support must have shape {(size,) * 3}, got {tuple(support.shape)}")
    if len(bands_A) < 1 or min(bands_A) < 2 * pixel_size_A:
        raise ValueError(f"bands_A must be ≥ 2 pixels ({2 * pixel_size_A} Å), got {bands_A}")
    if search_step_deg <= 0 or search_radius_deg < search_step_deg:
        raise ValueError(
            "need 0 < search_step_deg ≤ search_radius_deg, got "
            f"{search_step_deg}, {search_radius_deg}"
        )
    if shift_step_A <= 0 or shift_range_A < 0 or shift_sigma_A <= 0:
        raise ValueError(
            "need shift_step_A > 0, shift_range_A ≥ 0 and shift_sigma_A > 0, got "
            f"{shift_step_A}, {shift_range_A}, {shift_sigma_A}"
        )
    shifts = np.zeros((n, 2)) if shifts_A is None else np.asarray(shifts_A, float).copy()
    if shifts.shape != (n, 2):
        raise ValueError(f"shifts_A must have shape ({n}, 2), got {shifts.shape}")
    gaps = np.ones(n - 1) if frame_gaps is None else np.asarray(frame_gaps, dtype=float)
    dtype = supported_float_type(images.dtype)
    images = images.astype(dtype, copy=False)
    radius_A = 0.45 * size * pixel_size_A if mask_radius_A is None else float(mask_radius_A)
    images = images - _outside_median(images, radius_A / pixel_size_A)

    ball = _ball(search_radius_deg, search_step_deg)
    radius, spacing = float(search_radius_deg), float(search_step_deg)
    offsets = _disk(shift_range_A, shift_step_A)
    rows = []
    scores = np.zeros(n)
    for iteration, band in enumerate(bands_A):
        centred = _shift_images(images, shifts, pixel_size_A)
        stage = _Stage(
            centred,
            pixel_size_A,
            float(band),
            radius_A,
            n_threads,
            ctf,
            support,
            footprint_rotations=None if support is None else rotations,
        )
        volume = stage.reconstruct(
            rotations, positivity=positivity, n_iterations=reconstruction_iterations
        )
        log_likelihood, candidates, best_offset, correlation = _score_candidates(
            stage, volume, rotations, ball, offsets, shifts, shift_sigma_A, batch_frames
        )
        if rotational_diffusion_rad2_per_s is None:
            chosen = np.argmax(log_likelihood, axis=1)
        else:
            step_rad = max(
                np.sqrt(6 * rotational_diffusion_rad2_per_s / frame_rate_hz), np.radians(spacing)
            )
            chosen, _ = smooth_orientations(
                log_likelihood,
                candidates,
                rotational_diffusion_rad2_per_s=step_rad**2 * frame_rate_hz / 6,
                frame_rate_hz=frame_rate_hz,
                prior_weight=prior_weight,
                frame_gaps=gaps,
            )
        pick = np.arange(n)
        new = Rotation.from_quat(candidates[pick, chosen])
        move = offsets[best_offset[pick, chosen]]
        change = np.degrees((new * rotations.inv()).magnitude())
        rotations, shifts = new, shifts + move
        scores = correlation[pick, chosen]
        rows.append(
            {
                "iteration": iteration,
                "lowpass_A": float(band),
                "search_radius_deg": radius,
                "mean_score": float(scores.mean()),
                "mean_angle_change_deg": float(change.mean()),
                "rms_shift_change_A": float(np.sqrt((move**2).sum(axis=1).mean())),
            }
        )
        logger.info(
            "local search %d at %.2f Å: score %.4f, moved %.2f deg, %.2f Å",
            iteration,
            band,
            rows[-1]["mean_score"],
            rows[-1]["mean_angle_change_deg"],
            rows[-1]["rms_shift_change_A"],
        )
        if callback is not None:
            callback(iteration, rows[-1])
        if iteration >= 1:
            ball = Rotation.from_rotvec(ball.as_rotvec() * shrink)
            radius, spacing = radius * shrink, spacing * shrink
    return LocalRefinement(
        rotations=rotations, shifts_A=shifts, scores=scores, history=pd.DataFrame(rows)
    )


def _ball(radius_deg: float, step_deg: float) -> Rotation:
    """Rotation vectors on a cubic grid within `radius_deg`, the identity first."""
    half = int(np.floor(radius_deg / step_deg + 1e-9))
    axis = np.arange(-half, half + 1) * step_deg
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.linalg.norm(grid, axis=1) <= radius_deg * (1 + 1e-9)]
    grid = grid[np.argsort(np.linalg.norm(grid, axis=1), kind="stable")]
    return Rotation.from_rotvec(np.radians(grid))


def _disk(radius_A: float, step_A: float) -> np.ndarray:
    """(x, y) offsets [Å] on a square grid within `radius_A`, zero first."""
    half = int(np.floor(radius_A / step_A + 1e-9))
    axis = np.arange(-half, half + 1) * step_A
    grid = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    grid = grid[np.hypot(*grid.T) <= radius_A * (1 + 1e-9)]
    return grid[np.argsort(np.hypot(*grid.T), kind="stable")]


def _shift_images(images: Any, shifts_A: np.ndarray, pixel_size_A: float) -> Any:
    """Move the particle found at ``+shift`` of each box to the box centre (Fourier phase ramp)."""
    xp = get_array_module(images)
    size = images.shape[1]
    ramp = _shift_ramp((size, size), -shifts_A / pixel_size_A, xp)
    moved = xp.fft.irfft2(xp.fft.rfft2(images) * ramp, s=(size, size))
    return moved.astype(images.dtype, copy=False)


def _shift_kernel(size: int, pixel_size_A: float, offsets_A: np.ndarray) -> np.ndarray:
    """(size · (size // 2 + 1), D) matrix turning products of rfft2s into correlations at offsets.

    Correlation at offset d: Σ_k D̂(k) P̂*(k) e^{2πi k·d} over the rfft half plane, the columns
    that stand for two Fourier samples counted twice; ``(D̂ P̂*).reshape(-1) @ kernel``.
    """
    ky = np.fft.fftfreq(size, d=pixel_size_A)[:, None] + np.zeros((1, size // 2 + 1))
    kx = np.fft.rfftfreq(size, d=pixel_size_A)[None, :] + np.zeros((size, 1))
    twice = np.ones_like(kx)
    twice[:, 1 : (size + 1) // 2] = 2.0
    phase = np.exp(
        2j * np.pi * (np.outer(kx.ravel(), offsets_A[:, 0]) + np.outer(ky.ravel(), offsets_A[:, 1]))
    )
    return (phase * twice.ravel()[:, None] / size**2).astype(np.complex64)


def _score_candidates(
    stage: _Stage,
    volume: Any,
    rotations: Rotation,
    ball: Rotation,
    offsets: np.ndarray,
    shifts: np.ndarray,
    shift_sigma_A: float,
    batch_frames: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood (n, K), quaternions (n, K, 4), best offset index and correlation (n, K)."""
    xp, m = stage.xp, stage.size
    n, k = stage.n_images, len(ball)
    kernel = xp.asarray(_shift_kernel(m, stage.pixel_size_A, offsets))
    data_hat = xp.fft.rfft2(stage.data.reshape(n, m, m)).reshape(n, -1)
    centre = shifts[:, None, :] + offsets[None, :, :]
    log_shift_prior = -(centre**2).sum(axis=2) / (2 * shift_sigma_A**2)  # (n, D)
    moves = ball.as_matrix()
    correlation = np.empty((n, k, len(offsets)))
    quats = np.empty((n, k, 4))
    for first in range(0, n, batch_frames):
        index = np.arange(first, min(first + batch_frames, n))
        candidates = Rotation.from_matrix(
            np.einsum("kij,njl->nkil", moves, rotations[index].as_matrix()).reshape(-1, 3, 3)
        )
        masks = None
        if stage.frame_masks is not None:
            masks = xp.repeat(stage.frame_masks[xp.asarray(index)], k, axis=0)
        references = stage.prepare(stage.project(volume, candidates), masks).reshape(-1, m, m)
        ref_hat = xp.fft.rfft2(references).reshape(len(index), k, -1)
        products = data_hat[xp.asarray(index), None, :] * xp.conj(ref_hat)
        correlation[index] = asnumpy(xp.real(products @ kernel))
        quats[index] = candidates.as_quat().reshape(len(index), k, 4)
    flat = _log_likelihood(correlation.reshape(n, -1), stage.n_eff).reshape(correlation.shape)
    flat = flat + log_shift_prior[:, None, :]
    best = np.argmax(flat, axis=2)
    pick = (np.arange(n)[:, None], np.arange(k)[None, :], best)
    return flat[pick], quats, best, correlation[pick]
