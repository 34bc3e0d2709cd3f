"""Atom tracing: peaks of a 3D density map → fitted atom positions, intensities and species."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..backend import asnumpy, get_array_module, get_ndimage_module, supported_float_type
from ..lattice import atomic_number, bulk_nearest_neighbour_distance_A
from ._gaussfit import fit_gaussians, gather, own_model, render, sphere_offsets
from ._peaks import local_maxima, thin_peaks
from ._species import classify_species

COLUMNS = (
    "x_A",
    "y_A",
    "z_A",
    "element",
    "intensity",
    "amplitude",
    "width_A",
    "fit_residual",
    "sigma_fit_A",
    "sigma_A",
)


def _upsample(volume, factor: int):
    """Cubic-spline resampling onto a grid ``factor`` times finer that keeps index N//2 at 0 Å."""
    ndi = get_ndimage_module(volume)
    n = np.array(volume.shape)
    m = n * factor
    offset = n // 2 - (m // 2) / factor
    return ndi.affine_transform(
        volume,
        np.full(3, 1.0 / factor),
        offset=offset,
        output_shape=tuple(m),
        order=3,
        mode="nearest",
    )


def _support(volume, voxel_size_A: float, level: float):
    """Largest connected region of the 1 Å-smoothed map above ``level``, dilated by 1 Å."""
    xp, ndi = get_array_module(volume), get_ndimage_module(volume)
    smooth = ndi.gaussian_filter(volume, 1.0 / voxel_size_A)
    labels, n = ndi.label(smooth > level)
    if int(n) == 0:
        return xp.ones(volume.shape, bool)
    sizes = xp.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(xp.argmax(sizes))
    return ndi.binary_dilation(mask, iterations=max(1, int(round(1.0 / voxel_size_A))))


