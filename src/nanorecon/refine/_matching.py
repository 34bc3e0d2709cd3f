"""Projection matching: refinement of per-image shifts and orientations against the current map."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module, supported_float_type
from ._projector import FourierSliceProjector, as_rotation_matrices
from ._reconstruct import reconstruct

__all__ = ["RefinementResult", "cross_correlation_shifts", "refine_orientations"]


def cross_correlation_shifts(
    images: Any, references: Any, *, lowpass_px: float | None = None
) -> np.ndarray:
    """Shift of each image relative to its reference, from the cross-correlation peak.

    The integer peak is refined by evaluating the correlation on 3 × 3 grids of decreasing spacing
    (0.5, 0.1, 0.02 pixel) around the estimate, from the Fourier sum, each time moving to the
    vertex of the parabola through the grid's central row and column.

    Parameters
    ----------
    images, references : ndarray of shape (n, Y, X)
        numpy or cupy.
    lowpass_px : float, optional
        Smooth the cross-correlation with a Gaussian of this standard deviation [pixels], so that
        a periodic lattice cannot lock onto a wrong lattice vector while the shifts are still far
        off.

    Returns
    -------
    ndarray of shape (n, 2)
        ``(shift_x, shift_y)`` [pixels] such that ``image(p) ≈ reference(p - shift)``.

    Examples
    --------
    >>> y, x = np.mgrid[:32, :32]
    >>> reference = np.exp(-((x - 16) ** 2 + (y - 16) ** 2) / 8.0)[None]
    >>> image = np.exp(-((x - 18.5) ** 2 + (y - 15) ** 2) / 8.0)[None]
    >>> np.round(cross_correlation_shifts(image, reference), 1)
    array([[ 2.5, -1. ]])
    """
    xp = get_array_module(images)
    images, references = xp.asarray(images), xp.asarray(references)
    if images.shape != references.shape or images.ndim != 3:
        raise ValueError(f"images and references must be (n, Y, X) alike, got {images.shape}")
    n, ny, nx = images.shape
    spectrum = xp.fft.fft2(images) * xp.fft.fft2(references).conj()
    if lowpass_px is not None:
        f2 = xp.fft.fftfreq(ny)[:, None] ** 2 + xp.fft.fftfreq(nx)[None, :] ** 2
        spectrum *= xp.exp(-2 * np.pi**2 * float(lowpass_px) ** 2 * f2)
    correlation = xp.fft.ifft2(spectrum).real
    peak = xp.argmax(correlation.reshape(n, -1), axis=1)
    py, px = peak // nx, peak % nx
    # Peaks past the middle are negative shifts (circular correlation).
    sy = xp.where(py > ny // 2, py - ny, py).astype(xp.float64)
    sx = xp.where(px > nx // 2, px - nx, px).astype(xp.float64)
    # Sub-pixel: evaluate the correlation on ever finer 3 × 3 grids around the estimate by direct
    # Fourier sums, and move to the vertex of a parabola through each row and column.
    ky = xp.fft.fftfreq(ny)[None, None, :]
    kx = xp.fft.fftfreq(nx)[None, None, :]
    offsets = xp.asarray([-1.0, 0.0, 1.0])[None, :, None]
    for spacing in (0.5, 0.1, 0.02):
        ey = xp.exp(2j * np.pi * ky * (sy[:, None, None] + spacing * offsets))
        ex = xp.exp(2j * np.pi * kx * (sx[:, None, None] + spacing * offsets))
        grid = xp.einsum("njy,nyx,nix->nji", ey, spectrum, ex).real
        sy = sy + spacing * _vertex(grid[:, 0, 1], grid[:, 1, 1], grid[:, 2, 1], xp)
        sx = sx + spacing * _vertex(grid[:, 1, 0], grid[:, 1, 1], grid[:, 1, 2], xp)
    return asnumpy(xp.stack([sx, sy], axis=1)).astype(np.float64)


def _vertex(minus: Any, centre: Any, plus: Any, xp: Any) -> Any:
    """Offset of the vertex of the parabola through three equally spaced values, in [-1, 1]."""
    curvature = minus - 2 * centre + plus
    safe = xp.where(curvature < 0, curvature, -1.0)
    return xp.clip(xp.where(curvature < 0, 0.5 * (minus - plus) / safe, 0.0), -1, 1)


@dataclass(frozen=True)
class RefinementResult:
    """Outcome of :func:`refine_orientations`.

    Attributes
    ----------
    rotations : Rotation
        Refined orientations (map frame → microscope frame).
    shifts_A : ndarray of shape (n, 2)
        Refined ``(shift_x_A, shift_y_A)`` [Å].
    volume : ndarray of shape (N, N, N)
        Map reconstructed with the refined geometry.
    scores : ndarray of shape (n,)
        Normalised cross-correlation of each image with its final projection.
    history : DataFrame
        One row per round: ``round``, ``projection_error`` (R of the round's map),
        ``mean_score`` (normalised cross-correlation after the round's matching),
        ``mean_shift_change_A``, ``mean_angle_change_deg``, ``angle_step_deg``.
    """

    rotations: Rotation
    shifts_A: np.ndarray
    volume: Any
    scores: np.ndarray
    history: pd.DataFrame


def refine_orientations(
    images: Any,
    rotations: Rotation | ArrayLike,
    shifts_A: ArrayLike | None = None,
    *,
    voxel_size_A: float,
    n_rounds: int = 6,
    angle_step_deg: float = 1.0,
    min_angle_step_deg: float = 0.1,
    refine_angles: bool = True,
    lowpass_A: float = 2.0,
    n_iterations: int = 20,
    callback: Callable[[int, pd.Series], None] | None = None,
    iteration_callback: Callable[[int, int, float], None] | None = None,
    **options: Any,
) -> RefinementResult:
    """Alternate reconstruction with per-image refinement of shifts and orientations.

    Each round reconstructs the map from the current geometry (:func:`reconstruct`, continuing
    from the previous round's map) and measures each image's shift against the projection of the
    map at its orientation (cross-correlation peak with a sub-pixel parabola). From the second
    round on it also scores a 3 × 3 × 3 grid of small rotations about the microscope x, y and z
    axes around each orientation by normalised cross-correlation and moves to the maximum of a
    quadratic fitted to the grid (or to the best grid point); the grid step halves every round
    after the first angular one. Nothing assumes a tilt axis. The map frame is only defined up to
    a global rotation and translation, which the refinement leaves free.

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Projections (y, x), numpy or cupy.
    rotations : Rotation or array_like of shape (n, 3, 3)
        Starting orientations (map frame → microscope frame).
    shifts_A : array_like of shape (n, 2), optional
        Starting ``(shift_x_A, shift_y_A)`` [Å]; zeros when None.
    voxel_size_A : float
        Voxel and pixel edge [Å].
    n_rounds : int, optional
        Reconstruction + matching rounds (the first refines shifts only).
    angle_step_deg : float, optional
        Initial step of the orientation grid [deg]; about the expected angular error.
    min_angle_step_deg : float, optional
        The step is not halved below this [deg].
    refine_angles : bool, optional
        Refine orientations as well as shifts.
    lowpass_A : float, optional
        Width [Å] of the Gaussian smoothing of the cross-correlation in the first round, about the
        atomic spacing, halved every round (off below half a pixel): the particle's outline, not its
        lattice, sets the first shifts.
    n_iterations : int, optional
        Reconstruction iterations per round.
    callback : callable, optional
        Called as ``callback(round, history_row)`` after each round.
    iteration_callback : callable, optional
        Called as ``iteration_callback(round, iteration, error)`` after every reconstruction
        iteration (round ``n_rounds`` is the final reconstruction).
    **options
        Passed on to :func:`reconstruct` (``support``, ``positivity``, ...).

    Returns
    -------
    RefinementResult
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, N, N), got {tuple(images.shape)}")
    images = images.astype(supported_float_type(images.dtype), copy=False)
    n, size = images.shape[0], images.shape[1]
    matrices = as_rotation_matrices(rotations)
    if len(matrices) != n:
        raise ValueError(f"{n} images but {len(matrices)} rotations")
    shifts = np.zeros((n, 2)) if shifts_A is None else np.array(shifts_A, dtype=np.float64)
    if shifts.shape != (n, 2):
        raise ValueError(f"shifts_A must have shape ({n}, 2), got {shifts.shape}")
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be at least 1, got {n_rounds}")
    device = "cpu" if xp is np else "gpu"
    step = float(angle_step_deg)
    rows = []
    volume = options.pop("initial", None)

    def per_iteration(round_index: int) -> Callable[[int, float], None] | None:
        if iteration_callback is None:
            return None
        return lambda iteration, error: iteration_callback(round_index, iteration, error)

    for round_index in range(n_rounds):
        # Warm start: each round continues from the previous map.
        result = reconstruct(
            images,
            matrices,
            shifts_A=shifts,
            voxel_size_A=voxel_size_A,
            n_iterations=n_iterations,
            initial=volume,
            callback=per_iteration(round_index),
            **options,
        )
        volume = result.volume
        start_matrices, start_shifts = matrices.copy(), shifts.copy()

        references = FourierSliceProjector(matrices, size, dtype=images.dtype, device=device)
        lowpass_px = lowpass_A / 2**round_index / voxel_size_A
        shifts = cross_correlation_shifts(
            images, references.forward(volume), lowpass_px=lowpass_px if lowpass_px > 0.5 else None
        )
        shifts = shifts * voxel_size_A

        # Shifts first: the first round's map is too blurred by the shift errors to rank angles.
        if refine_angles and round_index > 0:
            if round_index > 1:
                step = max(step / 2, float(min_angle_step_deg))
            perturbations = _perturbations(step)
            n_candidates = len(perturbations)
            candidates = np.einsum("pij,njk->npik", perturbations, matrices)
            projector = FourierSliceProjector(
                candidates.reshape(-1, 3, 3), size, dtype=images.dtype, device=device
            )
            projections = projector.forward(volume)
            # Each candidate is scored at its own best shift, so that no rotation is chosen for
            # making up a shift error.
            repeated = xp.repeat(images, n_candidates, axis=0)
            candidate_shifts = cross_correlation_shifts(repeated, projections)
            projections = _fourier_shift(projections, candidate_shifts)
            scores = _normalised_correlation(
                images[:, None], projections.reshape(n, n_candidates, size, size)
            )
            offsets, round_scores = _quadratic_peak(scores)
            moves = Rotation.from_rotvec(np.radians(offsets * step))
            matrices = moves.as_matrix() @ matrices
            nearest = np.ravel_multi_index(tuple((np.rint(offsets) + 1).astype(int).T), (3, 3, 3))
            shifts = candidate_shifts.reshape(n, n_candidates, 2)[np.arange(n), nearest]
            shifts = shifts * voxel_size_A
        else:
            round_scores = _score(images, volume, matrices, shifts, voxel_size_A, device)

        angle_change = np.degrees(
            (
                Rotation.from_matrix(matrices) * Rotation.from_matrix(start_matrices).inv()
            ).magnitude()
        )
        row = pd.Series(
            {
                "round": round_index,
                "projection_error": float(result.errors[result.best_iteration]),
                "mean_score": float(round_scores.mean()),
                "mean_shift_change_A": float(np.linalg.norm(shifts - start_shifts, axis=1).mean()),
                "mean_angle_change_deg": float(angle_change.mean()),
                "angle_step_deg": step,
            }
        )
        rows.append(row)
        if callback is not None:
            callback(round_index, row)

    final = reconstruct(
        images,
        matrices,
        shifts_A=shifts,
        voxel_size_A=voxel_size_A,
        n_iterations=n_iterations,
        initial=volume,
        callback=per_iteration(n_rounds),
        **options,
    )
    scores = _score(images, final.volume, matrices, shifts, voxel_size_A, device)
    history = pd.DataFrame(rows)
    return RefinementResult(
        rotations=Rotation.from_matrix(matrices),
        shifts_A=shifts,
        volume=final.volume,
        scores=scores,
        history=history,
    )


def _score(
    images: Any,
    volume: Any,
    matrices: np.ndarray,
    shifts_A: np.ndarray,
    voxel_size_A: float,
    device: str,
) -> np.ndarray:
    """Normalised cross-correlation of each image with the map's projection in its geometry."""
    projector = FourierSliceProjector(
        matrices,
        images.shape[1],
        shifts_A=shifts_A,
        voxel_size_A=voxel_size_A,
        dtype=images.dtype,
        device=device,
    )
    return _normalised_correlation(images, projector.forward(volume))


def _quadratic_peak(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peak of a quadratic fitted to each row of 3 × 3 × 3 grid scores.

    Returns the offsets (n, 3) in grid steps and the score at them; rows whose fit has no
    maximum inside the grid fall back to the best grid point.
    """
    u = np.stack(np.meshgrid(*[np.array([-1.0, 0.0, 1.0])] * 3, indexing="ij"), -1).reshape(-1, 3)
    i, j = np.triu_indices(3)
    design = np.concatenate([np.ones((len(u), 1)), u, u[:, i] * u[:, j]], axis=1)
    coefficients = np.linalg.lstsq(design, scores.T, rcond=None)[0].T
    gradient = coefficients[:, 1:4]
    hessian = np.zeros((len(scores), 3, 3))
    hessian[:, i, j] = coefficients[:, 4:]
    hessian = hessian + hessian.transpose(0, 2, 1)  # the diagonal terms double: ∂²(a u²) = 2a
    negative = np.linalg.eigvalsh(hessian).max(axis=1) < 0
    offsets = np.zeros_like(gradient)
    offsets[negative] = -np.linalg.solve(hessian[negative], gradient[negative][..., None])[..., 0]
    peak = coefficients[:, 0] + 0.5 * np.einsum("ni,ni->n", offsets, gradient)
    inside = negative & (np.abs(offsets).max(axis=1) <= 1)
    best = scores.argmax(axis=1)
    offsets[~inside] = u[best[~inside]]
    peak[~inside] = scores[~inside, best[~inside]]
    return offsets, peak


def _fourier_shift(images: Any, shifts_px: np.ndarray) -> Any:
    """Move images (n, Y, X) by ``(shift_x, shift_y)`` [pixels] with a Fourier phase ramp."""
    xp = get_array_module(images)
    ny, nx = images.shape[-2:]
    ky = xp.fft.fftfreq(ny)[:, None]
    kx = xp.fft.rfftfreq(nx)[None, :]
    sx = xp.asarray(shifts_px[:, 0])[:, None, None]
    sy = xp.asarray(shifts_px[:, 1])[:, None, None]
    ramp = xp.exp(-2j * np.pi * (kx * sx + ky * sy))
    shifted = xp.fft.irfft2(xp.fft.rfft2(images) * ramp, s=(ny, nx), axes=(-2, -1))
    return shifted.astype(images.dtype, copy=False)


def _perturbations(step_deg: float) -> np.ndarray:
    """3 × 3 × 3 grid of small rotations about the microscope axes, the identity in the middle."""
    offsets = np.array([-step_deg, 0.0, step_deg])
    grid = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
    return Rotation.from_rotvec(np.radians(grid)).as_matrix()


def _normalised_correlation(a: Any, b: Any) -> np.ndarray:
    """Normalised cross-correlation over the last two axes (broadcasting the others)."""
    xp = get_array_module(b)
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    numerator = (a * b).sum(axis=(-2, -1))
    denominator = xp.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))
    return asnumpy(numerator / xp.maximum(denominator, xp.finfo(denominator.dtype).tiny))
