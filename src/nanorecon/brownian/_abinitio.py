"""Ab initio orientations of a tumbling particle: stochastic search on SO(3) with map updates."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module, get_ndimage_module, supported_float_type
from ..refine import FourierSliceProjector, reconstruct
from ._ctf import phase_flipped_transfer
from ._mask import resample_mask
from ._prior import brownian_log_prior, estimate_rotational_diffusion, smooth_orientations

__all__ = [
    "AbInitioResult",
    "OrientationAlignment",
    "ab_initio_orientations",
    "align_orientations",
    "so3_grid",
]

logger = logging.getLogger(__name__)

# Map-frame mirror z → -z: the other hand of a map (projections cannot tell them apart).
_MIRROR = np.diag([1.0, 1.0, -1.0])
# Half turn about the beam: a centrosymmetric map projects the same at R and at C₂z R.
_HALF_TURN_Z = Rotation.from_rotvec([0.0, 0.0, np.pi])


def so3_grid(n_rotations: int) -> Rotation:
    """Quasi-uniform rotations: a super-Fibonacci spiral on the unit quaternions.

    Parameters
    ----------
    n_rotations : int
        Number of rotations; the mean distance to the nearest grid rotation is about
        ``0.8 (6π / n)^(1/3)`` rad (7° for 5000), the largest about 1.3 times that.

    Returns
    -------
    Rotation
        `n_rotations` rotations, deterministic.

    References
    ----------
    .. [1] Alexa, M. Super-Fibonacci spirals: fast, low-discrepancy sampling of SO(3). Proc. IEEE
       CVPR, 8291–8300 (2022).

    Examples
    --------
    >>> grid = so3_grid(1000)
    >>> angles = np.degrees((grid[1:] * grid[0].inv()).magnitude())
    >>> len(grid), round(float(angles.min()), 1) > 5
    (1000, True)
    """
    if n_rotations < 1:
        raise ValueError(f"n_rotations must be at least 1, got {n_rotations}")
    phi = np.sqrt(2.0)
    psi = 1.533751168755204288118041  # root of x⁴ = x + 4
    s = np.arange(n_rotations) + 0.5
    r, big_r = np.sqrt(s / n_rotations), np.sqrt(1.0 - s / n_rotations)
    alpha, beta = 2 * np.pi * s / phi, 2 * np.pi * s / psi
    quats = np.stack(
        [r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], axis=1
    )
    return Rotation.from_quat(quats)


@dataclass(frozen=True)
class OrientationAlignment:
    """Global rotation (and hand) putting one set of orientations on another.

    ``reference_t ≈ mirror(rotations_t) · rotation⁻¹`` where ``mirror(R) = S R S`` with
    ``S = diag(1, 1, -1)`` when `mirrored` (the map of the other hand) and ``R`` otherwise; the
    estimated map frame maps to the reference map frame by `rotation`.

    Attributes
    ----------
    rotation : Rotation
        Estimated map frame → reference map frame.
    mirrored : bool
        The estimate has the other hand.
    errors_deg : ndarray of shape (n,)
        Per-frame angle between the aligned estimate and the reference [deg].
    """

    rotation: Rotation
    mirrored: bool
    errors_deg: np.ndarray

    def apply(self, rotations: Rotation) -> Rotation:
        """Orientations of the estimate expressed for the reference map frame."""
        if self.mirrored:
            rotations = Rotation.from_matrix(_MIRROR @ rotations.as_matrix() @ _MIRROR)
        return rotations * self.rotation.inv()

    def apply_to_map(self, volume: Any, *, order: int = 1) -> Any:
        """Move a map (z, y, x) of the estimate into the reference frame (centre at ``N // 2``)."""
        xp, ndi = get_array_module(volume), get_ndimage_module(volume)
        size = volume.shape[0]
        centre = size // 2
        if self.mirrored:
            volume = xp.take(volume, xp.asarray((2 * centre - np.arange(size)) % size), axis=0)
        # out(r) = vol(G⁻¹ r); ndimage reads input at matrix @ out + offset in (z, y, x).
        flip = np.eye(3)[::-1]
        matrix = flip @ self.rotation.inv().as_matrix() @ flip
        offset = np.full(3, float(centre)) - matrix @ np.full(3, float(centre))
        return ndi.affine_transform(
            volume, xp.asarray(matrix), offset=xp.asarray(offset), order=order, mode="constant"
        )


def align_orientations(
    rotations: Rotation,
    reference: Rotation,
    *,
    allow_mirror: bool = True,
    symmetry: Rotation | None = None,
    centrosymmetric: bool = False,
) -> OrientationAlignment:
    """Align a set of orientations to a reference set by one global rotation (and hand).

    The per-frame differences ``reference_t⁻¹ · R_t`` all equal the global rotation for a perfect
    estimate (times an element ``g_t`` of the particle's point group when it has one: ``R_t`` and
    ``R_t g`` give the same image). Candidates for the global rotation are the mean difference and
    the differences of a few frames spread through the set; the one with the smallest median
    error is then refined by averaging (``Rotation.mean``) the frames within three times the
    median deviation (at least 5°), twice, so that a share of wrong frames does not pull it.
    With `allow_mirror` the other hand ``S R S`` is aligned as well and the hand with the smaller
    median error is returned. With `centrosymmetric` each frame's error is the smaller of those of
    ``R_t`` and ``C₂z R_t`` (the half turn about the beam): a map with a centre of inversion
    projects identically at both, frame by frame, so images cannot tell them apart.

    Parameters
    ----------
    rotations, reference : Rotation
        n orientations each (map frame → microscope frame).
    allow_mirror : bool, optional
        Also try the other hand.
    symmetry : Rotation, optional
        Point group of the reference map (rotations in its map frame, identity included); errors
        are then measured to the nearest symmetry-equivalent orientation.
    centrosymmetric : bool, optional
        The map has a centre of inversion: errors modulo the image-plane half turn as well.

    Returns
    -------
    OrientationAlignment
    """
    if len(rotations) != len(reference):
        raise ValueError(f"{len(rotations)} rotations but {len(reference)} reference rotations")
    group = Rotation.identity(1) if symmetry is None else Rotation.concatenate([symmetry])
    best = None
    for mirrored in (False, True) if allow_mirror else (False,):
        moving = rotations
        if mirrored:
            moving = Rotation.from_matrix(_MIRROR @ rotations.as_matrix() @ _MIRROR)
        differences = [reference.inv() * moving]
        if centrosymmetric:
            differences.append(reference.inv() * (_HALF_TURN_Z * moving))
        probes = np.unique(np.linspace(0, len(moving) - 1, 24).astype(int))
        candidates = [differences[0].mean()] + [differences[0][i] for i in probes]
        errors, reduced = None, None
        for global_rotation in candidates:
            trial, trial_reduced = _branch_errors(differences, global_rotation, group)
            if errors is None or np.median(trial) < np.median(errors):
                errors, reduced = trial, trial_reduced
        for _ in range(2):
            keep = errors <= max(3 * np.median(errors), np.radians(5.0))
            global_rotation = reduced[keep].mean()
            errors, reduced = _branch_errors(differences, global_rotation, group)
        candidate = OrientationAlignment(global_rotation, mirrored, np.degrees(errors))
        if best is None or np.median(candidate.errors_deg) < np.median(best.errors_deg):
            best = candidate
    return best


def _branch_errors(
    differences: list[Rotation], global_rotation: Rotation, group: Rotation
) -> tuple[np.ndarray, Rotation]:
    """:func:`_symmetric_errors` of the frame differences of each branch, the better per frame."""
    errors, reduced = _symmetric_errors(differences[0], global_rotation, group)
    for other in differences[1:]:
        trial, trial_reduced = _symmetric_errors(other, global_rotation, group)
        better = trial < errors
        if better.any():
            errors = np.where(better, trial, errors)
            quats = np.where(better[:, None], trial_reduced.as_quat(), reduced.as_quat())
            reduced = Rotation.from_quat(quats)
    return errors, reduced


def _symmetric_errors(
    differences: Rotation, global_rotation: Rotation, group: Rotation
) -> tuple[np.ndarray, Rotation]:
    """Angle [rad] of ``g⁻¹ d_t G⁻¹`` for the best group element, and ``g⁻¹ d_t`` per frame."""
    residual = (differences * global_rotation.inv()).as_quat()  # (n, 4)
    inverse = group.inv().as_quat()  # (m, 4)
    # |scalar part| of the quaternion product g⁻¹ · residual gives the angle.
    w = np.abs(_quat_product_w(inverse, residual))  # (m, n)
    index = np.argmax(w, axis=0)
    errors = 2 * np.arccos(np.clip(w[index, np.arange(len(residual))], 0.0, 1.0))
    reduced = group.inv()[index] * differences
    return errors, reduced


def _quat_product_w(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Scalar part of every product ``a_i · b_j`` of scalar-last quaternions, shape (m, n)."""
    return np.outer(a[:, 3], b[:, 3]) - a[:, :3] @ b[:, :3].T


@dataclass(frozen=True)
class AbInitioResult:
    """Outcome of :func:`ab_initio_orientations`.

    Attributes
    ----------
    rotations : Rotation
        Orientation of every frame (map frame → microscope frame), in the frame of `volume`.
    scores : ndarray of shape (n,)
        Normalised correlation of each image with the map's projection, in the final band.
    volume : ndarray of shape (N, N, N)
        Ab initio map (z, y, x) at the images' pixel size, same array module as the images.
    rotational_diffusion_rad2_per_s : float
        ``D_r`` estimated from the final orientations [rad²/s] (per frame when the frame rate
        is 1).
    starts : DataFrame
        One row per start: ``start``, ``seed``, ``mean_score`` (at the search band),
        ``agreement_deg`` (median angle to the chosen start after global alignment, hand
        allowed), ``mirrored``, ``agrees`` (the start found the chosen solution again:
        ``agreement_deg`` below twice the grid spacing and below half the chosen start's spread,
        the median angle of its frames from their mean orientation; a solution collapsed onto
        few orientations, which random maps of noise also reach, agrees with nothing), ``chosen``.
    start_rotations : list of Rotation
        Orientations found by each start's global search.
    start_volumes : list of ndarray
        Each start's map at the search box (``search_size`` voxels of ``search_pixel_size_A``).
    search_pixel_size_A : float
        Voxel edge of the start maps [Å].
    history : DataFrame
        One row per iteration: ``start``, ``stage`` ("global" or "local"), ``iteration``,
        ``lowpass_A``, ``mean_score``, ``mean_angle_change_deg``, ``step_rms_deg``
        (diffusion step of the solution; NaN without the prior), ``angle_step_deg`` (local).
    shifts_A : ndarray of shape (n, 2) or None
        ``(shift_x_A, shift_y_A)`` of every frame's centre [Å] where the method finds them
        (:func:`crystal_orientations`); None: the boxes are taken as centred.
    alternatives : list of AbInitioResult
        Other starts finished as the chosen one was, best scoring first, where the method was
        asked for them (:func:`crystal_orientations`, ``n_alternatives``); their ``starts``
        table is this one's.
    """

    rotations: Rotation
    scores: np.ndarray
    volume: Any
    rotational_diffusion_rad2_per_s: float
    starts: pd.DataFrame
    start_rotations: list
    start_volumes: list
    search_pixel_size_A: float
    history: pd.DataFrame
    shifts_A: np.ndarray | None = None
    alternatives: list = field(default_factory=list)


def ab_initio_orientations(
    images: Any,
    *,
    pixel_size_A: float,
    frame_rate_hz: float = 1.0,
    use_prior: bool = True,
    prior_weight: float = 1.0,
    search_prior_weight: float = 2.0,
    n_starts: int = 3,
    seed: int = 0,
    n_grid: int = 5000,
    search_fraction: float = 0.5,
    n_iterations: int = 12,
    initial_lowpass_A: float = 8.0,
    lowpass_A: float = 3.5,
    n_refine_iterations: int = 5,
    refine_lowpass_A: float = 2.0,
    refine_step_deg: float = 4.0,
    n_candidates: int = 24,
    mask_radius_A: float | None = None,
    positivity: bool = True,
    reconstruction_iterations: int = 10,
    final_iterations: int = 30,
    n_threads: int | None = 1,
    max_step_deg: float = 24.0,
    anneal_fraction: float = 0.5,
    initial_temperature: float = 4.0,
    posterior_mean: bool = True,
    ctf: dict | None = None,
    frame_gaps: ArrayLike | None = None,
) -> AbInitioResult:
    """Orientations and a map of a particle from a movie stack, with no starting model.

    Global search (PRIME-like stochastic hill climbing, each start from random orientations):
    images are Fourier-cropped to a box whose Nyquist frequency just holds `lowpass_A`; each
    iteration projects the current map on a quasi-uniform SO(3) grid (:func:`so3_grid`) and
    scores every frame against it (normalised correlation inside a soft circular mask, in a
    raised-cosine band whose limit narrows from `initial_lowpass_A` to `lowpass_A`; with `ctf`
    both sides are weighted by ``|sin χ|``, the matched filter for phase-flipped images, so that
    the frequencies the microscope hardly transferred add no noise). Without the prior each
    frame scores a random `search_fraction` of the grid and moves to its best candidate when that
    beats its current orientation. With the prior, the correlations become Gaussian
    log-likelihoods (``−n_eff (1 − c²) / (2 s)``, ``n_eff`` the independent samples in the
    weighted band and mask, ``s`` the median residual fraction ``1 − c²`` of the frames' best
    candidates) and every grid rotation is a state of a hidden Markov chain whose transitions
    are the rotational-diffusion prior (:func:`brownian_log_prior`, between grid rotations within
    three RMS steps). ``D_r`` is re-estimated from the current solution every iteration (its RMS
    step at most ``max_step_deg / 3``); a step between grid rotations is that step plus the two
    orientations' snapping errors to the grid (0.8 grid spacings each, added in quadrature). In
    the first
    `anneal_fraction` of the iterations the new orientations are a path drawn from the chain's
    posterior with the likelihood tempered by a temperature falling geometrically from
    `initial_temperature` to 1 (forward filtering, backward sampling: PRIME's probabilistic
    acceptance, which lets a start leave the basin its random map put it in); later iterations
    take, with `posterior_mean`, every frame's posterior mean orientation (forward–backward
    marginals, averaged over the grid rotations around the marginal mode: soft assignments that
    are not snapped to the grid and do not commit a weak frame to one state), otherwise the
    most probable path (Viterbi). The map is then reconstructed afresh from the new
    orientations (:func:`reconstruct`, positivity and a spherical support). Starts are ranked by
    their mean correlation; the chosen start is the best scoring one among those agreeing with
    another start (median angle after global alignment, either hand, below twice the grid
    spacing), or the best one when none agree. Per-start scores and agreement go to the log and
    to `starts`.

    Local refinement of the chosen start: a 3 × 3 × 3 grid of small rotations around every
    frame's orientation (step from `refine_step_deg`, halved every iteration) in a band widening
    from `lowpass_A` to `refine_lowpass_A`, linked by the same prior in a Viterbi pass over the
    27 candidates of every frame (:func:`smooth_orientations`), and a map update after each
    iteration. The final map is reconstructed at the full box.

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Centred particle images (y, x) of consecutive frames, numpy or cupy, with the particle's
        density positive (phase-flipped, atoms bright); the median outside the mask is removed.
    pixel_size_A : float
        Pixel edge [Å].
    frame_rate_hz : float, optional
        Frames per second; only sets the unit of the diffusion constant.
    use_prior : bool, optional
        Link consecutive frames by the rotational-diffusion prior.
    prior_weight : float, optional
        Weight λ of the log-prior against the log-likelihood in the local refinement.
    search_prior_weight : float, optional
        λ in the global search. Above 1 because the diffusion constant that sets the prior there
        is estimated from the current, still wrong orientations (capped by `max_step_deg` from
        random starts) and their errors are correlated from frame to frame, which the lag fit of
        :func:`estimate_rotational_diffusion` cannot remove: it reads too large, and the prior
        too wide, until the search has converged.
    n_starts : int, optional
        Independent global searches (seeds ``seed, seed + 1, …``).
    seed : int, optional
        Seed of the first start.
    n_grid : int, optional
        Rotations in the global grid.
    search_fraction : float, optional
        Fraction of the grid each frame scores per iteration (1: exhaustive).
    n_iterations : int, optional
        Global-search iterations per start.
    initial_lowpass_A, lowpass_A : float, optional
        Band limit of the first and last global iterations [Å].
    n_refine_iterations : int, optional
        Local-refinement iterations (0: none).
    refine_lowpass_A : float, optional
        Band limit of the last local iteration [Å].
    refine_step_deg : float, optional
        First step of the local grid [deg].
    n_candidates : int, optional
        Accepted for compatibility and not used: the chain now holds every grid rotation.
    mask_radius_A : float, optional
        Radius of the soft circular mask and of the spherical support [Å]; 0.45 N by default.
    positivity : bool, optional
        Clip negative densities in the reconstructions.
    reconstruction_iterations : int, optional
        Reconstruction iterations per map update.
    final_iterations : int, optional
        Iterations of the full-box reconstruction.
    n_threads : int, optional
        CPU threads per NUFFT (all cores when None); one is fastest for the small search boxes,
        parallelise over particles instead.
    max_step_deg : float, optional
        Largest rotation between consecutive frames the prior's chain allows [deg]; the RMS
        step used is at most a third of it.
    anneal_fraction : float, optional
        Share of the global iterations that draw their path from the tempered posterior (0:
        Viterbi throughout).
    initial_temperature : float, optional
        Temperature of the first global iteration (likelihood divided by it).
    posterior_mean : bool, optional
        After annealing, use each frame's posterior mean orientation instead of the most
        probable path (with the prior only).
    ctf : dict, optional
        ``voltage_kV``, ``defocus_A`` (positive = underfocus) and ``cs_mm`` of phase-flipped
        images (as in a particle's ``ctf.json``): comparisons are weighted by ``|sin χ|``.
    frame_gaps : array_like of int, shape (n - 1,), optional
        Frames elapsed between consecutive images (ones by default; more where frames were
        dropped or a track bridged a gap). The local refinement scales the prior by the gap; the
        global search's grid chain keeps its prior across gaps of up to two frames and breaks
        the chain at longer ones (the orientations on either side are then linked only through
        the map).

    Returns
    -------
    AbInitioResult

    References
    ----------
    .. [1] Elmlund, H., Elmlund, D. & Bengio, S. PRIME: probabilistic initial 3D model generation
       for single-particle cryo-electron microscopy. Structure 21, 1299–1306 (2013).
       :doi:`10.1016/j.str.2013.07.002`
    .. [2] Kim, B. H. et al. Critical differences in 3D atomic structure of individual ligand-
       protected nanocrystals in solution. Science 368, 60–67 (2020).
       :doi:`10.1126/science.aax3233`
    """
    images = _image_stack(images, pixel_size_A, min_images=5)
    xp = get_array_module(images)
    n, size = images.shape[0], images.shape[1]
    if not 0 < search_fraction <= 1:
        raise ValueError(f"search_fraction must lie in (0, 1], got {search_fraction}")
    if n_starts < 1 or n_iterations < 1:
        raise ValueError("n_starts and n_iterations must be at least 1")
    if max_step_deg <= 0:
        raise ValueError(f"max_step_deg must be positive, got {max_step_deg}")
    if prior_weight < 0 or search_prior_weight < 0:
        raise ValueError(
            f"prior weights must be non-negative, got {prior_weight}, {search_prior_weight}"
        )
    if not 0 <= anneal_fraction <= 1 or initial_temperature < 1:
        raise ValueError(
            "need 0 ≤ anneal_fraction ≤ 1 and initial_temperature ≥ 1, got "
            f"{anneal_fraction}, {initial_temperature}"
        )
    if ctf is not None and not {"voltage_kV", "defocus_A", "cs_mm"} <= set(ctf):
        raise ValueError(f"ctf needs voltage_kV, defocus_A and cs_mm, got {sorted(ctf)}")
    if not initial_lowpass_A >= lowpass_A >= refine_lowpass_A >= 2 * pixel_size_A:
        raise ValueError(
            "need initial_lowpass_A ≥ lowpass_A ≥ refine_lowpass_A ≥ 2 pixel_size_A, got "
            f"{initial_lowpass_A}, {lowpass_A}, {refine_lowpass_A}, {pixel_size_A}"
        )
    gaps = _frame_gaps(frame_gaps, n)
    dtype = supported_float_type(images.dtype)
    images = images.astype(dtype, copy=False)
    radius_A = 0.45 * size * pixel_size_A if mask_radius_A is None else float(mask_radius_A)
    images = images - _outside_median(images, radius_A / pixel_size_A)

    grid = so3_grid(n_grid)
    grid_spacing_deg = float(np.degrees((6 * np.pi / n_grid) ** (1 / 3)))
    options = {
        "frame_rate_hz": float(frame_rate_hz),
        "use_prior": use_prior,
        "prior_weight": float(prior_weight),
        "radius_A": radius_A,
        "positivity": positivity,
        "reconstruction_iterations": reconstruction_iterations,
        "n_threads": n_threads,
        "frame_gaps": gaps,
    }
    search = _Stage(images, pixel_size_A, lowpass_A, radius_A, n_threads, ctf)
    history: list[dict] = []
    start_rotations, start_volumes, start_scores = [], [], []
    for start in range(n_starts):
        rng = np.random.default_rng(seed + start)
        rotations, volume, score = _global_search(
            search,
            grid,
            rng,
            search_prior_weight=float(search_prior_weight),
            lowpass_schedule_A=np.geomspace(initial_lowpass_A, lowpass_A, n_iterations),
            search_fraction=search_fraction,
            grid_spacing_deg=grid_spacing_deg,
            max_step_deg=max_step_deg,
            anneal_fraction=anneal_fraction,
            initial_temperature=initial_temperature,
            posterior_mean=posterior_mean,
            history=history,
            start=start,
            **options,
        )
        start_rotations.append(rotations)
        start_volumes.append(volume)
        start_scores.append(score)
        logger.info("start %d (seed %d): mean score %.4f", start, seed + start, score)

    chosen, agreement, mirrored = _consensus(
        start_rotations, np.asarray(start_scores), agree_deg=2 * grid_spacing_deg
    )
    starts = pd.DataFrame(
        {
            "start": np.arange(n_starts),
            "seed": seed + np.arange(n_starts),
            "mean_score": start_scores,
            "agreement_deg": agreement,
            "mirrored": mirrored,
            "agrees": agreement
            < min(2 * grid_spacing_deg, _spread_deg(start_rotations[chosen]) / 2),
            "chosen": np.arange(n_starts) == chosen,
        }
    )
    for row in starts.itertuples():
        logger.info(
            "start %d: score %.4f, agreement with start %d %.2f deg%s",
            row.start,
            row.mean_score,
            chosen,
            row.agreement_deg,
            " (chosen)" if row.chosen else "",
        )

    rotations = start_rotations[chosen]
    if n_refine_iterations > 0:
        rotations = _local_refinement(
            images,
            pixel_size_A,
            rotations,
            lowpass_schedule_A=np.geomspace(lowpass_A, refine_lowpass_A, n_refine_iterations),
            first_step_deg=refine_step_deg,
            ctf=ctf,
            history=history,
            start=chosen,
            **options,
        )
    final_band = refine_lowpass_A if n_refine_iterations > 0 else lowpass_A
    support = _sphere(size, radius_A / pixel_size_A, xp)
    volume = reconstruct(
        images,
        rotations,
        voxel_size_A=pixel_size_A,
        n_iterations=final_iterations,
        support=support,
        positivity=positivity,
        n_threads=n_threads,
    ).volume
    final = _Stage(images, pixel_size_A, final_band, radius_A, n_threads, ctf)
    scores = final.correlation_at(volume, rotations)
    estimate = estimate_rotational_diffusion(rotations, frame_rate_hz=frame_rate_hz)
    diffusion = estimate.rotational_diffusion_rad2_per_s
    logger.info(
        "rotational diffusion %.4g rad²/s (step %.2f deg/frame, error %.2f deg)",
        diffusion,
        estimate.step_rms_deg,
        estimate.error_rms_deg,
    )
    return AbInitioResult(
        rotations=rotations,
        scores=scores,
        volume=volume,
        rotational_diffusion_rad2_per_s=float(diffusion),
        starts=starts,
        start_rotations=start_rotations,
        start_volumes=start_volumes,
        search_pixel_size_A=search.pixel_size_A,
        history=pd.DataFrame(history),
    )


class _Stage:
    """Images Fourier-cropped for one band limit, with the filters that score them."""

    def __init__(
        self,
        images: Any,
        pixel_size_A: float,
        lowpass_A: float,
        radius_A: float,
        n_threads: int | None,
        ctf: dict | None = None,
        support: Any = None,
        footprint_rotations: Rotation | None = None,
    ):
        xp = get_array_module(images)
        n, size = images.shape[0], images.shape[1]
        # Nyquist a little above the band limit; even boxes keep the centre at N // 2.
        cropped = int(np.ceil(size * pixel_size_A * 2.4 / lowpass_A))
        cropped = min(size, cropped + cropped % 2)
        self.xp = xp
        self.size = cropped
        self.pixel_size_A = pixel_size_A * size / cropped
        self.images = _fourier_crop(images, cropped)
        self.radius_A = radius_A
        self.dtype = images.dtype
        self.n_images = n
        self.n_threads = n_threads
        r = (xp.arange(cropped) - cropped // 2) * self.pixel_size_A
        rr = xp.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
        edge = 2 * self.pixel_size_A
        self.mask = (0.5 * (1 + xp.cos(np.pi * xp.clip((rr - radius_A) / edge + 1, 0, 1)))).astype(
            self.dtype
        )
        if support is None:
            self.support = _sphere(cropped, radius_A / self.pixel_size_A, xp)
        else:
            # a particle's own mask, given on the full box
            self.support = resample_mask(support, cropped, pixel_size_A, self.pixel_size_A)
        # Per-frame masks (n, P, P) in place of the circle: the support's footprint per frame.
        self.frame_masks = None
        if footprint_rotations is not None:
            self.frame_masks = self._footprints(footprint_rotations)
        self.ctf_weight = None
        if ctf is not None:
            # |sin χ| is the share of each frequency that survives in phase-flipped images: the
            # matched filter weights both sides by it, so frequencies the microscope did not
            # transfer add no noise to the comparison.
            ky = np.fft.fftfreq(cropped, d=self.pixel_size_A)[:, None]
            kx = np.fft.rfftfreq(cropped, d=self.pixel_size_A)[None, :]
            weight = phase_flipped_transfer(ctf)(np.sqrt(kx**2 + ky**2))
            self.ctf_weight = xp.asarray(weight, dtype=self.dtype)
        self.set_band(lowpass_A)

    def set_band(self, lowpass_A: float) -> None:
        xp, size = self.xp, self.size
        ky = xp.fft.fftfreq(size, d=self.pixel_size_A)[:, None]
        kx = xp.fft.rfftfreq(size, d=self.pixel_size_A)[None, :]
        k = xp.sqrt(kx**2 + ky**2) * lowpass_A  # 1 at the band limit
        self.filter = (0.5 * (1 + xp.cos(np.pi * xp.clip((k - 0.8) / 0.2, 0, 1)))).astype(
            self.dtype
        )
        self.filter[0, 0] = 0
        if self.ctf_weight is not None:
            self.filter = self.filter * self.ctf_weight
        # Independent real samples: the full-grid Fourier samples in the band (a real image's
        # spectrum is Hermitian), in the mask's share of the box; a weighted band counts each
        # sample by its share of the weight (participation ratio of the squared weights).
        w2 = self._full_filter() ** 2
        in_band = float(w2.sum()) ** 2 / max(float((w2**2).sum()), 1e-30)
        if self.frame_masks is None:
            self.n_eff = in_band * float(self.mask.mean())
        else:
            # one count per frame, as a column against the frames' rows of candidates
            self.n_eff = in_band * asnumpy(self.frame_masks.mean(axis=(1, 2)))[:, None]
        self.data = self.prepare(self.images, self.frame_masks)

    def _footprints(self, rotations: Rotation) -> Any:
        """The support's footprint in each frame at `rotations`, tapered to zero at its edge.

        The support projected along the beam is kept where it is over one voxel thick; a
        Gaussian of σ = 1 pixel tapers it (``erf``: 0 at the edge, 0.95 two pixels inside), as
        the circle's cosine edge does. A particle that is not round, or whose radius is well
        under the circle's, is then compared where it lies and nowhere else.
        """
        xp, size = self.xp, self.size
        thickness = self.project(self.support.astype(self.dtype), rotations)
        inside = (thickness > 1.0).astype(self.dtype)
        ky = xp.fft.fftfreq(size)[:, None]
        kx = xp.fft.rfftfreq(size)[None, :]
        gaussian = xp.exp(-2 * np.pi**2 * (kx**2 + ky**2)).astype(self.dtype)
        smooth = xp.fft.irfft2(xp.fft.rfft2(inside) * gaussian, s=(size, size))
        return xp.clip(2 * smooth - 1, 0, 1).astype(self.dtype)

    def _full_filter(self) -> Any:
        """The rfft-grid filter extended to the full (y, x) spectrum."""
        xp, size = self.xp, self.size
        half = self.filter
        mirrored = half[(-xp.arange(size)) % size][:, 1 : size - half.shape[1] + 1][:, ::-1]
        return xp.concatenate([half, mirrored], axis=1)

    def prepare(self, stack: Any, masks: Any = None) -> Any:
        """Band-filtered, masked, zero-mean, unit-norm rows (m, P).

        `masks` (m, N, N) mask each image by its own; the circle when None.
        """
        xp = self.xp
        filtered = xp.fft.irfft2(xp.fft.rfft2(stack) * self.filter, s=stack.shape[-2:])
        if masks is None:
            filtered = filtered * self.mask
            rows = filtered.reshape(len(stack), -1)
            weight = self.mask.ravel()
            rows = rows - (rows @ weight / weight.sum())[:, None] * weight[None, :]
        else:
            filtered = filtered * masks
            rows = filtered.reshape(len(stack), -1)
            weights = masks.reshape(len(stack), -1)
            mean = (rows * weights).sum(axis=1) / xp.maximum(weights.sum(axis=1), 1e-12)
            rows = rows - mean[:, None] * weights
        norms = xp.linalg.norm(rows, axis=1, keepdims=True)
        return (rows / xp.maximum(norms, xp.finfo(rows.dtype).tiny)).astype(self.dtype)

    def project(self, volume: Any, rotations: Rotation) -> Any:
        device = "cpu" if self.xp is np else "gpu"
        projector = FourierSliceProjector(
            rotations,
            self.size,
            dtype=self.dtype,
            device=device,
            eps=1e-4,
            n_threads=self.n_threads,
        )
        return projector.forward(volume)

    def correlation_at(self, volume: Any, rotations: Rotation) -> np.ndarray:
        """Correlation of every image with the map's projection at its own orientation."""
        references = self.prepare(self.project(self._crop_volume(volume), rotations))
        return asnumpy((self.data * references).sum(axis=1)).astype(np.float64)

    def _crop_volume(self, volume: Any) -> Any:
        if volume.shape[0] == self.size:
            return volume
        return _fourier_crop(volume, self.size, axes=3)

    def reconstruct(self, rotations: Rotation, *, positivity: bool, n_iterations: int) -> Any:
        return reconstruct(
            self.images,
            rotations,
            voxel_size_A=self.pixel_size_A,
            n_iterations=n_iterations,
            support=self.support,
            positivity=positivity,
            n_threads=self.n_threads,
        ).volume


def _global_search(
    stage: _Stage,
    grid: Rotation,
    rng: np.random.Generator,
    *,
    lowpass_schedule_A: np.ndarray,
    search_fraction: float,
    grid_spacing_deg: float,
    max_step_deg: float,
    anneal_fraction: float,
    initial_temperature: float,
    posterior_mean: bool,
    search_prior_weight: float,
    history: list[dict],
    start: int,
    frame_rate_hz: float,
    use_prior: bool,
    prior_weight: float,
    radius_A: float,
    positivity: bool,
    reconstruction_iterations: int,
    n_threads: int | None,
    frame_gaps: np.ndarray,
) -> tuple[Rotation, Any, float]:
    n = stage.n_images
    # The grid chain's neighbourhoods hold about two frames' diffusion; longer gaps break it.
    broken = frame_gaps > 2
    rotations = Rotation.random(n, random_state=rng)
    volume = stage.reconstruct(
        rotations, positivity=positivity, n_iterations=reconstruction_iterations
    )
    grid_quats = grid.as_quat()
    n_anneal = int(round(anneal_fraction * len(lowpass_schedule_A)))
    temperatures = np.zeros(len(lowpass_schedule_A))
    temperatures[:n_anneal] = np.geomspace(initial_temperature, 1.0, max(n_anneal, 1))[:n_anneal]
    for iteration, band in enumerate(lowpass_schedule_A):
        stage.set_band(float(band))
        references = stage.prepare(stage.project(volume, grid))
        correlation = asnumpy(stage.data @ references.T).astype(np.float64)  # (n, M)
        step_rms = np.nan
        if use_prior:
            # Every grid rotation is a state of the chain (all scored): the prior then weighs
            # each frame's whole likelihood, not just a few of its best peaks.
            ll = _log_likelihood(correlation, stage.n_eff)
            estimate = estimate_rotational_diffusion(rotations, frame_rate_hz=frame_rate_hz)
            step_rms = float(min(estimate.step_rms_deg, max_step_deg / 3))
            # Orientations snapped to the grid step by the diffusion plus two snapping errors
            # (each about 0.8 grid spacings, see so3_grid).
            chain_step = np.sqrt(step_rms**2 + 2 * (0.8 * grid_spacing_deg) ** 2)
            diffusion = np.radians(chain_step) ** 2 * frame_rate_hz / 6
            neighbours, angles = _grid_neighbours(grid_quats, np.radians(3 * chain_step))
            log_prior = search_prior_weight * brownian_log_prior(
                angles, rotational_diffusion_rad2_per_s=diffusion, frame_rate_hz=frame_rate_hz
            )
            # PRIME-style annealing: early iterations draw the path from the posterior tempered
            # by `temperature` (accepting worse assignments with their probability), the last
            # ones take the most probable path.
            temperature = temperatures[iteration]
            if temperature > 0:
                chosen = _grid_sample_path(ll / temperature, neighbours, log_prior, rng, broken)
                new = grid[chosen]
            elif posterior_mean:
                chosen, new = _grid_posterior_mean(ll, neighbours, log_prior, grid_quats, broken)
            else:
                chosen = _grid_viterbi(ll, neighbours, log_prior, broken)
                new = grid[chosen]
            new_scores = correlation[np.arange(n), chosen]
        else:
            current = stage.correlation_at(volume, rotations)
            correlation[rng.random(correlation.shape) >= search_fraction] = -np.inf
            best = np.argmax(correlation, axis=1)
            best_scores = correlation[np.arange(n), best]
            better = best_scores > current
            quats = rotations.as_quat()
            quats[better] = grid_quats[best[better]]
            new = Rotation.from_quat(quats)
            new_scores = np.where(better, best_scores, current)
        change = np.degrees((new * rotations.inv()).magnitude())
        rotations = new
        volume = stage.reconstruct(
            rotations, positivity=positivity, n_iterations=reconstruction_iterations
        )
        history.append(
            {
                "start": start,
                "stage": "global",
                "iteration": iteration,
                "lowpass_A": float(band),
                "mean_score": float(new_scores.mean()),
                "mean_angle_change_deg": float(change.mean()),
                "step_rms_deg": float(step_rms),
                "angle_step_deg": np.nan,
            }
        )
        logger.debug("start %d global %d: %s", start, iteration, history[-1])
    score = float(stage.correlation_at(volume, rotations).mean())
    return rotations, volume, score


def _local_refinement(
    images: Any,
    pixel_size_A: float,
    rotations: Rotation,
    *,
    lowpass_schedule_A: np.ndarray,
    first_step_deg: float,
    ctf: dict | None,
    history: list[dict],
    start: int,
    frame_rate_hz: float,
    use_prior: bool,
    prior_weight: float,
    radius_A: float,
    positivity: bool,
    reconstruction_iterations: int,
    n_threads: int | None,
    frame_gaps: np.ndarray,
) -> Rotation:
    n = images.shape[0]
    stage = _Stage(images, pixel_size_A, float(lowpass_schedule_A[-1]), radius_A, n_threads, ctf)
    volume = stage.reconstruct(
        rotations, positivity=positivity, n_iterations=reconstruction_iterations
    )
    offsets = np.array([-1.0, 0.0, 1.0])
    unit = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
    unit = unit[np.argsort(np.abs(unit).sum(axis=1), kind="stable")]  # identity first
    step = float(first_step_deg)
    for iteration, band in enumerate(lowpass_schedule_A):
        stage.set_band(float(band))
        moves = Rotation.from_rotvec(np.radians(step) * unit)
        # Moves in the microscope frame: candidate = move · R_t.
        candidates = Rotation.from_matrix(
            np.einsum("kij,njl->nkil", moves.as_matrix(), rotations.as_matrix()).reshape(-1, 3, 3)
        )
        references = stage.prepare(stage.project(volume, candidates))
        references = references.reshape(n, len(unit), -1)
        scores = asnumpy((references * stage.data[:, None, :]).sum(axis=2)).astype(np.float64)
        quats = candidates.as_quat().reshape(n, len(unit), 4)
        step_rms = np.nan
        if use_prior:
            estimate = estimate_rotational_diffusion(rotations, frame_rate_hz=frame_rate_hz)
            step_rms = max(estimate.step_rms_deg, step)
            diffusion = np.radians(step_rms) ** 2 * frame_rate_hz / 6
            chosen, _ = smooth_orientations(
                _log_likelihood(scores, stage.n_eff),
                quats,
                rotational_diffusion_rad2_per_s=diffusion,
                frame_rate_hz=frame_rate_hz,
                prior_weight=prior_weight,
                frame_gaps=frame_gaps,
            )
        else:
            chosen = np.argmax(scores, axis=1)
        new = Rotation.from_quat(quats[np.arange(n), chosen])
        change = np.degrees((new * rotations.inv()).magnitude())
        rotations = new
        volume = stage.reconstruct(
            rotations, positivity=positivity, n_iterations=reconstruction_iterations
        )
        history.append(
            {
                "start": start,
                "stage": "local",
                "iteration": iteration,
                "lowpass_A": float(band),
                "mean_score": float(scores[np.arange(n), chosen].mean()),
                "mean_angle_change_deg": float(change.mean()),
                "step_rms_deg": float(step_rms),
                "angle_step_deg": step,
            }
        )
        logger.debug("local %d: %s", iteration, history[-1])
        step /= 2
    return rotations


def _grid_neighbours(quats: np.ndarray, radius_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid rotations within `radius_rad` of each one: indices (M, K), padded with -1, and angles."""
    # Chord between unit quaternions of the same sign is 2 sin(θ / 4); q and -q are one rotation.
    tree = cKDTree(np.concatenate([quats, -quats]))
    pairs = tree.query_ball_point(quats, 2 * np.sin(radius_rad / 4), workers=1)
    width = max(len(p) for p in pairs)
    index = np.full((len(quats), width), -1, dtype=np.int64)
    for i, p in enumerate(pairs):
        index[i, : len(p)] = np.asarray(p) % len(quats)
    dots = np.abs(np.einsum("ia,ika->ik", quats, quats[np.maximum(index, 0)]))
    angles = np.where(index >= 0, 2 * np.arccos(np.clip(dots, 0.0, 1.0)), np.inf)
    return index, angles


def _grid_viterbi(
    ll: np.ndarray,
    neighbours: np.ndarray,
    log_prior: np.ndarray,
    broken: np.ndarray | None = None,
) -> np.ndarray:
    """Most probable path of grid states: ``max Σ ll_t(k_t) + log_prior(k_{t-1} → k_t)``.

    Links ``t-1 → t`` with ``broken[t-1]`` carry no prior (any state may follow any state).
    """
    n, m = ll.shape
    broken = np.zeros(max(n - 1, 0), bool) if broken is None else broken
    valid = neighbours >= 0
    safe = np.where(valid, neighbours, 0)
    transition = np.where(valid, log_prior, -np.inf)
    score = ll[0].copy()
    back = np.empty((n, m), dtype=np.int32)
    for t in range(1, n):
        if broken[t - 1]:
            back[t] = int(np.argmax(score))
            score = score.max() + ll[t]
            continue
        total = score[safe] + transition  # (M, K): from neighbour k into state j
        best = np.argmax(total, axis=1)
        back[t] = safe[np.arange(m), best]
        score = total[np.arange(m), best] + ll[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _grid_posterior_mean(
    ll: np.ndarray,
    neighbours: np.ndarray,
    log_prior: np.ndarray,
    quats: np.ndarray,
    broken: np.ndarray | None = None,
) -> tuple[np.ndarray, Rotation]:
    """Posterior mode state of every frame and the posterior mean orientation around it.

    Forward–backward on the chain gives each frame's marginal posterior over the grid; the
    orientation is the posterior-weighted mean of the grid rotations in the neighbourhood of the
    marginal mode (a local mean: symmetry-equivalent modes far apart are not averaged), which
    is not limited to the grid's spacing. Links with ``broken[t-1]`` pass no message.
    """
    n, m = ll.shape
    broken = np.zeros(max(n - 1, 0), bool) if broken is None else broken
    valid = neighbours >= 0
    safe = np.where(valid, neighbours, 0)
    transition = np.where(valid, log_prior, -np.inf)

    def message(previous: np.ndarray) -> np.ndarray:
        total = previous[safe] + transition
        peak = total.max(axis=1)
        out = peak + np.log(np.exp(total - peak[:, None]).sum(axis=1))
        return out - out.max()

    alpha = np.empty((n, m))
    alpha[0] = ll[0] - ll[0].max()
    for t in range(1, n):
        alpha[t] = ll[t] if broken[t - 1] else message(alpha[t - 1]) + ll[t]
        alpha[t] -= alpha[t].max()
    # Neighbourhoods are symmetric, so the backward message uses the same transitions.
    beta = np.zeros((n, m))
    for t in range(n - 2, -1, -1):
        beta[t] = 0.0 if broken[t] else message(beta[t + 1] + ll[t + 1])
    log_post = alpha + beta
    mode = np.argmax(log_post, axis=1)
    local = safe[mode]  # (n, K)
    weights = np.where(
        valid[mode],
        np.exp(log_post[np.arange(n)[:, None], local] - log_post[np.arange(n), mode][:, None]),
        0.0,
    )
    local_quats = quats[local]  # (n, K, 4)
    signs = np.sign(np.einsum("nka,na->nk", local_quats, quats[mode]))
    mean = np.einsum("nk,nka->na", weights * signs, local_quats)
    return mode, Rotation.from_quat(mean / np.linalg.norm(mean, axis=1, keepdims=True))


def _grid_sample_path(
    ll: np.ndarray,
    neighbours: np.ndarray,
    log_prior: np.ndarray,
    rng: np.random.Generator,
    broken: np.ndarray | None = None,
) -> np.ndarray:
    """A path of grid states drawn from the chain's posterior (forward filtering, backward sampling).

    Neighbourhoods are symmetric (all states within one angle), so the states that lead into a
    state are its neighbours. Links with ``broken[t-1]`` carry no prior.
    """
    n, m = ll.shape
    broken = np.zeros(max(n - 1, 0), bool) if broken is None else broken
    valid = neighbours >= 0
    safe = np.where(valid, neighbours, 0)
    transition = np.where(valid, log_prior, -np.inf)
    alpha = np.empty((n, m))
    alpha[0] = ll[0] - ll[0].max()
    for t in range(1, n):
        if broken[t - 1]:
            alpha[t] = ll[t] - ll[t].max()
            continue
        total = alpha[t - 1][safe] + transition
        peak = total.max(axis=1)
        alpha[t] = peak + np.log(np.exp(total - peak[:, None]).sum(axis=1)) + ll[t]
        alpha[t] -= alpha[t].max()
    path = np.empty(n, dtype=np.int64)
    path[-1] = _draw(alpha[-1], rng)
    for t in range(n - 1, 0, -1):
        if broken[t - 1]:
            path[t - 1] = _draw(alpha[t - 1], rng)
            continue
        options = safe[path[t]]
        weights = alpha[t - 1][options] + transition[path[t]]
        path[t - 1] = options[_draw(weights, rng)]
    return path


def _draw(log_weights: np.ndarray, rng: np.random.Generator) -> int:
    p = np.exp(log_weights - log_weights.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def _log_likelihood(scores: np.ndarray, n_eff: float) -> np.ndarray:
    """Gaussian log-likelihood ``−n_eff (1 − c²) / (2 s)`` of normalised correlations ``c``.

    For unit-norm data and the best-scaled reference the residual is ``1 − c²``; the noise level
    ``s`` is the median over frames of the residual of their best candidate.
    """
    positive = np.clip(scores, 0.0, 1.0)  # -inf (unused) and anti-correlation count as zero
    residual = 1.0 - positive**2
    noise = max(float(np.median(residual.min(axis=1))), 1e-3)
    ll = -n_eff * residual / (2.0 * noise)
    return np.where(np.isfinite(scores), ll, -np.inf)


def _consensus(
    rotations: list[Rotation],
    scores: np.ndarray,
    *,
    agree_deg: float,
    symmetry: Rotation | None = None,
    centrosymmetric: bool = False,
) -> tuple[int, np.ndarray, np.ndarray]:
    """Chosen start, each start's median disagreement with it [deg], and its hand."""
    n_starts = len(rotations)
    disagreement = np.zeros((n_starts, n_starts))
    options = {"symmetry": symmetry, "centrosymmetric": centrosymmetric}
    for a in range(n_starts):
        for b in range(a + 1, n_starts):
            alignment = align_orientations(rotations[b], rotations[a], **options)
            disagreement[a, b] = disagreement[b, a] = float(np.median(alignment.errors_deg))
    agrees = (disagreement < agree_deg).sum(axis=1) > 1  # itself and at least one other
    ranked = np.where(agrees, scores, -np.inf) if agrees.any() else scores
    chosen = int(np.argmax(ranked))
    mirrored = np.array(
        [
            False
            if s == chosen
            else align_orientations(rotations[s], rotations[chosen], **options).mirrored
            for s in range(n_starts)
        ]
    )
    return chosen, disagreement[chosen], mirrored


def _spread_deg(rotations: Rotation) -> float:
    """Median angle of the orientations from their mean [deg]."""
    return float(np.median(np.degrees((rotations * rotations.mean().inv()).magnitude())))


def _image_stack(images: Any, pixel_size_A: float, *, min_images: int) -> Any:
    """`images` as an array of its module, checked to be (n ≥ `min_images`, N, N)."""
    images = get_array_module(images).asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, N, N), got {tuple(images.shape)}")
    if images.shape[0] < min_images:
        raise ValueError(f"need at least {min_images} images, got {images.shape[0]}")
    if pixel_size_A <= 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    return images


def _frame_gaps(frame_gaps: ArrayLike | None, n: int) -> np.ndarray:
    """Frames elapsed between consecutive images (ones by default), checked."""
    gaps = np.ones(n - 1) if frame_gaps is None else np.asarray(frame_gaps, dtype=float)
    if gaps.shape != (n - 1,) or np.any(gaps < 1):
        raise ValueError(f"frame_gaps must hold {n - 1} values ≥ 1, got shape {gaps.shape}")
    return gaps


def _outside_median(images: Any, radius_px: float) -> Any:
    xp = get_array_module(images)
    size = images.shape[1]
    r = xp.arange(size) - size // 2
    outside = (r[:, None] ** 2 + r[None, :] ** 2) > radius_px**2
    if not bool(outside.any()):
        return xp.zeros((len(images), 1, 1), images.dtype)
    return xp.median(images[:, outside], axis=1)[:, None, None].astype(images.dtype)


def _sphere(size: int, radius_px: float, xp: Any) -> Any:
    r = xp.arange(size) - size // 2
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius_px**2


def _fourier_crop(array: Any, size: int, *, axes: int = 2) -> Any:
    """Crop the centred spectrum of the last `axes` axes to `size` (same centre at ``N // 2``)."""
    xp = get_array_module(array)
    full = array.shape[-1]
    if size == full:
        return array
    axis_list = tuple(range(-axes, 0))
    spectrum = xp.fft.fftshift(xp.fft.fftn(array, axes=axis_list), axes=axis_list)
    lo = full // 2 - size // 2
    index = (Ellipsis,) + (slice(lo, lo + size),) * axes
    spectrum = xp.fft.ifftshift(spectrum[index], axes=axis_list)
    out = xp.fft.ifftn(spectrum, axes=axis_list).real * (size / full) ** axes
    return out.astype(array.dtype, copy=False)