def trace_atoms(
    volume,
    voxel_size_A: float,
    *,
    elements: Sequence[str],
    upsample: int = 1,
    threshold: float | None = None,
    noise_sigmas: float = 4.0,
    min_distance_A: float | None = None,
    fit_radius_A: float | None = None,
    support=None,
    min_intensity_fraction: float = 0.3,
    max_fit_residual: float = 0.5,
    z_exponent: float = 1.7,
    n_rounds: int = 3,
    half_maps=None,
    match_distance_A: float = 0.5,
) -> pd.DataFrame:
    """Trace the atoms of a nanoparticle density map.

    1. Candidates: voxels that are local maxima (3 × 3 × 3) above a threshold; by default the larger
       of ``median + noise_sigmas × σ_noise`` (σ_noise from the median absolute deviation) and 0.3 ×
       the expected peak of the lightest element (the highest peak scaled by
       ``(Z_min/Z_max) ** z_exponent``). Greedy non-maximum suppression keeps candidates at least
       ``min_distance_A`` apart (0.7 × the smallest bulk nearest-neighbour distance of
       ``elements``).
    2. Sub-voxel fit: every peak gets an isotropic 3D Gaussian plus constant fitted by
       Levenberg–Marquardt to the voxels within ``fit_radius_A``; from the second round on, the
       fitted Gaussians of all other atoms are subtracted first, so overlapping neighbours do not
       pull the positions.
    3. Rejection, between rounds: non-positive or too wide/narrow Gaussians, integrated intensity
       below ``min_intensity_fraction`` × the expected lightest atom, relative fit residual above
       ``max_fit_residual``, atoms outside the support, and the weaker of two atoms closer than
       ``min_distance_A``.
    4. Species by 1D k-means on the integrated intensities (:func:`classify_species`).
    5. With two half maps, each is traced alike and matched to the full-map atoms; the per-atom
       estimate of the full map's positional error (per coordinate) is
       ``sigma_A = |r₁ − r₂| / (2√3)`` (the two half maps have twice the full map's variance each).

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
        Density map, numpy or cupy; index N//2 of each axis is 0 Å.
    voxel_size_A : float
        Voxel edge length [Å].
    elements : sequence of str
        Element symbols present in the particle.
    upsample : int, optional
        Cubic-spline upsampling factor applied first (1: none).
    threshold : float, optional
        Candidate threshold in map units, overriding the automatic one.
    noise_sigmas : float, optional
        Noise multiple in the automatic threshold.
    min_distance_A : float, optional
        Minimum atom separation [Å].
    fit_radius_A : float, optional
        Radius of the fitting sphere [Å]; 0.4 × the smallest bulk nearest-neighbour distance by
        default.
    support : ndarray of bool, shape (Z, Y, X), optional
        Region allowed to hold atoms; by default the largest connected region of the 1 Å-smoothed
        map above a quarter of its median at the candidates, dilated by 1 Å.
    min_intensity_fraction : float, optional
        Rejection level for weak peaks (see 3).
    max_fit_residual : float, optional
        Largest RMS fit residual relative to the fitted amplitude.
    z_exponent : float, optional
        Z-contrast exponent (intensity ∝ Z ** z_exponent) for thresholds and species start values.
    n_rounds : int, optional
        Fit / reject rounds (the first without neighbour subtraction).
    half_maps : tuple of two ndarrays, optional
        Independent half-set maps for the per-atom uncertainty ``sigma_A``.
    match_distance_A : float, optional
        Largest distance for matching half-map atoms to full-map atoms [Å].

    Returns
    -------
    DataFrame
        One row per atom: ``x_A, y_A, z_A`` [Å], ``element``, ``intensity`` (integrated Gaussian
        [map units · Å³]), ``amplitude`` [map units], ``width_A`` (Gaussian σ [Å]), ``fit_residual``
        (RMS residual / amplitude), ``sigma_fit_A`` (per-coordinate position error from the fit's
        covariance [Å]), ``sigma_A`` (from the half maps [Å]; NaN without them or when unmatched).

    References
    ----------
    Y. Yang et al., "Deciphering chemical order/disorder and material properties at the single-atom
    level", Nature 542, 75 (2017). doi:10.1038/nature21042
    """
    xp = get_array_module(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), got shape {volume.shape}")
    if voxel_size_A <= 0:
        raise ValueError(f"voxel_size_A must be positive, got {voxel_size_A}")
    if not elements:
        raise ValueError("elements must name at least one element")
    if upsample < 1:
        raise ValueError(f"upsample must be >= 1, got {upsample}")
    vol = volume.astype(supported_float_type(volume.dtype), copy=False)
    if upsample > 1:
        vol = _upsample(vol, upsample)
        voxel_size_A = voxel_size_A / upsample
        if support is not None:
            support = _upsample(xp.asarray(support, dtype=vol.dtype), upsample) > 0.5
    shape = np.array(vol.shape)

    z = np.array([atomic_number(e) for e in elements], float)
    light_ratio = float((z.min() / z.max()) ** z_exponent)
    d_nn = min(bulk_nearest_neighbour_distance_A(e) for e in elements)
    min_distance_A = 0.7 * d_nn if min_distance_A is None else float(min_distance_A)
    fit_radius_A = 0.4 * d_nn if fit_radius_A is None else float(fit_radius_A)
    fit_radius = max(fit_radius_A / voxel_size_A, 1.5)
    min_distance = min_distance_A / voxel_size_A

    median = float(xp.median(vol))
    noise = 1.4826 * float(xp.median(xp.abs(vol - median)))
    if threshold is None:
        _, first = local_maxima(vol, threshold=median + 3.0 * noise)
        if first.size == 0:
            return _empty()
        reference = float(first.max())
        threshold = max(median + noise_sigmas * noise, 0.3 * light_ratio * (reference - median))
    index, values = local_maxima(vol, threshold=threshold)
    keep = thin_peaks(index.astype(float), min_distance=min_distance)
    centres, values = index[keep], values[keep]
    if support is None:
        smooth = asnumpy(get_ndimage_module(vol).gaussian_filter(vol, 1.0 / voxel_size_A))
        level = 0.25 * float(np.median(smooth[tuple(centres.T)])) if len(centres) else 0.0
        support = _support(vol, voxel_size_A, level)
    support_np = asnumpy(support).astype(bool)
    centres = centres[support_np[tuple(centres.T)]]
    if len(centres) == 0:
        return _empty()

    # Start values: amplitude = peak height, width from the curvature of the peak.
    offsets = sphere_offsets(fit_radius, xp)
    face = np.concatenate([np.eye(3, dtype=int), -np.eye(3, dtype=int)])
    centre_values = asnumpy(gather(vol, xp.asarray(centres), xp.zeros((1, 3), int)))[:, 0]
    face_values = asnumpy(gather(vol, xp.asarray(centres), xp.asarray(face))).mean(axis=1)
    ratio = np.clip((face_values - median) / np.maximum(centre_values - median, 1e-30), 0.05, 0.95)
    width0 = float(np.median(np.sqrt(-1.0 / (2.0 * np.log(ratio)))))
    params = np.zeros((len(centres), 6))
    params[:, 0] = centre_values - median
    params[:, 4] = width0
    params[:, 5] = median

    for round_index in range(max(n_rounds, 1)):
        c = xp.asarray(centres)
        p = xp.asarray(params, dtype=vol.dtype)
        data = gather(vol, c, offsets)
        if round_index > 0:
            render_offsets = sphere_offsets(fit_radius + 3.0 * float(np.median(params[:, 4])), xp)
            model = render(tuple(shape), c, p, render_offsets, xp)
            data = data - gather(model, c, offsets) + own_model(p, offsets.astype(vol.dtype))
        fitted, residual, covariance = fit_gaussians(data, offsets, p)
        params = asnumpy(fitted).astype(float)
        residual = asnumpy(residual).astype(float)
        covariance = asnumpy(covariance).astype(float)

        intensity = params[:, 0] * (2.0 * np.pi) ** 1.5 * (params[:, 4] * voxel_size_A) ** 3
        width_median = float(np.median(params[:, 4]))
        strong = params[:, 0] >= 0.5 * params[:, 0].max()
        reference = float(np.percentile(intensity[strong], 90.0))
        position = centres + params[:, 1:4]
        grid = np.rint(position).astype(int)
        inside = np.all((grid >= 0) & (grid < shape), axis=1)
        grid = np.clip(grid, 0, shape - 1)
        good = (
            (params[:, 0] > 0)
            & (params[:, 4] > 0.4 * width_median)
            & (params[:, 4] < 2.5 * width_median)
            & (intensity > min_intensity_fraction * light_ratio * reference)
            & (residual < max_fit_residual * np.abs(params[:, 0]))
            & inside
            & support_np[tuple(grid.T)]
        )
        order = np.nonzero(good)[0]
        order = order[np.argsort(-intensity[order], kind="stable")]
        order = order[thin_peaks(position[order], min_distance=min_distance)]
        order = np.sort(order)
        # Re-centre the fitting spheres on the fitted positions for the next round.
        centres = grid[order]
        params = params[order]
        params[:, 1:4] = position[order] - centres
        residual, covariance, intensity = residual[order], covariance[order], intensity[order]
        if len(centres) == 0:
            return _empty()

    position = centres + params[:, 1:4]
    centre_index = shape // 2
    xyz = (position - centre_index)[:, ::-1] * voxel_size_A
    atoms = pd.DataFrame(
        {
            "x_A": xyz[:, 0],
            "y_A": xyz[:, 1],
            "z_A": xyz[:, 2],
            "element": pd.Series(
                classify_species(intensity, elements, z_exponent=z_exponent), dtype="string"
            ).to_numpy(),
            "intensity": intensity,
            "amplitude": params[:, 0],
            "width_A": params[:, 4] * voxel_size_A,
            "fit_residual": residual / params[:, 0],
            "sigma_fit_A": np.sqrt(
                np.clip(np.einsum("nii->ni", covariance[:, 1:4, 1:4]).mean(axis=1), 0, None)
            )
            * voxel_size_A,
            "sigma_A": np.nan,
        }
    )
    if half_maps is not None:
        if len(half_maps) != 2:
            raise ValueError("half_maps must hold exactly two maps")
        options = {
            "elements": elements,
            "upsample": upsample,
            "noise_sigmas": noise_sigmas,
            "min_distance_A": min_distance_A,
            "fit_radius_A": fit_radius_A,
            "min_intensity_fraction": min_intensity_fraction,
            "max_fit_residual": max_fit_residual,
            "z_exponent": z_exponent,
            "n_rounds": n_rounds,
        }
        step = voxel_size_A * upsample
        halves = [
            trace_atoms(h, step, **options)[["x_A", "y_A", "z_A"]].to_numpy() for h in half_maps
        ]
        atoms["sigma_A"] = half_map_sigma(
            atoms[["x_A", "y_A", "z_A"]].to_numpy(), *halves, match_distance_A=match_distance_A
        )
    return atoms


def half_map_sigma(
    positions_A: np.ndarray,
    half1_A: np.ndarray,
    half2_A: np.ndarray,
    *,
    match_distance_A: float = 0.5,
) -> np.ndarray:
    """Per-atom positional error (per coordinate) of a full map from two half-map tracings [Å].

    Each full-map atom takes its nearest atom in either half map (within ``match_distance_A``);
    ``sigma = |r₁ − r₂| / (2√3)`` since each half has twice the full map's error variance. NaN where
    either half has no match.
    """
    positions = np.asarray(positions_A, dtype=float)
    out = np.full(len(positions), np.nan)
    if len(half1_A) == 0 or len(half2_A) == 0:
        return out
    d1, i1 = cKDTree(half1_A).query(positions, distance_upper_bound=match_distance_A)
    d2, i2 = cKDTree(half2_A).query(positions, distance_upper_bound=match_distance_A)
    ok = np.isfinite(d1) & np.isfinite(d2)
    out[ok] = np.linalg.norm(half1_A[i1[ok]] - half2_A[i2[ok]], axis=1) / (2.0 * np.sqrt(3.0))
    return out


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=float) for name in COLUMNS})
    frame["element"] = frame["element"].astype("string")
    return frame
