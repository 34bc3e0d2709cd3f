"""Projection matching: refinement of per-image shifts and orientations against the current map."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation
from skimage.feature import peak_local_max
from skimage.morphology import ball

from ..backend import asnumpy, get_array_module, supported_float_type
from ..simulate import atoms_to_volume
from ._projector import FourierSliceProjector, as_rotation_matrices
from ._reconstruct import reconstruct

__all__ = [
    "RefinementResult",
    "atomic_reference",
    "cross_correlation_shifts",
    "refine_orientations",
]


def cross_correlation_shifts(
    images: Any,
    references: Any,
    *,
    lowpass_px: float | None = None,
    max_shift_px: float | None = None,
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
    max_shift_px : float, optional
        Look for the peak only within this distance of zero shift [pixels]: where the images are
        known to be roughly centred, a crystal's lattice repeats its correlation peak one lattice
        vector away, and that copy may be the higher one. Unbounded when None.

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
    if max_shift_px is not None:
        if max_shift_px < 0:
            raise ValueError(f"max_shift_px must be non-negative, got {max_shift_px}")
        dy = xp.fft.fftfreq(ny, d=1.0 / ny)[:, None]
        dx = xp.fft.fftfreq(nx, d=1.0 / nx)[None, :]
        outside = dy**2 + dx**2 > float(max_shift_px) ** 2
        correlation = xp.where(outside[None], -xp.inf, correlation)
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


def atomic_reference(
    volume: Any,
    *,
    voxel_size_A: float,
    min_distance_A: float = 1.6,
    threshold_fraction: float = 0.15,
) -> Any:
    """The map redrawn as round Gaussian atoms at its peaks: a reference for matching.

    A map built with wrong geometry holds each image's error as streaks and smeared atoms that
    the image then matches; the atoms' centres, averaged over all images, are far less
    affected. Every local maximum above `threshold_fraction` × the map's maximum, at least
    `min_distance_A` from a brighter one, becomes an isotropic Gaussian weighted by the peak's
    height and centred, per axis, at the vertex of the parabola through the logarithms of the
    peak and its two neighbours (exact for a Gaussian). The width is the map's own along its
    sharpest axis (the missing wedge elongates the others), from the same parabolas' curvature
    (``σ² = −1 / (ln v₋ − 2 ln v₀ + ln v₊)`` [voxels²]), the median over the brighter half of
    the peaks; the model is scaled to the map by least squares.

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Map (z, y, x), numpy or cupy.
    voxel_size_A : float
        [Å].
    min_distance_A : float, optional
        Closest two atoms may be [Å] (below the nearest-neighbour distance).
    threshold_fraction : float, optional
        Lowest peak kept, as a fraction of the map's maximum.

    Returns
    -------
    ndarray of shape (N, N, N)
        Same array module and dtype as `volume`; `volume` itself when it has no peaks.
    """
    xp = get_array_module(volume)
    values = asnumpy(volume).astype(np.float64)
    radius = max(1, int(round(min_distance_A / voxel_size_A)))
    peaks = peak_local_max(
        values,
        min_distance=radius,
        footprint=ball(radius),
        p_norm=2,
        threshold_abs=threshold_fraction * float(values.max()),
        exclude_border=1,
    )
    if len(peaks) == 0:
        return volume
    # Per axis, the parabola through the logarithms of the peak and its two neighbours: exact
    # centre and width for a Gaussian.
    floor = 1e-6 * float(values.max())
    heights = values[tuple(peaks.T)]
    centres = peaks.astype(np.float64)
    sigmas = []
    bright = heights >= np.median(heights)
    for axis in range(3):
        step = np.zeros(3, dtype=int)
        step[axis] = 1
        minus, plus = (
            np.log(np.maximum(values[tuple((peaks + sign * step).T)], floor)) for sign in (-1, 1)
        )
        centre = np.log(np.maximum(heights, floor))
        curvature = np.minimum(minus - 2 * centre + plus, -1e-6)
        centres[:, axis] += np.clip(0.5 * (minus - plus) / curvature, -1, 1)
        sigmas.append(np.median(np.sqrt(-1 / curvature[bright])))
    positions_A = (centres[:, ::-1] - np.asarray(values.shape[::-1]) // 2) * voxel_size_A
    model = atoms_to_volume(
        positions_A, heights, values.shape, voxel_size_A, min(sigmas) * voxel_size_A
    )
    model = model * (float((model * values).sum()) / float((model * model).sum()))  # map's scale
    return xp.asarray(model).astype(volume.dtype, copy=False)


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
        One row per round: ``round``, ``lowpass_A`` (resolution of the round's matching, NaN for
        the cross-correlation round), ``projection_error`` (``Σ|P x − b| / Σ|b|`` of the round's
        map in the geometry it was built with), ``mean_score`` (normalised cross-correlation
        after the round's matching, unfiltered), ``rms_angle_change_deg``,
        ``mean_angle_change_deg``, ``rms_shift_change_A``, ``mean_shift_change_A`` (per-image
        changes after the gauge is fixed), ``gauge_angle_deg`` and ``gauge_shift_A`` (the common
        rotation and map translation removed).
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
    refine_angles: bool = True,
    lowpass_A: float = 2.0,
    final_lowpass_A: float | None = None,
    n_gauss_newton: int = 4,
    max_angle_step_deg: float = 1.0,
    max_shift_step_px: float = 1.0,
    max_shift_A: float | None = None,
    half_sets: bool = False,
    leave_one_out: bool = False,
    leave_one_out_cap: float = 1.0,
    rotation_axes: ArrayLike | None = None,
    reference: Callable[[Any], Any] | None = None,
    n_iterations: int = 20,
    callback: Callable[[int, pd.Series], None] | None = None,
    iteration_callback: Callable[[int, int, float], None] | None = None,
    **options: Any,
) -> RefinementResult:
    """Projection matching: alternate reconstruction with per-image refinement of the geometry.

    Each round reconstructs the map from the current geometry (:func:`reconstruct`, continuing
    from the previous round's map) and then refines every image's geometry against it. The first
    round only measures shifts, by the cross-correlation peak with the map's projection (Gaussian
    smoothed by `lowpass_A`, so the particle's outline and not its lattice sets them). Every
    later round optimises the three parameters of a small rotation about the microscope x, y and
    z axes together with the two shifts, per image, by Levenberg–Marquardt on the image residual
    ``‖g * (b − a P(R, s) x − c)‖²`` (``g``: a Gaussian low-pass, ``a``, ``c``: a free scale and
    offset per image, i.e. maximising the normalised cross-correlation of the filtered images).
    The Jacobian is analytic: a tilt about microscope x or y changes the image by the derivative
    of the projection of the map weighted by its depth along the beam, an in-plane rotation by
    the derivatives of the projections weighted by x and y, the shifts by the derivatives of the
    projection itself. The low-pass widens
    geometrically from `lowpass_A` to `final_lowpass_A` over the rounds. After each round the
    common part of the corrections is removed — the mean rotation in the map frame and the
    least-squares map translation — since projections cannot fix the map's frame: the map does
    not drift and only the per-image errors change. Nothing assumes a tilt axis unless
    `rotation_axes` restricts the corrections.

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
    refine_angles : bool, optional
        Refine orientations as well as shifts.
    lowpass_A : float, optional
        Resolution [Å] of the first rounds (the Gaussian low-pass passes half the amplitude
        there); about the atomic spacing.
    final_lowpass_A : float, optional
        Resolution [Å] of the last round; two voxels (at most `lowpass_A`) when None.
    n_gauss_newton : int, optional
        Levenberg–Marquardt steps per round.
    max_angle_step_deg : float, optional
        Largest rotation of one step [deg] (trust region).
    max_shift_step_px : float, optional
        Largest shift of one step [pixels] (trust region).
    max_shift_A : float, optional
        Bound on the shifts the first round measures [Å] (the cross-correlation peak is sought
        within this distance of the box centre). Boxes cut around tracked positions are centred
        to about an ångström, and a crystal's correlation repeats one lattice vector away; tilt
        series, aligned only roughly, leave it unbounded (None).
    half_sets : bool, optional
        Reconstruct two half maps from the even and odd images and match each image against the
        map of the other half, so that no image is scored against a map it shaped; the final map
        uses all images.
    leave_one_out : bool, optional
        Match every image against an estimate of the map without it: at each frequency the
        density-compensated map holds the image's own error with the weight ``D_k / D`` (its
        share of the Fourier sample density), so the residual is scaled up by ``D / (D − D_k)``
        before matching. This counters the map's tendency to confirm each image's geometry; it
        ignores what positivity and the support add.
    leave_one_out_cap : float, optional
        Upper bound of ``D_k / (D − D_k)`` (where the image alone samples the frequency).
    rotation_axes : array_like of shape (3, m) or (n, 3, m), optional
        Microscope-frame axes (x, y, z) about which each image's orientation may be corrected,
        as columns (orthonormalised here; one set for all images or one per image); all three
        when None. Levenberg–Marquardt then solves for the ``m`` angles about these axes only
        (a constrained Gauss–Newton step), and each round's corrections, after the common
        rotation is removed, are projected onto them. A single-axis tilt series passes its tilt
        axis: the goniometer only changes the tilt, so corrections about the other axes are
        freedoms the map's own errors can use, not information.
    reference : callable, optional
        Turns each round's map into the reference the images are matched against (e.g. a model
        rendered from the traced atoms, which cannot hold the streaks that wrong geometry
        leaves); the map itself when None. Not used by the first (cross-correlation) round; the
        reconstruction still continues from the map, and ``mean_score`` in the history is
        against the reference.
    n_iterations : int, optional
        Reconstruction iterations per round.
    callback : callable, optional
        Called as ``callback(round, history_row)`` after each round.
    iteration_callback : callable, optional
        Called as ``iteration_callback(round, iteration, error)`` after every reconstruction
        iteration (round ``n_rounds`` is the final reconstruction; with `half_sets` the second
        half continues the first half's iteration count).
    **options
        Passed on to :func:`reconstruct` (``support``, ``positivity``, ``n_threads``, ...).

    Returns
    -------
    RefinementResult

    References
    ----------
    .. [1] Scott, M. C. et al. Electron tomography at 2.4-ångström resolution. Nature 483,
       444–447 (2012). :doi:`10.1038/nature10934`
    .. [2] Pryor, A. et al. GENFIRE: a generalized Fourier iterative reconstruction algorithm for
       high-resolution 3D imaging. Sci. Rep. 7, 10409 (2017). :doi:`10.1038/s41598-017-09847-1`
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
    if voxel_size_A <= 0:
        raise ValueError(f"voxel_size_A must be positive, got {voxel_size_A}")
    if n_gauss_newton < 1:
        raise ValueError(f"n_gauss_newton must be at least 1, got {n_gauss_newton}")
    if half_sets and n < 4:
        raise ValueError(f"half_sets needs at least 4 images, got {n}")
    if leave_one_out_cap <= 0:
        raise ValueError(f"leave_one_out_cap must be positive, got {leave_one_out_cap}")
    axes = None if rotation_axes is None else _orthonormal_axes(rotation_axes, n)
    # Two voxels: the band reaches Nyquist with half its amplitude.
    default_final = min(2 * voxel_size_A, lowpass_A)
    final_lowpass = default_final if final_lowpass_A is None else float(final_lowpass_A)
    if not 0 < final_lowpass <= lowpass_A:
        raise ValueError(
            f"need 0 < final_lowpass_A <= lowpass_A, got {final_lowpass} and {lowpass_A}"
        )
    device = "cpu" if xp is np else "gpu"
    n_threads = options.get("n_threads")
    volume = options.pop("initial", None)
    groups = [np.arange(n)] if not half_sets else [np.arange(0, n, 2), np.arange(1, n, 2)]
    maps: list[Any] = [volume] * len(groups)
    matcher = _Matcher(images, size=size, device=device, n_threads=n_threads)
    # The matching resolution widens geometrically over the rounds that refine angles.
    n_matching = max(n_rounds - 1, 1)
    ratio = (final_lowpass / lowpass_A) ** (1 / max(n_matching - 1, 1))
    rows = []

    def per_iteration(round_index: int, offset: int) -> Callable[[int, float], None] | None:
        if iteration_callback is None:
            return None
        return lambda iteration, error: iteration_callback(round_index, offset + iteration, error)

    for round_index in range(n_rounds):
        # Warm start: each round continues from the previous map(s).
        errors = []
        for g, members in enumerate(groups):
            result = reconstruct(
                images[xp.asarray(members)] if half_sets else images,
                matrices[members],
                shifts_A=shifts[members],
                voxel_size_A=voxel_size_A,
                n_iterations=n_iterations,
                initial=maps[g],
                callback=per_iteration(round_index, g * n_iterations),
                **options,
            )
            maps[g] = result.volume
            errors.append(float(result.errors.min()))
        start_matrices, start_shifts = matrices.copy(), shifts.copy()
        # Each image is matched against the map of the other half (or the one full map).
        references = [maps[-1 - g] for g in range(len(groups))]
        if reference is not None and round_index > 0:
            references = [reference(m) for m in references]
        if round_index == 0:
            lowpass = float("nan")
            for g, members in enumerate(groups):
                projections = matcher.project(references[g], matrices[members], None)
                lowpass_px = lowpass_A / voxel_size_A
                measured = cross_correlation_shifts(
                    images[xp.asarray(members)],
                    projections,
                    lowpass_px=lowpass_px if lowpass_px > 0.5 else None,
                    max_shift_px=None if max_shift_A is None else max_shift_A / voxel_size_A,
                )
                shifts[members] = measured * voxel_size_A
        else:
            lowpass = max(lowpass_A * ratio ** (round_index - 1), final_lowpass)
            self_weights = None
            if leave_one_out and not half_sets:
                self_weights = matcher.self_weights(matrices, cap=leave_one_out_cap)
            for g, members in enumerate(groups):
                new_matrices, new_shifts_px = matcher.levenberg_marquardt(
                    references[g],
                    matrices[members],
                    shifts[members] / voxel_size_A,
                    members,
                    lowpass_px=lowpass / voxel_size_A,
                    n_steps=n_gauss_newton,
                    refine_angles=refine_angles,
                    max_angle_step_rad=np.radians(max_angle_step_deg),
                    max_shift_step_px=max_shift_step_px,
                    self_weight=None if self_weights is None else self_weights[members],
                    axes=None if axes is None else axes[members],
                )
                matrices[members] = new_matrices
                shifts[members] = new_shifts_px * voxel_size_A
        matrices, shifts, gauge_angle, gauge_shift = _fix_gauge(
            start_matrices, start_shifts, matrices, shifts
        )
        if axes is not None:
            # The common rotation is a map-frame rotation; keep only its part about the axes.
            corrections = Rotation.from_matrix(matrices @ start_matrices.transpose(0, 2, 1))
            rotvec = np.einsum("nam,nbm,nb->na", axes, axes, corrections.as_rotvec())
            matrices = Rotation.from_rotvec(rotvec).as_matrix() @ start_matrices
        round_scores = np.empty(n)
        for g, members in enumerate(groups):
            projections = matcher.project(
                references[g], matrices[members], shifts[members] / voxel_size_A
            )
            round_scores[members] = _normalised_correlation(
                images[xp.asarray(members)], projections
            )
        angle_change = np.degrees(
            (
                Rotation.from_matrix(matrices) * Rotation.from_matrix(start_matrices).inv()
            ).magnitude()
        )
        shift_change = np.linalg.norm(shifts - start_shifts, axis=1)
        row = pd.Series(
            {
                "round": round_index,
                "lowpass_A": lowpass,
                "projection_error": float(np.mean(errors)),
                "mean_score": float(round_scores.mean()),
                "rms_angle_change_deg": float(np.sqrt(np.mean(angle_change**2))),
                "mean_angle_change_deg": float(angle_change.mean()),
                "rms_shift_change_A": float(np.sqrt(np.mean(shift_change**2))),
                "mean_shift_change_A": float(shift_change.mean()),
                "gauge_angle_deg": gauge_angle,
                "gauge_shift_A": gauge_shift,
            }
        )
        rows.append(row)
        if callback is not None:
            callback(round_index, row)

    initial = maps[0] if not half_sets else 0.5 * (maps[0] + maps[1])
    final = reconstruct(
        images,
        matrices,
        shifts_A=shifts,
        voxel_size_A=voxel_size_A,
        n_iterations=n_iterations,
        initial=initial,
        callback=per_iteration(n_rounds, 0),
        **options,
    )
    projections = matcher.project(final.volume, matrices, shifts / voxel_size_A)
    scores = _normalised_correlation(images, projections)
    return RefinementResult(
        rotations=Rotation.from_matrix(matrices),
        shifts_A=shifts,
        volume=final.volume,
        scores=scores,
        history=pd.DataFrame(rows),
    )


def _orthonormal_axes(rotation_axes: ArrayLike, n: int) -> np.ndarray:
    """Per-image orthonormal bases, shape (n, 3, m), of the allowed rotation axes."""
    axes = np.asarray(rotation_axes, dtype=np.float64)
    if axes.ndim == 2:
        axes = np.broadcast_to(axes, (n, *axes.shape))
    if axes.ndim != 3 or axes.shape[0] != n or axes.shape[1] != 3 or not 1 <= axes.shape[2] <= 3:
        raise ValueError(f"rotation_axes must have shape (3, m) or ({n}, 3, m), got {axes.shape}")
    basis, triangle = np.linalg.qr(axes)
    diagonal = np.abs(np.einsum("nmm->nm", triangle))
    if np.any(diagonal < 1e-6 * np.linalg.norm(axes, axis=1)):
        raise ValueError("rotation_axes must be linearly independent for every image")
    return basis


def _fix_gauge(
    start_matrices: np.ndarray,
    start_shifts_A: np.ndarray,
    matrices: np.ndarray,
    shifts_A: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Remove the common rotation and map translation from one round's corrections.

    Turning the map by ``G`` and moving it by ``t`` is explained by the geometry
    ``(R_k G, s_k + (R_k t)_xy)`` for every image, so the mean of the map-frame corrections
    ``R_kᵀ R'_k`` and the least-squares ``t`` of the shift changes carry no information about the
    images; removing them keeps the map in place.

    Returns
    -------
    matrices, shifts_A, angle_deg, shift_A
        The corrected geometry and the size of the removed rotation [deg] and translation [Å].
    """
    corrections = Rotation.from_matrix(start_matrices.transpose(0, 2, 1) @ matrices)
    common = corrections.mean()
    matrices = matrices @ common.inv().as_matrix()
    n = len(matrices)
    design = matrices[:, :2, :].reshape(2 * n, 3)
    translation = np.linalg.lstsq(design, (shifts_A - start_shifts_A).reshape(-1), rcond=None)[0]
    shifts_A = shifts_A - (design @ translation).reshape(n, 2)
    return (
        matrices,
        shifts_A,
        float(np.degrees(common.magnitude())),
        float(np.linalg.norm(translation)),
    )


class _Matcher:
    """Projections and per-image Levenberg–Marquardt refinement against a map.

    Holds the images' spectra and the frequency and coordinate grids; all geometry is in pixels.
    """

    def __init__(self, images: Any, *, size: int, device: str, n_threads: int | None) -> None:
        xp = get_array_module(images)
        self.xp, self.size, self.device, self.n_threads = xp, size, device, n_threads
        self.images = images
        self.dtype = images.dtype
        self.spectra = xp.fft.rfft2(images.astype(xp.float64))
        fy = xp.fft.fftfreq(size)[:, None]
        fx = xp.fft.rfftfreq(size)[None, :]
        self.f2 = fx**2 + fy**2
        self.ix = 2j * np.pi * fx  # ∂/∂x in Fourier space [1/pixel]
        self.iy = 2j * np.pi * fy
        self.grid = xp.arange(size, dtype=xp.float64) - size // 2

    def _projector(self, matrices: np.ndarray, shifts_px: np.ndarray | None) -> Any:
        # eps 1e-4 as in reconstruct: far below the noise, and finufft's small fine grid.
        return FourierSliceProjector(
            matrices,
            self.size,
            shifts_A=shifts_px,
            voxel_size_A=1.0,
            dtype=self.dtype,
            device=self.device,
            eps=1e-4,
            n_threads=self.n_threads,
        )

    def project(self, volume: Any, matrices: np.ndarray, shifts_px: np.ndarray | None) -> Any:
        """Projections of `volume` in the given geometry."""
        return self._projector(matrices, shifts_px).forward(volume)

    def _moments(self, volume: Any, matrices: np.ndarray, shifts_px: np.ndarray) -> Any:
        """First moments ``∫ r_i ρ dz`` of the projection along microscope x, y, z per image.

        Shape (n, 3, N, N); ``r`` about the map centre, in pixels. Projecting the weighted maps
        (rather than multiplying the image by its coordinates) keeps them band-limited like
        the projections themselves.
        """
        xp, grid = self.xp, self.grid
        projector = self._projector(matrices, shifts_px)
        moments = xp.zeros((len(matrices), 3, self.size, self.size), dtype=xp.float64)
        rows = xp.asarray(matrices)  # R[i, a]: microscope axis i in map (x, y, z)
        coordinates = (grid[None, None, :], grid[None, :, None], grid[:, None, None])
        for axis, coordinate in enumerate(coordinates):
            projection = projector.forward((volume * coordinate).astype(volume.dtype, copy=False))
            moments += rows[:, :, axis, None, None] * projection[:, None]
        return moments

    def self_weights(self, matrices: np.ndarray, *, cap: float) -> Any:
        """``min(D_k / (D − D_k), cap)`` on the rfft grid of every image.

        ``D`` is the density of all images' Fourier samples at each sample of image ``k``
        (:meth:`FourierSliceProjector.sample_density`) and ``D_k`` that of the image's own slice,
        so ``D_k / D`` is the image's share of the density-compensated map there.
        """
        xp, size = self.xp, self.size
        density = self._projector(matrices, None).sample_density().astype(xp.float64)
        own = self._projector(matrices[:1], None).sample_density().astype(xp.float64)
        k = np.arange(size) - size // 2
        ky, kx = np.meshgrid(k, k, indexing="ij")
        inside = (kx**2 + ky**2) < (size / 2) ** 2
        ky, kx = ky[inside], kx[inside]
        right = xp.asarray(np.flatnonzero(kx >= 0))  # the rfft half; the rest are partners
        own = own[:, right]
        others = xp.maximum(density[:, right] - own, own / cap)
        weights = xp.zeros((len(matrices), size, size // 2 + 1), dtype=xp.float64)
        weights[:, xp.asarray(ky[np.flatnonzero(kx >= 0)] % size), xp.asarray(kx[kx >= 0])] = (
            own / others
        )
        return weights

    def _filtered(self, spectra: Any, lowpass: Any) -> Any:
        """Real images from spectra times the low-pass, with their mean removed."""
        xp = self.xp
        images = xp.fft.irfft2(spectra * lowpass, s=(self.size, self.size))
        return images - images.mean(axis=(-2, -1), keepdims=True)

    def _cost(self, data: Any, model: Any) -> Any:
        """Residual ``‖b − a I‖²`` at the best scale ``a`` (both mean-free)."""
        xp = self.xp
        cross = (data * model).sum(axis=(-2, -1))
        power = xp.maximum((model * model).sum(axis=(-2, -1)), xp.finfo(xp.float64).tiny)
        return (data * data).sum(axis=(-2, -1)) - cross**2 / power, cross / power

    def levenberg_marquardt(
        self,
        volume: Any,
        matrices: np.ndarray,
        shifts_px: np.ndarray,
        members: np.ndarray,
        *,
        lowpass_px: float,
        n_steps: int,
        refine_angles: bool,
        max_angle_step_rad: float,
        max_shift_step_px: float,
        self_weight: Any = None,
        axes: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refine the rotations and shifts of images `members` against `volume`.

        Parameters: rotation vector ``ω`` about the microscope axes (``R ← exp([ω]×) R``) and shift
        ``s`` [pixels]; per image, each step solves ``(JᵀJ + λ diag JᵀJ) δ = Jᵀ r`` and keeps the
        step only if the filtered residual falls (λ grows otherwise). With `self_weight` (the
        factor ``D_k / (D − D_k)`` per frequency of :meth:`self_weights`), the images are
        first replaced by ``b + (b − a P x) D_k / (D − D_k)``: the data as seen by a map built
        without them. With `axes` (n, 3, m) orthonormal, ``ω = A c`` and the step solves for ``c``.
        """
        xp = self.xp
        matrices, shifts_px = matrices.copy(), shifts_px.copy()
        index = xp.asarray(members)
        lowpass = 2.0 ** (-self.f2 * lowpass_px**2)  # half amplitude at 1 / lowpass_px
        data = self._filtered(self.spectra[index], lowpass)
        damping = np.full(len(members), 1e-3)
        intensity = self.project(volume, matrices, shifts_px)
        cost, scale = self._cost(data, self._filtered(xp.fft.rfft2(intensity), lowpass))
        if self_weight is not None:
            # The map absorbed the share D_k / D of each image's own error at each frequency; a
            # map without the image would leave the residual larger by D / (D − D_k).
            spectra = self.spectra[index]
            model = scale[:, None, None] * xp.fft.rfft2(intensity.astype(xp.float64))
            data = self._filtered(spectra + self_weight * (spectra - model), lowpass)
            cost, scale = self._cost(data, self._filtered(xp.fft.rfft2(intensity), lowpass))
        for _ in range(n_steps):
            moments = self._moments(volume, matrices, shifts_px) if refine_angles else None
            jacobian, model = self._jacobian(intensity, moments, lowpass)
            if refine_angles and axes is not None:
                basis = xp.asarray(axes)
                jacobian = xp.concatenate(
                    [xp.einsum("naij,nam->nmij", jacobian[:, :3], basis), jacobian[:, 3:]], axis=1
                )
            residual = data - scale[:, None, None] * model
            # The scale is a free parameter (its column is the model itself).
            jacobian = xp.concatenate(
                [scale[:, None, None, None] * jacobian, model[:, None]], axis=1
            )
            normal = asnumpy(xp.einsum("naij,nbij->nab", jacobian, jacobian))
            gradient = asnumpy(xp.einsum("naij,nij->na", jacobian, residual))
            diagonal = np.einsum("naa->na", normal)
            # The floor keeps a blank image (all-zero columns) solvable: it just does not move.
            floor = 1e-12 * diagonal.max(axis=1, keepdims=True) + np.finfo(float).tiny
            system = (
                normal
                + np.eye(len(diagonal[0])) * (damping[:, None] * diagonal + floor)[:, :, None]
            )
            step = np.linalg.solve(system, gradient[..., None])[..., 0]
            step = step[:, :-1]  # the scale is not kept
            rotation_step = np.zeros((len(members), 3))
            if refine_angles:
                rotation_step = step[:, :-2]
                if axes is not None:
                    rotation_step = np.einsum("nam,nm->na", axes, rotation_step)
                angle = np.linalg.norm(rotation_step, axis=1, keepdims=True)
                rotation_step = rotation_step * np.minimum(
                    1, max_angle_step_rad / np.maximum(angle, 1e-300)
                )
            shift_step = step[:, -2:]
            length = np.linalg.norm(shift_step, axis=1, keepdims=True)
            shift_step = shift_step * np.minimum(1, max_shift_step_px / np.maximum(length, 1e-300))
            trial_matrices = Rotation.from_rotvec(rotation_step).as_matrix() @ matrices
            trial_shifts = shifts_px + shift_step
            trial_intensity = self.project(volume, trial_matrices, trial_shifts)
            trial_cost, trial_scale = self._cost(
                data, self._filtered(xp.fft.rfft2(trial_intensity), lowpass)
            )
            better = asnumpy(trial_cost < cost)
            damping = np.where(better, damping / 3, damping * 4)
            keep = xp.asarray(better)
            matrices[better], shifts_px[better] = trial_matrices[better], trial_shifts[better]
            intensity = xp.where(keep[:, None, None], trial_intensity, intensity)
            cost = xp.where(keep, trial_cost, cost)
            scale = xp.where(keep, trial_scale, scale)
        return matrices, shifts_px

    def _jacobian(self, intensity: Any, moments: Any, lowpass: Any) -> tuple[Any, Any]:
        """Derivatives of the filtered, mean-free projection by (ωx, ωy, ωz, sx, sy).

        With the moments ``M_i = ∫ r_i ρ dz`` along microscope axes (:meth:`_moments`):
        ``∂I/∂ωx = ∂M_z/∂y``, ``∂I/∂ωy = −∂M_z/∂x``, ``∂I/∂ωz = ∂M_y/∂x − ∂M_x/∂y`` and
        ``∂I/∂s = −∇I``. Without moments only the shift derivatives are returned.
        """
        xp = self.xp
        spectrum = xp.fft.rfft2(intensity.astype(xp.float64))
        derivatives = []
        if moments is not None:
            mx, my, mz = (xp.fft.rfft2(moments[:, i]) for i in range(3))
            derivatives += [self.iy * mz, -self.ix * mz, self.ix * my - self.iy * mx]
        derivatives += [-self.ix * spectrum, -self.iy * spectrum]
        jacobian = xp.stack([self._filtered(d, lowpass) for d in derivatives], axis=1)
        return jacobian, self._filtered(spectrum, lowpass)


def _normalised_correlation(a: Any, b: Any) -> np.ndarray:
    """Normalised cross-correlation over the last two axes (broadcasting the others)."""
    xp = get_array_module(b)
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    numerator = (a * b).sum(axis=(-2, -1))
    denominator = xp.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))
    return asnumpy(numerator / xp.maximum(denominator, xp.finfo(denominator.dtype).tiny))
