"""Ab initio orientations of a crystalline particle: each frame matched to an ideal crystal."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module, supported_float_type
from ..refine import reconstruct
from ..simulate import atoms_to_volume
from ._abinitio import (
    AbInitioResult,
    _consensus,
    _frame_gaps,
    _grid_viterbi,
    _image_stack,
    _log_likelihood,
    _outside_median,
    _sphere,
    _spread_deg,
    _Stage,
    so3_grid,
)
from ._local import _disk, _shift_images, _shift_kernel
from ._prior import estimate_rotational_diffusion, smooth_orientations

__all__ = ["CUBIC_GROUP", "crystal_orientations", "crystal_reference", "fundamental_zone"]

logger = logging.getLogger(__name__)

#: Rotation group O of the cubic lattices: a crystal's orientation is known only modulo it.
CUBIC_GROUP = Rotation.create_group("O")

# Half turn about the beam: a centrosymmetric map projects the same at R and at C₂z R.
_HALF_TURN_Z = np.diag([-1.0, -1.0, 1.0])

#: Sites of the conventional cubic cell, in lattice parameters.
_BASES = {
    "fcc": np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    "bcc": np.array([[0, 0, 0], [0.5, 0.5, 0.5]]),
    "sc": np.array([[0, 0, 0]]),
}


def crystal_reference(
    size: int,
    voxel_size_A: float,
    *,
    lattice_parameter_A: float,
    radius_A: float,
    structure: str = "fcc",
    atom_sigma_A: float = 0.45,
) -> np.ndarray:
    """Map of an ideal crystal sphere: Gaussian atoms on a cubic lattice about an atom.

    Parameters
    ----------
    size : int
        Box edge N [voxels].
    voxel_size_A : float
        Voxel edge [Å].
    lattice_parameter_A : float
        Cubic lattice parameter a [Å].
    radius_A : float
        Sphere radius [Å]; atoms within it of the central atom (at voxel ``N // 2``) are kept.
    structure : {"fcc", "bcc", "sc"}, optional
        Lattice.
    atom_sigma_A : float, optional
        Gaussian width of an atom [Å].

    Returns
    -------
    ndarray of shape (N, N, N)
        float32 map (z, y, x), every atom of unit weight; it has the lattice's full point group
        about the box centre, inversion included.

    Examples
    --------
    >>> volume = crystal_reference(32, 0.5, lattice_parameter_A=3.92, radius_A=4.0)
    >>> volume.shape, round(float(volume.sum()))  # 13 atoms: the centre and its 12 neighbours
    ((32, 32, 32), 13)
    """
    if structure not in _BASES:
        raise ValueError(f"structure must be one of {sorted(_BASES)}, got {structure!r}")
    if lattice_parameter_A <= 0 or radius_A <= 0 or voxel_size_A <= 0:
        raise ValueError(
            "lattice_parameter_A, radius_A and voxel_size_A must be positive, got "
            f"{lattice_parameter_A}, {radius_A}, {voxel_size_A}"
        )
    cells = int(np.ceil(radius_A / lattice_parameter_A)) + 1
    axis = np.arange(-cells, cells + 1)
    corners = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 1, 3)
    sites = ((corners + _BASES[structure][None]) * lattice_parameter_A).reshape(-1, 3)
    sites = sites[np.linalg.norm(sites, axis=1) <= radius_A]
    return atoms_to_volume(
        sites, np.ones(len(sites)), (size,) * 3, voxel_size_A, atom_sigma_A, dtype=np.float32
    )


def fundamental_zone(grid: Rotation, group: Rotation = CUBIC_GROUP) -> Rotation:
    """The grid rotations closer to the identity than any of their equivalents ``R g``.

    Parameters
    ----------
    grid : Rotation
        Rotations covering SO(3) (e.g. :func:`so3_grid`).
    group : Rotation, optional
        Point group of the map (rotations in its frame, identity included).

    Returns
    -------
    Rotation
        About ``len(grid) / len(group)`` rotations, one per class of equivalent orientations.
    """
    closeness = np.stack([np.abs((grid * g).as_quat()[:, 3]) for g in group], axis=1)
    identity = int(np.argmin(group.magnitude()))
    return grid[np.argmax(closeness, axis=1) == identity]


def crystal_orientations(
    images: Any,
    *,
    pixel_size_A: float,
    lattice_parameter_A: float,
    structure: str = "fcc",
    frame_rate_hz: float = 1.0,
    use_prior: bool = True,
    n_starts: int = 3,
    seed: int = 0,
    n_grid: int = 134_000,
    lowpass_A: float = 1.8,
    radii_A: Sequence[float] | None = None,
    lattice_scales: Sequence[float] = (0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03),
    step_deg: float = 4.0,
    shift_range_A: float = 1.5,
    shift_step_A: float = 0.375,
    shift_sigma_A: float = 0.8,
    symmetry_rounds: int = 3,
    symmetry_band_A: float = 2.5,
    mask_radius_A: float | None = None,
    ctf: dict | None = None,
    frame_gaps: ArrayLike | None = None,
    positivity: bool = True,
    final_iterations: int = 30,
    n_alternatives: int = 0,
    n_threads: int | None = 1,
) -> AbInitioResult:
    """Orientations of a crystalline particle's frames from its lattice, with no model of the particle.

    A nanocrystal's frames are dominated, at lattice resolution, by its lattice fringes, whose
    directions give the crystal's orientation in each frame, whatever the particle's shape.
    Every frame is therefore scored against an ideal crystal sphere
    (:func:`crystal_reference`: the sheet's element gives the structure and bulk lattice
    parameter) over one fundamental zone of the lattice's point group of a fine SO(3) grid
    (``n_grid`` rotations over SO(3), 1/24 of them scored for a cubic lattice), each at every
    shift within `shift_range_A` of the box centre (a Gaussian centring prior of width
    `shift_sigma_A`), in the band up to `lowpass_A` (|CTF|-weighted as in
    :func:`ab_initio_orientations`; the default keeps the fcc {111} and {200} fringes). The
    zone's states are linked by the rotational-diffusion prior, with distances taken modulo the
    point group, and the most probable chain (Viterbi) is unwrapped into a continuous path:
    of the equivalent orientations of each frame, the one nearest the previous frame's.

    * The sphere's radius is chosen among `radii_A`, then its lattice parameter among
      `lattice_parameter_A` times `lattice_scales`, each where the mean best correlation of
      every fifth frame with the reference, on a coarser grid, is highest (a particle's lattice
      parameter differs from bulk by up to a few per cent, and at lattice resolution a 1.5 %
      mismatch is felt).
    * Each start scores a copy of the grid turned by a random rotation (seed ``seed + k``), so
      that starts differ in how the grid cuts SO(3); starts agree when their orientations match
      after one global rotation, modulo the point group and the image-plane half turn (below).
      The chosen start is the best scoring one among those agreeing with another (as in
      :func:`ab_initio_orientations`).

    A crystal has a centre of inversion, so its projections at ``R`` and at the image-plane
    half turn ``C₂z R`` are identical (the projection of a centrosymmetric object is
    centrosymmetric): the chain follows either of the two branches, and may pass from one to
    the other where they meet; and of the lattice's equivalent orientations ``R g`` it keeps the
    one nearest the previous frame's, which need not be the particle's own after a stretch of
    weak frames. The particle itself, unlike its lattice, has neither symmetry in general. So
    the chosen chain is then made consistent with the particle's shape
    (`symmetry_rounds` rounds): a map is reconstructed from the current orientations, every
    frame is scored, in the band to `symmetry_band_A`, against the map's projections at all 48
    orientations ``R_t g`` and ``C₂z R_t g`` (``g`` in the point group) that its lattice cannot
    tell apart, and the most probable chain among them under the prior is taken (the majority
    of frames sets the map, and the others join it where the shape shows). For a particle
    as symmetric as its lattice the choice is free; its orientation errors are measured modulo
    the point group and, with a centre of inversion, the half turn (:func:`align_orientations`
    with ``symmetry`` and ``centrosymmetric``).

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Centred particle images (y, x) of consecutive frames, numpy or cupy, the particle's
        density positive (phase-flipped, atoms bright).
    pixel_size_A : float
        Pixel edge [Å].
    lattice_parameter_A : float
        Lattice parameter of the reference crystal [Å] (bulk of the sheet's element: within a few
        per cent of the particle's, which the band tolerates).
    structure : {"fcc", "bcc", "sc"}, optional
        Lattice of the reference crystal.
    frame_rate_hz : float, optional
        Frames per second; sets the unit of the diffusion constant.
    use_prior : bool, optional
        Link consecutive frames by the rotational-diffusion prior; without it every frame takes
        its best state (and its equivalent nearest the previous frame's).
    n_starts : int, optional
        Starts (grids turned by seeds ``seed, seed + 1, …``).
    seed : int, optional
        Seed of the first start (0: the grid as it is).
    n_grid : int, optional
        Rotations of the SO(3) grid (134 000: about 3° apart).
    lowpass_A : float, optional
        Band limit of the comparison [Å].
    radii_A : sequence of float, optional
        Candidate radii of the reference sphere [Å]; by default 11 values from 0.4 to 0.9 of the
        mask radius.
    lattice_scales : sequence of float, optional
        Candidate lattice parameters of the reference, relative to `lattice_parameter_A`.
    step_deg : float, optional
        RMS rotation per frame of the prior [deg]. The chain's marginal likelihood cannot set
        it: the ideal crystal's likelihoods are sharper than its mismatch with the particle
        warrants, and the evidence grows with the step (on the demo movie up to 8°, against a
        true 4.4°). The refinement estimates ``D_r`` from its own orientations.
    shift_range_A, shift_step_A : float, optional
        Radius and spacing of the centring search [Å].
    shift_sigma_A : float, optional
        Width of the Gaussian prior on a frame's centring error [Å].
    symmetry_rounds : int, optional
        Rounds choosing among each frame's lattice-equivalent orientations by the map (0: none).
    symmetry_band_A : float, optional
        Band limit of those rounds [Å].
    mask_radius_A : float, optional
        Radius of the circular mask and spherical support [Å]; 0.45 N by default.
    ctf : dict, optional
        ``voltage_kV``, ``defocus_A``, ``cs_mm`` of phase-flipped images.
    frame_gaps : array_like of int, shape (n - 1,), optional
        Frames elapsed between consecutive images; the chain's prior widens by the gap's square
        root and breaks at gaps over two frames.
    positivity : bool, optional
        Clip negative densities in the map.
    final_iterations : int, optional
        Iterations of the map reconstructed from the chosen orientations.
    n_alternatives : int, optional
        Starts other than the chosen one (the best scoring first) finished the same way
        (symmetry rounds, map) into the result's ``alternatives``, for a caller that refines
        several starts and judges them by their refined maps.
    n_threads : int, optional
        CPU threads per NUFFT.

    Returns
    -------
    AbInitioResult
        Its ``shifts_A`` are the chosen chain's centring shifts (where the lattice site nearest
        the box centre lies in each frame, the map's origin). Its ``starts`` also hold the
        reference's ``radius_A`` and ``lattice_parameter_A``; its ``history`` has one row per
        start: ``start``, ``stage`` ("crystal"), ``radius_A``
        and ``lattice_parameter_A`` of the reference, ``step_rms_deg``, ``mean_score`` (mean
        correlation of the frames with the crystal at the chain's orientations, which ranks the
        starts) and ``mean_best_score`` (at each frame's best state).

    References
    ----------
    .. [1] Kim, B. H. et al. Critical differences in 3D atomic structure of individual ligand-
       protected nanocrystals in solution. Science 368, 60–67 (2020).
       :doi:`10.1126/science.aax3233`
    """
    images = _image_stack(images, pixel_size_A, min_images=5)
    xp = get_array_module(images)
    n, size = images.shape[0], images.shape[1]
    if lattice_parameter_A <= 0:
        raise ValueError(f"lattice_parameter_A must be positive, got {lattice_parameter_A}")
    if structure not in _BASES:
        raise ValueError(f"structure must be one of {sorted(_BASES)}, got {structure!r}")
    if n_starts < 1:
        raise ValueError(f"n_starts must be at least 1, got {n_starts}")
    if step_deg <= 0:
        raise ValueError(f"step_deg must be positive, got {step_deg}")
    if symmetry_rounds < 0 or symmetry_band_A < 2 * pixel_size_A:
        raise ValueError(
            "need symmetry_rounds ≥ 0 and symmetry_band_A ≥ two pixels, got "
            f"{symmetry_rounds}, {symmetry_band_A}"
        )
    if lowpass_A < 2 * pixel_size_A:
        raise ValueError(f"lowpass_A must be at least two pixels, got {lowpass_A}")
    gaps = _frame_gaps(frame_gaps, n)
    dtype = supported_float_type(images.dtype)
    images = images.astype(dtype, copy=False)
    radius_A = 0.45 * size * pixel_size_A if mask_radius_A is None else float(mask_radius_A)
    images = images - _outside_median(images, radius_A / pixel_size_A)
    radii = np.linspace(0.4, 0.9, 11) * radius_A if radii_A is None else np.asarray(radii_A, float)
    if radii.size < 1 or np.any(radii <= 0):
        raise ValueError(f"radii_A must hold positive radii, got {radii_A}")
    scales = np.asarray(lattice_scales, dtype=float)
    if scales.size < 1 or np.any(scales <= 0):
        raise ValueError(f"lattice_scales must hold positive factors, got {lattice_scales}")

    stage = _Stage(images, pixel_size_A, lowpass_A, radius_A, n_threads, ctf)
    offsets = _disk(shift_range_A, shift_step_A)

    def reference(radius: float, lattice: float) -> Any:
        volume = crystal_reference(
            stage.size,
            stage.pixel_size_A,
            lattice_parameter_A=lattice,
            radius_A=radius,
            structure=structure,
        )
        return xp.asarray(volume).astype(dtype, copy=False)

    # The sphere's size and lattice from a fifth of the frames on a coarse grid: no chain needed.
    subset = np.arange(0, n, 5) if n >= 50 else np.arange(n)
    coarse = fundamental_zone(so3_grid(max(n_grid // 4, 2400)))

    def fit(radius: float, lattice: float) -> float:
        volume = reference(radius, lattice)
        return float(_zone_scores(stage, volume, coarse, offsets, shift_sigma_A, subset)[2].mean())

    fits = [fit(radius, lattice_parameter_A) for radius in radii]
    chosen_radius = float(radii[int(np.argmax(fits))])
    logger.info(
        "crystal reference radius %.1f Å (mean best correlation %s)",
        chosen_radius,
        ", ".join(f"{r:.1f} Å {f:.3f}" for r, f in zip(radii, fits, strict=True)),
    )
    lattices = lattice_parameter_A * scales
    fits = [fit(chosen_radius, lattice) for lattice in lattices]
    chosen_lattice = float(lattices[int(np.argmax(fits))])
    logger.info(
        "crystal reference lattice parameter %.3f Å (mean best correlation %s)",
        chosen_lattice,
        ", ".join(f"{a:.3f} Å {f:.3f}" for a, f in zip(lattices, fits, strict=True)),
    )
    volume = reference(chosen_radius, chosen_lattice)
    spacing_deg = float(np.degrees((6 * np.pi / n_grid) ** (1 / 3)))

    start_rotations, start_shifts, start_scores, history = [], [], [], []
    for start in range(n_starts):
        grid = so3_grid(n_grid)
        if seed + start:
            grid = Rotation.random(random_state=seed + start) * grid
        zone = fundamental_zone(grid)
        ll, best_offset, best = _zone_scores(
            stage, volume, zone, offsets, shift_sigma_A, np.arange(n)
        )
        chain = _ZoneChain(zone, spacing_deg, gaps)
        step = float(step_deg) if use_prior else float("nan")
        path = chain.viterbi(ll, step) if use_prior else np.argmax(ll, axis=1)
        rotations = chain.unwrap(path)
        # where the lattice site nearest the box centre lies in each frame: the map's origin
        start_shifts.append(offsets[best_offset[np.arange(n), path]])
        # the chain's own fit to the frames (the likelihoods' noise level differs between starts)
        score = float(np.mean(stage.correlation_at(volume, rotations)))
        start_rotations.append(rotations)
        start_scores.append(score)
        history.append(
            {
                "start": start,
                "stage": "crystal",
                "radius_A": chosen_radius,
                "lattice_parameter_A": chosen_lattice,
                "step_rms_deg": step,
                "mean_score": score,
                "mean_best_score": float(best.mean()),
            }
        )
        logger.info(
            "start %d (seed %d): %d zone states, RMS step %s deg, mean correlation %.4f "
            "(best states %.4f)",
            start,
            seed + start,
            len(zone),
            f"{step:g}" if np.isfinite(step) else "none",
            score,
            history[-1]["mean_best_score"],
        )

    agree_deg = 2 * spacing_deg
    chosen, agreement, mirrored = _consensus(
        start_rotations,
        np.asarray(start_scores),
        agree_deg=agree_deg,
        symmetry=CUBIC_GROUP,
        centrosymmetric=True,
    )
    starts = pd.DataFrame(
        {
            "start": np.arange(n_starts),
            "seed": seed + np.arange(n_starts),
            "mean_score": start_scores,
            "agreement_deg": agreement,
            "mirrored": mirrored,
            "agrees": agreement < min(agree_deg, _spread_deg(start_rotations[chosen]) / 2),
            "chosen": np.arange(n_starts) == chosen,
            "radius_A": chosen_radius,
            "lattice_parameter_A": chosen_lattice,
        }
    )
    for row in starts.itertuples():
        logger.info(
            "start %d: agreement with start %d %.2f deg%s",
            row.start,
            chosen,
            row.agreement_deg,
            " (chosen)" if row.chosen else "",
        )

    def finish(k: int) -> AbInitioResult:
        """Start `k`'s chain made consistent with the particle's shape, its map and scores."""
        rotations, shifts = start_rotations[k], start_shifts[k]
        # the O-equivalent orientations turn the map about its origin, which must be a lattice site
        centred = _shift_images(images, shifts, pixel_size_A)
        if symmetry_rounds > 0:
            rotations = _break_symmetry(
                _Stage(centred, pixel_size_A, symmetry_band_A, radius_A, n_threads, ctf),
                rotations,
                step_deg=step_deg if use_prior else None,
                frame_gaps=gaps,
                n_rounds=symmetry_rounds,
                positivity=positivity,
            )
        volume = reconstruct(
            images,
            rotations,
            shifts_A=shifts,
            voxel_size_A=pixel_size_A,
            n_iterations=final_iterations,
            support=_sphere(size, radius_A / pixel_size_A, xp),
            positivity=positivity,
            n_threads=n_threads,
        ).volume
        scores = _Stage(centred, pixel_size_A, lowpass_A, radius_A, n_threads, ctf).correlation_at(
            volume, rotations
        )
        step = history[k]["step_rms_deg"]
        if np.isfinite(step):
            diffusion = np.radians(step) ** 2 * frame_rate_hz / 6
        else:
            estimate = estimate_rotational_diffusion(rotations, frame_rate_hz=frame_rate_hz)
            diffusion = estimate.rotational_diffusion_rad2_per_s
        return AbInitioResult(
            rotations=rotations,
            scores=scores,
            volume=volume,
            rotational_diffusion_rad2_per_s=float(diffusion),
            starts=starts,
            start_rotations=start_rotations,
            start_volumes=[],
            search_pixel_size_A=stage.pixel_size_A,
            history=pd.DataFrame(history),
            shifts_A=shifts,
        )

    others = [int(k) for k in np.argsort(-np.asarray(start_scores), kind="stable") if k != chosen]
    result = finish(chosen)
    result.alternatives.extend(finish(k) for k in others[: max(n_alternatives, 0)])
    return result


def _zone_scores(
    stage: _Stage,
    volume: Any,
    zone: Rotation,
    offsets: np.ndarray,
    shift_sigma_A: float,
    frames: np.ndarray,
    batch: int = 150,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood (frames, zone) of each state at its best shift, centring prior included,
    the index of that shift in `offsets` (frames, zone), and each frame's best correlation."""
    xp, m = stage.xp, stage.size
    kernel = xp.asarray(_shift_kernel(m, stage.pixel_size_A, offsets))
    data = stage.data[xp.asarray(frames)]
    data_hat = xp.fft.rfft2(data.reshape(len(frames), m, m)).reshape(len(frames), -1)
    log_shift_prior = -(offsets**2).sum(axis=1) / (2 * shift_sigma_A**2)
    ll = np.empty((len(frames), len(zone)))
    best_offset = np.empty((len(frames), len(zone)), dtype=np.int32)
    best = np.full(len(frames), -np.inf)
    for first in range(0, len(zone), batch):
        states = zone[first : first + batch]
        projections = stage.prepare(stage.project(volume, states)).reshape(-1, m, m)
        ref_hat = xp.conj(xp.fft.rfft2(projections).reshape(len(states), -1))
        correlation = asnumpy(xp.real((data_hat[:, None, :] * ref_hat[None]) @ kernel))
        flat = _log_likelihood(correlation.reshape(len(frames), -1), stage.n_eff)
        flat = flat.reshape(correlation.shape) + log_shift_prior
        best_offset[:, first : first + len(states)] = np.argmax(flat, axis=2)
        ll[:, first : first + len(states)] = flat.max(axis=2)
        best = np.maximum(best, correlation.max(axis=(1, 2)))
    return ll, best_offset, best


def _break_symmetry(
    stage: _Stage,
    rotations: Rotation,
    *,
    step_deg: float | None,
    frame_gaps: np.ndarray,
    n_rounds: int,
    positivity: bool,
    batch_frames: int = 25,
) -> Rotation:
    """Each frame's orientation among the 48 its lattice allows, chosen by the map and the prior."""
    xp, n = stage.xp, stage.n_images
    group = CUBIC_GROUP.as_matrix()
    identity = int(np.argmin(CUBIC_GROUP.magnitude()))
    for round_index in range(n_rounds):
        volume = stage.reconstruct(rotations, positivity=positivity, n_iterations=10)
        matrices = rotations.as_matrix()
        # R_t g and C₂z R_t g: the half turn acts in the microscope frame, g in the map's
        candidates = np.concatenate(
            [
                np.einsum("nij,gjk->ngik", matrices, group),
                np.einsum("ij,njk,gkl->ngil", _HALF_TURN_Z, matrices, group),
            ],
            axis=1,
        )
        k = candidates.shape[1]
        correlation = np.empty((n, k))
        for first in range(0, n, batch_frames):
            index = np.arange(first, min(first + batch_frames, n))
            trial = Rotation.from_matrix(candidates[index].reshape(-1, 3, 3))
            projections = stage.prepare(stage.project(volume, trial)).reshape(len(index), k, -1)
            data = stage.data[xp.asarray(index)][:, None, :]
            correlation[index] = asnumpy((projections * data).sum(axis=2))
        ll = _log_likelihood(correlation, stage.n_eff)
        quats = Rotation.from_matrix(candidates.reshape(-1, 3, 3)).as_quat().reshape(n, k, 4)
        if step_deg is None:
            chosen = np.argmax(ll, axis=1)
        else:
            chosen, _ = smooth_orientations(
                ll,
                quats,
                rotational_diffusion_rad2_per_s=np.radians(step_deg) ** 2 / 6,
                frame_gaps=frame_gaps,
            )
        rotations = Rotation.from_matrix(candidates[np.arange(n), chosen])
        changed = int(np.count_nonzero(chosen != identity))
        logger.info(
            "symmetry round %d: %d of %d frames moved to another lattice-equivalent orientation "
            "(%d to the half-turned branch), mean correlation %.4f",
            round_index,
            changed,
            n,
            int(np.count_nonzero(chosen >= len(group))),
            float(correlation[np.arange(n), chosen].mean()),
        )
        if changed == 0:
            break
    return rotations


class _ZoneChain:
    """Hidden Markov chain over the fundamental-zone states, distances modulo the point group."""

    def __init__(self, zone: Rotation, spacing_deg: float, gaps: np.ndarray):
        self.zone = zone
        self.spacing_deg = spacing_deg
        self.broken = gaps > 2

    def neighbours(self, radius_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """Zone states within `radius_deg` of each (modulo the group): indices and angles [rad]."""
        quats = self.zone.as_quat()
        copies = np.concatenate([(self.zone * g).as_quat() for g in CUBIC_GROUP])
        copies = np.concatenate([copies, -copies])
        pairs = cKDTree(copies).query_ball_point(quats, 2 * np.sin(np.radians(radius_deg) / 4))
        width = max(len(p) for p in pairs)
        index = np.full((len(self.zone), width), -1)
        angles = np.full((len(self.zone), width), np.inf)
        for i, hits in enumerate(pairs):
            hits = np.asarray(hits)
            angle = 2 * np.arccos(np.clip(np.abs(copies[hits] @ quats[i]), 0, 1))
            order = np.argsort(angle)
            states, first = np.unique(hits[order] % len(self.zone), return_index=True)
            index[i, : len(states)] = states
            angles[i, : len(states)] = angle[order][first]
        return index, angles

    def _log_prior(self, step_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours ``k`` of each state ``j`` and log P(k → j) for one RMS step."""
        # each state snaps its rotation to the grid: 0.8 spacings each, in quadrature
        chain_step = float(np.hypot(step_deg, 0.8 * self.spacing_deg * np.sqrt(2)))
        index, angles = self.neighbours(3 * chain_step)
        raw = np.where(index >= 0, -1.5 * angles**2 / np.radians(chain_step) ** 2, -np.inf)
        # neighbourhoods are symmetric: the states k leads to are those that lead to k
        log_norm = _logsumexp_rows(raw)
        return index, raw - log_norm[np.maximum(index, 0)]

    def viterbi(self, ll: np.ndarray, step_deg: float) -> np.ndarray:
        index, log_prior = self._log_prior(step_deg)
        return _grid_viterbi(ll, index, log_prior, self.broken)

    def unwrap(self, path: np.ndarray) -> Rotation:
        """The path's states as a continuous sequence of rotations (nearest equivalents)."""
        cubic = CUBIC_GROUP.as_matrix()
        rotations = [self.zone[path[0]]]
        for t, state in enumerate(path[1:]):
            if self.broken[t]:
                rotations.append(self.zone[state])
                continue
            equivalents = Rotation.from_matrix(self.zone[state].as_matrix()[None] @ cubic)
            nearest = np.argmin((equivalents * rotations[-1].inv()).magnitude())
            rotations.append(equivalents[int(nearest)])
        return Rotation.concatenate(rotations)


def _logsumexp_rows(values: np.ndarray) -> np.ndarray:
    peak = values.max(axis=1)
    return peak + np.log(np.exp(values - peak[:, None]).sum(axis=1))
