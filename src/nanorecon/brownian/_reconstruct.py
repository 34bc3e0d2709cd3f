"""One Brownian particle: ab initio orientations → projection matching → half maps and FSC."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation, Slerp

from ..backend import asnumpy, get_array_module, supported_float_type
from ..refine import atomic_reference, half_set_reconstruction, refine_orientations
from ._abinitio import _image_stack, _outside_median, _sphere, _Stage, ab_initio_orientations
from ._crystal import crystal_orientations
from ._ctf import WIENER_CONSTANT, phase_flipped_transfer, reconstruction_transfer
from ._local import (
    HIGH_RESOLUTION_BALL_DEG,
    HIGH_RESOLUTION_FRACTION,
    HIGH_RESOLUTION_ITERATIONS,
    HIGH_RESOLUTION_MIN_BAND_PX,
    HIGH_RESOLUTION_SHRINK,
    LATE_RESEARCH_ITERATIONS,
    LOCAL_BALL_DEG,
    LOCAL_BANDS_A,
    LOCAL_SHRINK,
    POLISH_BALL_DEG,
    POLISH_BANDS_A,
    POLISH_SHRINK,
    RESEARCH_BALL_DEG,
    RESEARCH_BANDS_A,
    RESEARCH_SHRINK,
    _shift_images,
    refine_locally,
)
from ._mask import (
    FINAL_MAP_MARGIN_A,
    FRINGE_BAND_A,
    grow_mask,
    particle_mask,
    resample_mask,
)
from ._prior import estimate_rotational_diffusion

__all__ = [
    "ParticleReconstruction",
    "high_resolution_bands",
    "reconstruct_particle",
    "time_block_half_sets",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParticleReconstruction:
    """Outcome of :func:`reconstruct_particle`; per-frame arrays hold every input frame.

    Attributes
    ----------
    rotations : Rotation
        Orientation of every frame (map frame → microscope frame). Unused frames carry the
        orientation interpolated (slerp in time) between their used neighbours.
    shifts_A : ndarray of shape (n, 2)
        ``(shift_x_A, shift_y_A)`` of every frame [Å] (unused frames: interpolated).
    scores : ndarray of shape (n,)
        Normalised cross-correlation of each used frame with the final map's projection; NaN for
        unused frames.
    used : ndarray of bool, shape (n,)
        Frames that entered the maps.
    half_sets : ndarray of shape (n,)
        Half set (1 or 2) of every frame: contiguous blocks of frames alternate.
    volume : ndarray of shape (N, N, N)
        Refined map (z, y, x) from all used frames, same array module as the images. With a
        `ctf` the map is reconstructed through the phase-flipped transfer ``|sin χ|`` with a
        Wiener term: the particle's potential, its least-transferred (lowest) frequencies
        shaped by positivity and the support.
    half_maps : tuple of two ndarrays of shape (N, N, N)
        Maps of the two half sets, reconstructed independently with the refined geometry.
    fsc : DataFrame
        Half-map FSC (:func:`nanorecon.refine.fsc` columns).
    resolution_A : float
        Resolution where the half-map FSC falls below 0.143 [Å].
    independent_resolution_A : float
        The same for the half sets as refined apart, before the wide re-search and the
        high-resolution rounds share all frames again (equal to `resolution_A` without them):
        the gold-standard test of the solution [Å].
    starts : DataFrame
        The ab initio starts (:attr:`AbInitioResult.starts`), with the refined figures of those
        refined (``refined_resolution_A``, ``refined_independent_resolution_A``,
        ``refined_score``; NaN for the others) and ``kept``: the start whose map was kept.
    rotational_diffusion_rad2_per_s : float
        ``D_r`` estimated from the refined orientations of the used frames [rad²/s].
    abinitio_rotational_diffusion_rad2_per_s : float
        ``D_r`` of the ab initio orientations [rad²/s].
    history : DataFrame
        One row per projection-matching round (:attr:`RefinementResult.history`) or local-search
        iteration (:attr:`LocalRefinement.history`), with its ``stage``, ``half_set`` (0: all
        frames) and ``kept`` (False for the rounds past 2 Å that lost to the other weighting).
    mask : ndarray of bool, shape (N, N, N), or None
        Support of the final maps where the rounds past 2 Å used the particle's own mask
        (:func:`particle_mask`): that mask grown by :data:`FINAL_MAP_MARGIN_A`, within the
        sphere of `particle_radius_A`; None where they kept the sphere.
    variants : DataFrame
        One row per run of the rounds past 2 Å (``start``: the ab initio start refined,
        ``variant``, ``resolution_A``, ``score``: the `map_score` of its final map, NaN without
        one, ``kept``: the map returned), every refined start's runs in the order they were
        scored; empty without those rounds.
    score : float
        `map_score` of the final map (NaN where it was not needed or not given).
    candidates : DataFrame
        One row per ab initio start refined (``start``, ``resolution_A``,
        ``independent_resolution_A``, ``score``, ``kept``); one row without `refine_starts`.
        `starts` holds the same figures as ``refined_*`` columns and ``kept``.
    """

    rotations: Rotation
    shifts_A: np.ndarray
    scores: np.ndarray
    used: np.ndarray
    half_sets: np.ndarray
    volume: Any
    half_maps: tuple[Any, Any]
    fsc: pd.DataFrame
    resolution_A: float
    independent_resolution_A: float
    starts: pd.DataFrame
    rotational_diffusion_rad2_per_s: float
    abinitio_rotational_diffusion_rad2_per_s: float
    history: pd.DataFrame
    mask: Any = None
    variants: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["start", "variant", "resolution_A", "score", "kept"]
        )
    )
    score: float = float("nan")
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)


def time_block_half_sets(frames: ArrayLike, *, block_frames: int = 10) -> np.ndarray:
    """Half sets (1 or 2) of alternating blocks of `block_frames` consecutive frames.

    Consecutive frames of a tumbling particle see nearly the same orientation, so odd/even
    halves would share their information; blocks keep them independent except at block edges
    while both halves still sample the whole trajectory.

    Parameters
    ----------
    frames : array_like of int, shape (n,)
        Frame number (time index) of each image.
    block_frames : int, optional
        Frames per block.

    Returns
    -------
    ndarray of int8, shape (n,)

    Examples
    --------
    >>> time_block_half_sets(np.arange(6), block_frames=2)
    array([1, 1, 2, 2, 1, 1], dtype=int8)
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be at least 1, got {block_frames}")
    frames = np.asarray(frames, dtype=np.int64)
    start = frames.min() if frames.size else 0
    return (1 + ((frames - start) // block_frames) % 2).astype(np.int8)


def reconstruct_particle(
    images: Any,
    *,
    pixel_size_A: float,
    frame_rate_hz: float = 1.0,
    frames: ArrayLike | None = None,
    used: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    min_weight: float = 0.0,
    contrast: Literal["dark", "bright"] = "dark",
    ctf: dict[str, float] | None = None,
    wiener_constant: float = WIENER_CONSTANT,
    particle_radius_A: float | None = None,
    use_prior: bool = True,
    seed: int = 0,
    n_starts: int = 3,
    abinitio: Literal["crystal", "search"] = "search",
    abinitio_options: dict[str, Any] | None = None,
    refinement: Literal["local", "matching"] = "local",
    local_options: dict[str, Any] | None = None,
    joint_resolution_A: float | None = 2.5,
    wide_research: bool = True,
    high_resolution_rounds: int = 3,
    late_research: bool = True,
    mask_from_map: bool = True,
    n_rounds: int = 4,
    n_iterations: int = 20,
    max_shift_A: float = 2.0,
    lowpass_A: float = 2.0,
    final_lowpass_A: float | None = 1.0,
    atomic_model_reference: bool = True,
    half_set_block_frames: int = 10,
    map_score: Callable[[Any, tuple[Any, Any]], float] | None = None,
    refine_starts: int = 1,
    n_threads: int | None = 1,
    callback: Callable[[str, dict[str, Any]], None] | None = None,
) -> ParticleReconstruction:
    """Orientations, map, half maps and gold-standard FSC of one tumbling particle.

    1. The used frames (``used`` and ``weight > min_weight``) go to the ab initio step: with
       `abinitio` ``"search"`` :func:`ab_initio_orientations` (stochastic search from `n_starts`
       random starts, with or without the rotational-diffusion prior), with ``"crystal"``
       :func:`crystal_orientations` (every frame matched to an ideal crystal of the lattice
       given in `abinitio_options`, one chain per start).
    2. The frames are split into two half sets of alternating blocks of consecutive frames
       (:func:`time_block_half_sets`), and each half set is refined on its own, from the ab
       initio orientations against a map of that half only (gold standard, so the half maps
       share no refinement bias at lattice resolution; with ``"local"`` the iterations below
       `joint_resolution_A` first refine all frames together). With `refinement` ``"local"``
       (default) by
       :func:`refine_locally`: exhaustive search of orientations in a shrinking ball and of
       shifts around each frame's centre, linked by the rotational-diffusion prior with the ab
       initio ``D_r``. With ``"matching"`` by :func:`nanorecon.refine.refine_orientations`
       (three angles and two shifts per frame by least squares, against the half map or an
       atomic redrawing of it, :func:`nanorecon.refine.atomic_reference`, when
       `atomic_model_reference`). On the demo movie's stacks, from true orientations turned
       by 5° or 10°, the local search ends at about 3° (median) and least squares at the
       starting error (``benchmarks/bench_refinement.py``).
    3. With ``"local"`` and `wide_research`, a wide re-search: all frames, from their refined
       geometry, are searched again in a 30° ball (6° apart, then halved) against the map of all
       of them, at 2.5–2.2 Å (:data:`RESEARCH_BANDS_A`), and each half set then ends on its own
       with four iterations to 2.0 Å in a small ball (:data:`POLISH_BANDS_A`). An ab initio
       chain can leave a stretch of consecutive frames 10–25° off, on an optimum that the
       shrinking ball of step 2 cannot leave and that a half map of 150 frames does not
       contradict; the map of all refined frames does (on the demo movie's octahedron, p002:
       the median error from 4.0° to 1.4°, frames more than 10° off from 30 % to 12 %; each
       half set searched in the same ball against its own map went from 5.0° and 1.6° to 3.6°
       and 2.0°, its wrong stretches kept). The halves'
       last iterations are their own, but they start from orientations chosen against a map of
       both, so their FSC is no longer fully independent at lattice resolution.
       Below lattice resolution (bands to 2.5 Å) the wide ball only loses the orientations:
       their information is in the lattice fringes.
    4. With ``"local"`` and `high_resolution_rounds`, rounds past the {200} fringes: all frames
       together, at bands 0.85, 0.85², … × the finest so far (:func:`high_resolution_bands`:
       1.7, 1.45, 1.23 Å after 2.0 Å, never finer than 2.1 pixels), four iterations each in a
       ball of 3° halved per round. The orientations' information does not end at 2 Å: on the
       demo movie's 2.7 nm sphere (p003) the map of the frames as refined to 2.0 Å let 36 % of
       the atoms be traced. Each half set refined alone against its own half map at 1.8–1.5 Å
       went the other way (p003: 10 %), so these rounds share all frames like the re-search, and
       the FSC that tests the solution is the one before them (`independent_resolution_A`).
       With `mask_from_map` their maps' support is the particle's own mask
       (:func:`particle_mask`), not the sphere of `particle_radius_A`, and each frame is
       compared within that mask's footprint at its orientation, not within the circle of
       `particle_radius_A` (:func:`refine_locally`, `support`); their final maps' support is
       that mask grown by :data:`FINAL_MAP_MARGIN_A` (1 Å), whose edge would otherwise cut the
       outer side of vertex atoms (the demo's octahedron p002, its unweighted run's
       orientations: 97.1 % of its atoms traced within the mask itself, 99.8 %). With `ctf`
       the rounds run twice, the comparisons weighted by ``|sin χ|`` and not, and the run
       whose final map scores best by `map_score` is kept (without one: the finer FSC). From
       the demo's orientations at 2.0 Å (own mask; recall / precision of the traced atoms
       against the truth, FSC 0.143, and the truth-free RMS distance of the traced atoms from
       their fitted fcc lattice, the CLI's score):

       ============  ===============================  ===============================
       particle      weighted                         unweighted
       ============  ===============================  ===============================
       p001          100 % / 100 %, 1.13 Å, 12.5 pm   94 % / 88 %, 1.67 Å, 25.8 pm
       p002          99 % / 100 %, 1.10 Å, 15.6 pm    100 % / 89 %, 1.12 Å, 18.9 pm
       p003          61 % / 82 %, 1.59 Å, 25.9 pm     94 % / 98 %, 1.33 Å, 21.5 pm
       p003 seed 30  98 % / 100 %, 1.59 Å, 13.0 pm    81 % / 95 %, 1.59 Å, 17.5 pm
       ============  ===============================  ===============================

       Neither weighting serves every particle. Both scores pick the better run of these four;
       the FSC by 0.01 Å where the lattice fit differs by 4.5 pm (p003 from ab initio seed 30),
       and a GPU run of p003 kept the worse map by its FSC. The mask made little difference to
       the weighted runs and much to the unweighted ones (p003: 79 % recall with the 17 Å
       sphere; p002: 78 % precision).
    5. With `late_research` (and those rounds), a late re-search: from the run whose map scores
       best, all frames are searched again in the re-search's 30° ball at the first round's band
       (1.7 Å, :data:`LATE_RESEARCH_ITERATIONS` iterations) with that run's mask and weighting,
       against the maps of their own geometry, and the rounds past 2 Å run again from there. The
       map kept is the best scoring of all runs (without a score: the finest FSC), so the late
       run replaces its base only where its map scores better. A stretch of frames 10–25° off
       can outlast the re-search at 2.5–2.2 Å, whose maps resolve only the {111} fringes; at
       1.7 Å, through the {200} fringes and with the particle's own mask, the map of the other
       frames can contradict it. On the demo movie's p003 from ab initio seed 0 (the unweighted
       run: 93.5 % recall, 97.8 % precision, 20.3 pm, median orientation error 2.8°) the late
       run was kept: 93.6 % / 99.2 %, 16.4 pm, 2.2°. From seed 30 the late run (95.0 % /
       100 %, 13.3 pm) scored below its base (98.1 % / 100 %, 14.1 pm) and was not kept, as
       the truth would have chosen. With each frame compared within its own mask's footprint
       (before: the 17 Å circle of ``--particle-diameter-A 30`` for the 15 Å mask), the late run
       from seed 0 kept 98.5 % / 99.6 %, 13.4 pm, +0.09 %, 1.5° (its base: 93.6 % / 99.7 %,
       19.3 pm); from seed 30 the weighted run was kept, 97.3 % / 100 %, 14.0 pm, −0.01 %, 1.0°
       (its late run: 93.2 % / 100 %, 12.5 pm). Those final maps lay within the own mask itself;
       within it grown by 1 Å the same run from seed 0 traces at 97.8 % / 99.7 %, 13.4 pm.
    6. The two half maps and the full map are reconstructed with the refined geometry; the half
       maps' Fourier shell correlation gives the resolution.

    The per-frame weights only select frames (the shared reconstruction weighs all images alike).
    Phase-flipped images keep ``|sin χ|`` of each frequency; a reconstruction that fits them as
    they are fits a particle without its lowest frequencies, which positivity turns into a
    hollow core (the demo's p001, same orientations and half maps: 75 % of the atoms traced in
    the plain map, 96 % through the transfer). So with `ctf` the final map and half maps are the
    Wiener-regularised solution through the transfer (:func:`nanorecon.refine.reconstruct`,
    `transfer`). The maps inside the search and refinement stay plain: their projections are
    compared with the images under the images' own ``|sin χ|`` (on the demo, Wiener maps there
    left the orientations no better: p001 3.6° against 2.1°).

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Centred, phase-flipped particle boxes (y, x) of consecutive frames, numpy or cupy.
    pixel_size_A : float
        Pixel edge [Å].
    frame_rate_hz : float, optional
        Frames per second (sets the unit of ``D_r``).
    frames : array_like of int, shape (n,), optional
        Frame number of each image (``0 … n − 1`` when None); sets the half-set blocks and the
        time axis of the interpolation of unused frames.
    used : array_like of bool, shape (n,), optional
        Frames allowed into the map (all when None).
    weights : array_like of shape (n,), optional
        Frame quality weights; frames at or below `min_weight` are dropped.
    min_weight : float, optional
        Weight a frame must exceed to be used.
    contrast : {"dark", "bright"}, optional
        How atoms appear in `images`. Phase-flipped weak-phase images
        (``I = 1 − 2 φ ⊛ F⁻¹[sin χ]``, flipped by ``sign(sin χ)``) show atoms dark, so the
        default negates them to make the density positive.
    ctf : dict, optional
        Optics of the phase flipping (``voltage_kV``, ``defocus_A``, ``cs_mm``): comparisons
        are weighted by ``|sin χ|``, and the final map and half maps are reconstructed through
        that transfer with a Wiener term (the particle's potential, not its ``|CTF|``-filtered
        image); None: images without a CTF (plain maps).
    wiener_constant : float, optional
        ``λ`` of the final maps' Wiener term, relative to the best-transferred frequency (with
        `ctf`).
    particle_radius_A : float, optional
        Radius of the circular mask and spherical support [Å]; ``0.45 N`` pixels when None.
    use_prior : bool, optional
        Rotational-diffusion prior in the ab initio search.
    seed : int, optional
        Seed of the first ab initio start.
    n_starts : int, optional
        Ab initio starts.
    abinitio : {"search", "crystal"}, optional
        Ab initio method (see above).
    abinitio_options : dict, optional
        Further keyword arguments of :func:`ab_initio_orientations` or
        :func:`crystal_orientations` (``"crystal"`` needs ``lattice_parameter_A``).
    refinement : {"local", "matching"}, optional
        Refinement of each half set after the ab initio step (see above).
    local_options : dict, optional
        Further keyword arguments of :func:`refine_locally` (its band schedule, search ball,
        shift range and prior width).
    joint_resolution_A : float or None, optional
        With ``"local"``: the iterations whose band stops short of this resolution [Å] refine
        all frames together, before the half sets go on alone (None: the half sets alone from
        the ab initio orientations). The default keeps the shared stage below lattice
        resolution (fcc metals' {111} fringes lie at 2.2–2.4 Å), so the half maps still agree
        at their lattice fringes only if the orientations are right.
    wide_research : bool, optional
        With ``"local"``: after the half sets' refinement, re-search all frames in a wide ball at
        lattice resolution and let each half set end on its own from there (step 3 above).
    high_resolution_rounds : int, optional
        With ``"local"``: at most this many rounds past the last band (step 4 above); 0: none.
    late_research : bool, optional
        With those rounds: search all frames again in a wide ball at the first round's band,
        from the best run past 2 Å, and run the rounds again; the better scoring map is kept
        (step 5 above).
    mask_from_map : bool, optional
        With those rounds: their maps' support is the particle's own mask
        (:func:`particle_mask` of the map of all frames at 2.0 Å) instead of the sphere of
        `particle_radius_A`, and each frame's comparison mask that mask's footprint instead of
        the circle.
    n_rounds : int, optional
        Projection-matching rounds (the first refines shifts only); ``"matching"`` only.
    n_iterations : int, optional
        Reconstruction iterations per round with ``"matching"``; each half map and the full map
        get twice that.
    max_shift_A : float, optional
        With ``"matching"``: bound on the box-centring error its first round measures [Å] (the
        boxes are cut around tracked positions; a crystal's correlation peak repeats one lattice
        vector away).
    lowpass_A, final_lowpass_A : float, optional
        Matching resolution of the first and last rounds [Å] (None: two pixels);
        ``"matching"`` only.
    atomic_model_reference : bool, optional
        Match against Gaussian atoms at the map's peaks rather than the map itself;
        ``"matching"`` only.
    half_set_block_frames : int, optional
        Consecutive frames per half-set block (fewer when the particle has under four blocks of
        used frames).
    map_score : callable, optional
        ``map_score(volume, (half1, half2)) -> float``, lower is better: a truth-free score of a
        final map (the CLI's: the lattice site score of the map's traced atoms [Å]) that
        chooses between the runs of the rounds past 2 Å (steps 4 and 5) and between the
        refined starts (`refine_starts`) in place of their FSC; NaN ranks last.
        The maps are in the images' array module.
    refine_starts : int, optional
        With ``abinitio="crystal"``: refine this many ab initio starts (the chosen one, then the
        best scoring others) through steps 2–6 and keep the one whose final map `map_score`
        ranks first (then the finer FSC). Correct chains of one particle's starts differ by
        4–11°, and which of them refines best shows only in the refined maps. Costs about
        `refine_starts` times the refinement.
    n_threads : int, optional
        CPU threads per NUFFT (one is fastest for small boxes; parallelise over particles).
    callback : callable, optional
        Called as ``callback(stage, info)`` after the ab initio step (``"abinitio"``), each
        refinement round or local-search iteration (``"refine"``, the history row) and the half
        maps (``"halves"``).

    Returns
    -------
    ParticleReconstruction

    References
    ----------
    .. [1] Kim, B. H. et al. Critical differences in 3D atomic structure of individual ligand-
       protected nanocrystals in solution. Science 368, 60–67 (2020).
       :doi:`10.1126/science.aax3233`
    """
    images = _image_stack(images, pixel_size_A, min_images=1)
    xp = get_array_module(images)
    n, size = images.shape[0], images.shape[1]
    if contrast not in ("dark", "bright"):
        raise ValueError(f"contrast must be 'dark' or 'bright', got {contrast!r}")
    if refinement not in ("local", "matching"):
        raise ValueError(f"refinement must be 'local' or 'matching', got {refinement!r}")
    if abinitio not in ("crystal", "search"):
        raise ValueError(f"abinitio must be 'crystal' or 'search', got {abinitio!r}")
    if refine_starts < 1 or refine_starts > n_starts:
        raise ValueError(f"refine_starts must be 1 … n_starts ({n_starts}), got {refine_starts}")
    if refine_starts > 1 and abinitio != "crystal":
        raise ValueError("refine_starts > 1 needs abinitio='crystal'")
    frames = np.arange(n) if frames is None else np.asarray(frames, dtype=np.int64)
    keep = np.ones(n, bool) if used is None else np.asarray(used, dtype=bool).copy()
    if weights is not None:
        keep &= np.asarray(weights, dtype=float) > min_weight
    for name, values in (("frames", frames), ("used", keep)):
        if values.shape != (n,):
            raise ValueError(f"{name} must have one value per image ({n}), got {values.shape}")
    if np.any(np.diff(frames) <= 0):
        raise ValueError("frames must increase strictly (images in time order)")
    index = np.flatnonzero(keep)
    # Short tracks get shorter blocks, so that each half holds at least two of them.
    block = max(1, min(half_set_block_frames, index.size // 4))
    halves_all = time_block_half_sets(frames, block_frames=block)
    halves = halves_all[index]
    if index.size < 8 or not (np.any(halves == 1) and np.any(halves == 2)):
        raise ValueError(
            f"need at least 8 used frames in both half sets, got {index.size} used of {n}"
        )

    dtype = supported_float_type(images.dtype)
    radius_A = 0.45 * size * pixel_size_A if particle_radius_A is None else particle_radius_A
    radius_px = float(radius_A) / pixel_size_A
    stack = images[xp.asarray(index)].astype(dtype, copy=False)
    if contrast == "dark":
        stack = -stack
    # Zero the solvent level: the reconstruction assumes density vanishes outside the support.
    stack = stack - _outside_median(stack, radius_px)

    options = dict(abinitio_options or {})
    if ctf is not None:
        options["ctf"] = ctf
    ctf = options.get("ctf")
    transfer = None if ctf is None else phase_flipped_transfer(ctf)
    find_orientations = crystal_orientations if abinitio == "crystal" else ab_initio_orientations
    if refine_starts > 1:
        options["n_alternatives"] = refine_starts - 1
    initial = find_orientations(
        stack,
        pixel_size_A=pixel_size_A,
        frame_rate_hz=frame_rate_hz,
        use_prior=use_prior,
        n_starts=n_starts,
        seed=seed,
        mask_radius_A=radius_A,
        n_threads=n_threads,
        frame_gaps=np.diff(frames[index]),
        **options,
    )
    if callback is not None:
        callback(
            "abinitio",
            {
                "mean_score": float(np.mean(initial.scores)),
                "D_r": initial.rotational_diffusion_rad2_per_s,
            },
        )

    def refine_from(initial: Any) -> ParticleReconstruction:
        """Steps 2–5 from one ab initio solution."""
        support = _sphere(size, radius_px, xp)
        reference = None
        if atomic_model_reference:

            def reference(volume: Any) -> Any:
                return atomic_reference(volume, voxel_size_A=pixel_size_A)

        # Gold standard: at lattice resolution each half set is refined on its own against a map of
        # its own frames, so neither half map is shaped by the other's frames (a joint
        # refinement against one, especially an atomic, reference makes the halves agree on its
        # features whether or not the orientations are right, and the FSC would not tell).
        rotations = initial.rotations
        histories = []
        diffusion_prior = initial.rotational_diffusion_rad2_per_s if use_prior else None
        if diffusion_prior is not None and not np.isfinite(diffusion_prior):
            diffusion_prior = None
        local = dict(local_options or {})
        bands = tuple(local.pop("bands_A", LOCAL_BANDS_A))
        ball = (
            float(local.pop("search_radius_deg", LOCAL_BALL_DEG[0])),
            float(local.pop("search_step_deg", LOCAL_BALL_DEG[1])),
        )
        shrink = float(local.pop("shrink", LOCAL_SHRINK))
        frame_numbers = frames[index]

        def search(
            members: np.ndarray,
            start: Rotation,
            start_shifts_A: np.ndarray | None,
            stage_bands: tuple[float, ...],
            stage_ball: tuple[float, float],
            stage_shrink: float,
            stage: str,
            half_set: int,
            support: Any = None,
            weigh_by_transfer: bool = True,
        ) -> Any:
            """refine_locally on the used frames `members`, its history rows tagged."""

            def report(i: int, row: Any) -> None:
                if callback is not None:
                    callback("refine", {"half_set": half_set, "stage": stage, **dict(row)})

            logger.info(
                "%s stage, %s (%d frames): bands %s Å",
                stage,
                f"half set {half_set}" if half_set else "all frames",
                members.size,
                ", ".join(f"{band:.2f}" for band in stage_bands),
            )
            refined = refine_locally(
                stack[xp.asarray(members)],
                start,
                pixel_size_A=pixel_size_A,
                rotational_diffusion_rad2_per_s=diffusion_prior,
                frame_rate_hz=frame_rate_hz,
                frame_gaps=np.diff(frame_numbers[members]),
                shifts_A=start_shifts_A,
                mask_radius_A=radius_A,
                support=support,
                ctf=ctf if weigh_by_transfer else None,
                n_threads=n_threads,
                callback=report,
                bands_A=stage_bands,
                search_radius_deg=stage_ball[0],
                search_step_deg=stage_ball[1],
                shrink=stage_shrink,
                **local,
            )
            histories.append(refined.history.assign(half_set=half_set, stage=stage))
            return refined

        everyone = np.arange(index.size)
        start_shifts = initial.shifts_A
        n_joint = 0
        if refinement == "local" and joint_resolution_A is not None:
            n_joint = min(sum(1 for band in bands if band > joint_resolution_A), len(bands) - 1)
        if n_joint:
            # Shared stage below lattice resolution (the gold standard of RELION-type refinements
            # starts the halves from one low-resolution model the same way).
            joint = search(
                everyone, rotations, start_shifts, bands[:n_joint], ball, shrink, "shared", 0
            )
            rotations, start_shifts = joint.rotations, joint.shifts_A
            # the halves go on with the ball where the shared stage left it
            ball = (
                ball[0] * shrink ** max(n_joint - 1, 0),
                ball[1] * shrink ** max(n_joint - 1, 0),
            )
            bands = bands[n_joint:]
        if start_shifts is None:
            start_shifts = np.zeros((index.size, 2))

        def refine_halves(
            start: Rotation,
            start_shifts_A: np.ndarray,
            stage_bands: tuple[float, ...],
            stage_ball: tuple[float, float],
            stage_shrink: float,
            stage: str,
        ) -> tuple[Rotation, np.ndarray, np.ndarray]:
            """Each half set refined alone from `start`, held in its register."""
            refined_rotations = [None] * index.size
            refined_shifts = np.zeros((index.size, 2))
            refined_scores = np.zeros(index.size)
            for half_set in (1, 2):
                members = np.flatnonzero(halves == half_set)
                if refinement == "local":
                    refined = search(
                        members,
                        start[members],
                        start_shifts_A[members],
                        stage_bands,
                        stage_ball,
                        stage_shrink,
                        stage,
                        half_set,
                    )
                else:
                    refined = refine_orientations(
                        stack[xp.asarray(members)],
                        start[members],
                        None,
                        voxel_size_A=pixel_size_A,
                        n_rounds=n_rounds,
                        n_iterations=n_iterations,
                        max_shift_A=max_shift_A,
                        lowpass_A=lowpass_A,
                        final_lowpass_A=final_lowpass_A,
                        reference=reference,
                        support=support,
                        n_threads=n_threads,
                        callback=lambda i, row, h=half_set: (
                            None
                            if callback is None
                            else callback("refine", {"half_set": h, "stage": stage, **dict(row)})
                        ),
                    )
                    histories.append(refined.history.assign(half_set=half_set, stage=stage))
                half_rotations, half_shifts = refined.rotations, asnumpy(refined.shifts_A)
                if refinement == "local":
                    # keep both halves in the starting map's register (see _hold_register)
                    half_rotations, half_shifts = _hold_register(
                        half_rotations, half_shifts, start[members], start_shifts_A[members]
                    )
                for k, member in enumerate(members):
                    refined_rotations[member] = half_rotations[k]
                refined_shifts[members] = half_shifts
                refined_scores[members] = asnumpy(refined.scores)
            return Rotation.concatenate(refined_rotations), refined_shifts, refined_scores

        refined_rotations, shifts, scores = refine_halves(
            rotations, start_shifts, bands, ball, shrink, "halves"
        )

        def maps(
            geometry: Rotation, centres_A: np.ndarray, *, full_map: bool, within: Any = None
        ) -> Any:
            """Half maps and FSC (and the full map) of the used frames, through the transfer;
            within the sphere, or the support `within`."""
            return half_set_reconstruction(
                stack,
                geometry,
                voxel_size_A=pixel_size_A,
                shifts_A=centres_A,
                half_sets=halves - 1,
                full_map=full_map,
                n_iterations=2 * n_iterations,
                support=support if within is None else within,
                n_threads=n_threads,
                **reconstruction_transfer(transfer, wiener_constant),
            )

        independent_resolution_A = None
        if refinement == "local" and (wide_research or high_resolution_rounds > 0):
            # The FSC of the halves as refined apart: the stages below share all frames at lattice
            # resolution, which lifts a wrong solution's FSC too (the demo's twinned decahedron:
            # 2.8 Å before, 2.1 Å after the re-search), so this one is the test of the solution.
            independent_resolution_A = maps(refined_rotations, shifts, full_map=False).resolution_A
            logger.info(
                "FSC 0.143 of the half sets refined apart: %.2f Å", independent_resolution_A
            )
        if refinement == "local" and wide_research:
            # Stretches of frames can sit on a wrong optimum 10–25° away that no half map alone
            # pulls them out of; the map of all refined frames, searched in a wide ball at lattice
            # resolution, does. Each half set then ends on its own from there.
            research = search(
                everyone,
                refined_rotations,
                shifts,
                RESEARCH_BANDS_A,
                RESEARCH_BALL_DEG,
                RESEARCH_SHRINK,
                "re-search",
                0,
            )
            refined_rotations, shifts, scores = refine_halves(
                research.rotations,
                research.shifts_A,
                POLISH_BANDS_A,
                POLISH_BALL_DEG,
                POLISH_SHRINK,
                "polish",
            )
        mask, map_support, half = None, None, None
        variant_table = None
        rounds = ()
        if refinement == "local" and high_resolution_rounds > 0:
            finest = min(float(h.lowpass_A.min()) for h in histories)
            rounds = high_resolution_bands(
                finest, rounds=high_resolution_rounds, pixel_size_A=pixel_size_A
            )
        if rounds:
            # Past the {200} fringes all frames refine together: each half set alone against its
            # own half map lost the orientations there (see step 4 of the docstring).
            if mask_from_map:
                mask = _own_mask(
                    stack, refined_rotations, shifts, pixel_size_A, radius_A, n_threads
                )
            if mask is not None:
                # The own mask ends at the outer atoms' centres where the fringes thin out
                # (vertices); the final maps, which the atoms are traced in, keep their outer side.
                map_support = grow_mask(mask, FINAL_MAP_MARGIN_A, pixel_size_A) & support
            # Comparisons weighted by |sin χ| or not: on the demo movie each won on one particle
            # by far, and the final maps' FSC told which (step 4 of the docstring).
            variants = {"high-resolution": False}
            if ctf is not None:
                variants = {"high-resolution-weighted": True, "high-resolution-unweighted": False}
            score_maps = map_score is not None and (len(variants) > 1 or late_research)

            def run_rounds(name: str, weighted: bool, geometry: tuple) -> tuple:
                """The rounds past 2 Å from `geometry`; the run's name, geometry, maps, score."""
                ball = HIGH_RESOLUTION_BALL_DEG
                for band in rounds:
                    refined = search(
                        everyone,
                        geometry[0],
                        geometry[1],
                        (band,) * HIGH_RESOLUTION_ITERATIONS,
                        ball,
                        HIGH_RESOLUTION_SHRINK,
                        name,
                        0,
                        support=mask,
                        weigh_by_transfer=weighted,
                    )
                    geometry = (refined.rotations, refined.shifts_A, asnumpy(refined.scores))
                    ball = (ball[0] / 2, ball[1] / 2)
                outcome = maps(geometry[0], geometry[1], full_map=True, within=map_support)
                score = (
                    float(map_score(outcome.volume, tuple(outcome.half_maps)))
                    if score_maps
                    else float("nan")
                )
                logger.info(
                    "%s rounds: FSC 0.143 at %.2f Å, map score %.4g",
                    name,
                    outcome.resolution_A,
                    score,
                )
                return name, geometry, outcome, score

            outcomes = [
                run_rounds(name, weighted, (refined_rotations, shifts, scores))
                for name, weighted in variants.items()
            ]
            # the stages each run's geometry went through
            paths = {name: {name} for name in variants}
            if late_research:
                # Stretches of frames 10–25° off can outlast the re-search at 2.5–2.2 Å and the
                # rounds' small balls; the best map past 2 Å shows them (step 5 of the docstring).
                base, geometry = _best_run(outcomes)[:2]
                name = f"{base}-re-searched"
                research = search(
                    everyone,
                    geometry[0],
                    geometry[1],
                    (rounds[0],) * LATE_RESEARCH_ITERATIONS,
                    RESEARCH_BALL_DEG,
                    RESEARCH_SHRINK,
                    name,
                    0,
                    support=mask,
                    weigh_by_transfer=variants[base],
                )
                researched = (research.rotations, research.shifts_A, asnumpy(research.scores))
                outcomes.append(run_rounds(name, variants[base], researched))
                paths[name] = {name, base}
            kept, (refined_rotations, shifts, scores), half, _ = _best_run(outcomes)
            if len(outcomes) > 1:
                scored = any(np.isfinite(o[3]) for o in outcomes)
                logger.info(
                    "kept the %s rounds (%s)",
                    kept,
                    "the better map score" if scored else "the finer FSC",
                )
            variant_table = pd.DataFrame(
                {
                    "variant": [o[0] for o in outcomes],
                    "resolution_A": [float(o[2].resolution_A) for o in outcomes],
                    "score": [o[3] for o in outcomes],
                    "kept": [o[0] == kept for o in outcomes],
                }
            )
            discarded = set().union(*paths.values()) - paths[kept]
            histories = [h.assign(kept=~h.stage.isin(discarded)) for h in histories]
        if half is None:
            half = maps(refined_rotations, shifts, full_map=True)
        if callback is not None:
            callback("halves", {"resolution_A": half.resolution_A})
        diffusion = _diffusion(refined_rotations, frames[index], frame_rate_hz)
        logger.info(
            "%d of %d frames used; FSC 0.143 at %.2f Å; D_r %.4g rad²/s",
            index.size,
            n,
            half.resolution_A,
            diffusion,
        )

        final_score = float("nan")
        if variant_table is not None:
            final_score = float(variant_table.loc[variant_table.kept, "score"].iloc[0])
        if not np.isfinite(final_score) and map_score is not None and refine_starts > 1:
            final_score = float(map_score(half.volume, tuple(half.half_maps)))
        all_rotations, all_shifts = _fill_unused(refined_rotations, shifts, frames, index)
        history = pd.concat(histories, ignore_index=True)
        if "kept" not in history:
            history["kept"] = True
        all_scores = np.full(n, np.nan)
        all_scores[index] = scores
        return ParticleReconstruction(
            rotations=all_rotations,
            shifts_A=all_shifts,
            scores=all_scores,
            used=keep,
            half_sets=halves_all,
            volume=half.volume,
            half_maps=half.half_maps,
            fsc=half.fsc,
            resolution_A=float(half.resolution_A),
            independent_resolution_A=float(
                half.resolution_A if independent_resolution_A is None else independent_resolution_A
            ),
            starts=initial.starts,
            rotational_diffusion_rad2_per_s=diffusion,
            abinitio_rotational_diffusion_rad2_per_s=float(initial.rotational_diffusion_rad2_per_s),
            history=history,
            mask=map_support,
            score=final_score,
            **({} if variant_table is None else {"variants": variant_table}),
        )

    candidates = [initial, *initial.alternatives]
    order = _start_order(initial.starts)
    refined = []
    for k, candidate in enumerate(candidates):
        if len(candidates) > 1:
            logger.info("refining ab initio start %d (%d of %d)", order[k], k + 1, len(candidates))
        refined.append(refine_from(candidate))
    best = min(
        range(len(refined)), key=lambda k: _variant_rank(refined[k].score, refined[k].resolution_A)
    )
    if len(refined) > 1:
        logger.info(
            "kept the map refined from ab initio start %d (map scores %s)",
            order[best],
            ", ".join(f"start {order[k]} {r.score:.4g}" for k, r in enumerate(refined)),
        )
    table = pd.DataFrame(
        {
            "start": order[: len(refined)],
            "resolution_A": [r.resolution_A for r in refined],
            "independent_resolution_A": [r.independent_resolution_A for r in refined],
            "score": [r.score for r in refined],
            "kept": [k == best for k in range(len(refined))],
        }
    )
    # each start's refined figures beside its ab initio ones (NaN: not refined)
    starts = initial.starts.merge(
        table.rename(
            columns={
                "resolution_A": "refined_resolution_A",
                "independent_resolution_A": "refined_independent_resolution_A",
                "score": "refined_score",
            }
        ),
        on="start",
        how="left",
    )
    starts["kept"] = starts["kept"].eq(True)
    # every refined start's high-resolution runs, in the order their maps were scored
    variants = pd.concat(
        [
            r.variants.assign(start=order[k], kept=r.variants["kept"].astype(bool) & (k == best))
            for k, r in enumerate(refined)
            if len(r.variants)
        ]
        or [refined[best].variants],
        ignore_index=True,
    )
    variants.insert(0, "start", variants.pop("start"))
    return replace(refined[best], candidates=table, starts=starts, variants=variants)


def _start_order(starts: pd.DataFrame) -> list[int]:
    """The chosen start, then the others from the best ``mean_score`` (the order in which
    :func:`crystal_orientations` finishes its alternatives)."""
    chosen = starts["chosen"].to_numpy(dtype=bool)
    first = [int(k) for k in np.flatnonzero(chosen)]
    others = np.argsort(-starts["mean_score"].to_numpy(dtype=float), kind="stable")
    return first + [int(k) for k in others if not chosen[k]]


def _best_run(runs: list[tuple]) -> tuple:
    """The run ``(name, geometry, maps, score)`` that ranks first by :func:`_variant_rank`."""
    return min(runs, key=lambda run: _variant_rank(run[3], run[2].resolution_A))


def _variant_rank(score: float, resolution_A: float) -> tuple[float, float]:
    """Sort key of a high-resolution run: its map score (lower is better), then its FSC; a score
    or FSC that could not be measured ranks last."""
    return (
        score if np.isfinite(score) else np.inf,
        resolution_A if np.isfinite(resolution_A) else np.inf,
    )


def high_resolution_bands(
    finest_band_A: float, *, rounds: int, pixel_size_A: float
) -> tuple[float, ...]:
    """Bands of the rounds past `finest_band_A` [Å]: each :data:`HIGH_RESOLUTION_FRACTION` of
    the last, down to :data:`HIGH_RESOLUTION_MIN_BAND_PX` pixels, none repeated.

    Examples
    --------
    >>> high_resolution_bands(2.0, rounds=3, pixel_size_A=0.36)
    (1.7, 1.445, 1.228)
    >>> high_resolution_bands(2.0, rounds=3, pixel_size_A=0.7)  # 2.1 pixels: 1.47 Å
    (1.7, 1.47)
    """
    bands: list[float] = []
    band = finest_band_A
    for _ in range(rounds):
        band = max(HIGH_RESOLUTION_FRACTION * band, HIGH_RESOLUTION_MIN_BAND_PX * pixel_size_A)
        if band >= (bands[-1] if bands else finest_band_A) - 1e-3:
            break
        bands.append(round(band, 3))
    return tuple(bands)


def _own_mask(
    images: Any,
    rotations: Rotation,
    shifts_A: np.ndarray,
    pixel_size_A: float,
    radius_A: float,
    n_threads: int | None,
) -> Any:
    """:func:`particle_mask` of the plain map of all frames at 2.0 Å, on the images' grid.

    None (the sphere of `radius_A` stays) when the pixels are too coarse for the fringe band or
    the map's mask is implausibly small (under a tenth of the sphere).
    """
    size = images.shape[1]
    stage = _Stage(
        _shift_images(images, shifts_A, pixel_size_A), pixel_size_A, 2.0, radius_A, n_threads
    )
    longest, shortest = FRINGE_BAND_A[0], max(FRINGE_BAND_A[1], 2 * stage.pixel_size_A)
    if shortest >= longest:
        logger.warning(
            "pixels of %.2f Å are too coarse for the fringe band %.1f–%.1f Å: the rounds past "
            "2 Å keep the sphere of %.1f Å as support",
            pixel_size_A,
            *FRINGE_BAND_A,
            radius_A,
        )
        return None
    volume = stage.reconstruct(rotations, positivity=True, n_iterations=10)
    try:
        mask = particle_mask(
            volume,
            voxel_size_A=stage.pixel_size_A,
            support=stage.support,
            band_A=(longest, shortest),
        )
    except ValueError as error:
        logger.warning("no particle mask (%s): the sphere of %.1f Å stays", error, radius_A)
        return None
    mask = resample_mask(mask, size, stage.pixel_size_A, pixel_size_A)
    volume_A3 = float(mask.sum()) * pixel_size_A**3
    sphere_A3 = 4 / 3 * np.pi * radius_A**3
    if volume_A3 < 0.1 * sphere_A3:
        logger.warning(
            "particle mask of %.0f Å³ is under a tenth of the %.1f Å sphere: the sphere stays",
            volume_A3,
            radius_A,
        )
        return None
    xp = get_array_module(mask)
    offsets = (xp.arange(size) - size // 2) * pixel_size_A
    reach = xp.sqrt(
        offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
    )
    logger.info(
        "particle mask: %.0f Å³ (a sphere of %.1f Å radius), reaching %.1f Å from the centre "
        "(the support sphere: %.1f Å)",
        volume_A3,
        (3 * volume_A3 / (4 * np.pi)) ** (1 / 3),
        float(reach[mask].max()),
        radius_A,
    )
    return mask


def _hold_register(
    rotations: Rotation, shifts_A: np.ndarray, start_rotations: Rotation, start_shifts_A: np.ndarray
) -> tuple[Rotation, np.ndarray]:
    """Undo a half set's drift as a whole from its starting geometry: a common turn and 3D shift.

    Turning every frame's orientation by one rotation ``G`` of the map frame, or shifting every
    frame by the projection of one 3D vector ``D``, moves the map without changing how well it
    fits its frames, so nothing but the start holds a half set there; two halves that drift
    apart by a few tenths of an ångström blur their sum and lose their shared atoms. ``G`` is
    the mean of ``R_start⁻¹ R`` over frames; ``D`` the least-squares solution of
    ``s − s_start = P R D`` (``P``: the projection on the image plane). Each half is corrected
    with its own frames only, so the half sets stay independent.
    """
    turn = (start_rotations.inv() * rotations).mean()
    rotations = rotations * turn.inv()
    moved = np.asarray(shifts_A, float) - np.asarray(start_shifts_A, float)
    in_plane = rotations.as_matrix()[:, :2, :]  # (n, 2, 3): map vector → image (x, y)
    offset, *_ = np.linalg.lstsq(in_plane.reshape(-1, 3), moved.reshape(-1), rcond=None)
    logger.info(
        "half set register: turned back %.2f deg, shifted back %.2f Å",
        np.degrees(turn.magnitude()),
        float(np.linalg.norm(offset)),
    )
    return rotations, np.asarray(shifts_A, float) - in_plane @ offset


def _diffusion(rotations: Rotation, frames: np.ndarray, frame_rate_hz: float) -> float:
    """``D_r`` from the longest run of consecutive frames (the estimator assumes equal steps)."""
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    runs = np.split(np.arange(len(frames)), breaks)
    longest = max(runs, key=len)
    if len(longest) < 5:
        return float("nan")
    estimate = estimate_rotational_diffusion(rotations[longest], frame_rate_hz=frame_rate_hz)
    return float(estimate.rotational_diffusion_rad2_per_s)


def _fill_unused(
    rotations: Rotation, shifts_A: np.ndarray, frames: np.ndarray, index: np.ndarray
) -> tuple[Rotation, np.ndarray]:
    """Geometry of every frame: the used frames' own, slerp / linear in time in between."""
    times = frames[index].astype(float)
    query = np.clip(frames.astype(float), times[0], times[-1])
    all_rotations = Slerp(times, rotations)(query)
    shifts = np.stack([np.interp(query, times, shifts_A[:, i]) for i in range(2)], axis=1)
    return all_rotations, shifts
