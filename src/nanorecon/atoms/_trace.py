"""Atom tracing: peaks of a 3D density map → fitted atom positions, intensities and species."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..backend import asnumpy, get_array_module, get_ndimage_module, supported_float_type
from ..lattice import atomic_number, bulk_nearest_neighbour_distance_A
from ._gaussfit import fit_gaussians, gather, own_model, render, sphere_offsets
from ._noise import estimate_noise, kernel_norm
from ._peaks import local_maxima, thin_peaks
from ._reject import coordination_filter, half_map_significance
from ._species import classify_species

COLUMNS = (
    "x_A",
    "y_A",
    "z_A",
    "element",
    "intensity",
    "amplitude",
    "width_A",
    "width_z_A",
    "fit_residual",
    "significance",
    "sigma_fit_A",
    "sigma_A",
    "half_significance",
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


def _start_params(vol, centres, widths, xp):
    """Fit start values: amplitude = peak height above the local minimum, given widths."""
    params = np.zeros((len(centres), 7))
    values = asnumpy(gather(vol, xp.asarray(centres), xp.zeros((1, 3), int)))[:, 0]
    params[:, 0] = values
    params[:, 4:6] = widths
    return params


def _fit_round(vol, centres, params, offsets, fit_radius, subtract, xp, fit_widths=True):
    """One batched fit of all peaks; from the second round the other atoms' Gaussians are
    subtracted first, so overlapping neighbours do not pull the positions."""
    c = xp.asarray(centres)
    p = xp.asarray(params, dtype=vol.dtype)
    data = gather(vol, c, offsets)
    if subtract:
        reach = fit_radius + 3.0 * float(np.median(params[:, 4:6].max(axis=1)))
        model = render(tuple(vol.shape), c, p, sphere_offsets(reach, xp), xp)
        data = data - gather(model, c, offsets) + own_model(p, offsets.astype(vol.dtype))
    fitted, residual, covariance = fit_gaussians(data, offsets, p, fit_widths=fit_widths)
    return (
        asnumpy(fitted).astype(float),
        asnumpy(residual).astype(float),
        asnumpy(covariance).astype(float),
    )


def trace_atoms(
    volume,
    voxel_size_A: float,
    *,
    elements: Sequence[str],
    upsample: int = 1,
    threshold: float | None = None,
    noise_sigmas: float = 5.0,
    noise_sigma: float | None = None,
    smooth_A: float | None = None,
    min_distance_A: float | None = None,
    fit_radius_A: float | None = None,
    support=None,
    min_intensity_fraction: float = 0.3,
    max_fit_residual: float = 0.5,
    fit_widths: bool = False,
    max_elongation: float = 2.0,
    z_exponent: float = 1.7,
    n_rounds: int = 3,
    half_maps=None,
    match_distance_A: float = 0.5,
    half_map_sigmas: float | None = None,
    min_neighbours: int = 0,
    bond_range: tuple[float, float] = (0.8, 1.2),
) -> pd.DataFrame:
    """Trace the atoms of a nanoparticle density map.

    Real reconstructions have a noisy background inside the particle, are often clipped to
    non-negative values (so most voxels may be exactly 0), and their atoms are elongated along z
    by the missing wedge; heavy and light atoms can differ six-fold in intensity. Hence:

    1. Atom shape: anisotropic Gaussians (widths ``s_z``, ``s_yx``) fitted to the brightest local
       maxima, which are atoms in any map, give the expected peak shape.
    2. Matched filter: the map smoothed by a Gaussian of that width (``smooth_A``) raises the
       signal-to-noise ratio of light atoms over voxel-scale noise maxima.
    3. Support: the largest connected region of the 1 Å-smoothed map above a quarter of the
       expected lightest atom (the brightest peaks' level × ``(Z_min/Z_max) ** z_exponent``),
       dilated by 1 Å.
    4. Noise σ of the smoothed map (:func:`estimate_noise`): from the two half maps when given,
       else from the region outside the support, else from its non-zero voxels; ``noise_sigma``
       (the unsmoothed map's σ, white noise assumed) overrides it. Background = the median of the
       smoothed map inside the support.
    5. Candidates: local maxima (3 × 3 × 3) of the smoothed map above ``threshold``, by default
       background + the larger of ``noise_sigmas`` × σ and 0.25 × the expected lightest atom's
       smoothed peak; greedy non-maximum suppression keeps them ``min_distance_A`` apart (0.7 × the
       smallest bulk nearest-neighbour distance of ``elements``).
    6. Sub-voxel fit: the anisotropic Gaussian of step 1 (widths fixed unless ``fit_widths``) plus
       a constant, fitted by Levenberg–Marquardt to the unsmoothed map within ``fit_radius_A``;
       from the second round on the fitted Gaussians of all other atoms are subtracted first.
    7. Rejection, between rounds: (with ``fit_widths``) mean width outside 0.5–2 × the brightest
       atoms', elongation ``s_z/s_yx`` beyond ``max_elongation`` × theirs; integrated intensity below
       ``min_intensity_fraction`` × the expected lightest atom, relative fit residual above
       ``max_fit_residual`` (+ the voxel noise σ; not in the first round), smoothed map at the
       fitted position below the candidate threshold,
       atoms outside the support, and the weaker of two atoms closer than ``min_distance_A``.
    8. Species by k-means on log intensities (:func:`classify_species`).
    9. Reproducibility (with two half maps): each half map is an independent measurement, so an
       atom must be a detection in each on its own. Each half, smoothed by the same matched
       filter, is sampled at the atom's fitted position; its value above the half's background
       must reach ``half_map_sigmas`` × the half's noise σ (√2 × the full map's). A noise peak of
       the full map is rarely reproduced at the same place in both independent halves, while real
       atoms are; unlike the full-map threshold, the test does not rely on the noise being
       Gaussian and stationary (reconstruction noise clipped by positivity is neither).
    10. Coordination (``min_neighbours`` > 0): an atom needs at least ``min_neighbours`` others at
        a bond distance within ``bond_range`` × [smallest, largest] bulk nearest-neighbour
        distance of ``elements``, repeated until stable. Atoms of a close-packed particle have ≥ 3
        (a surface adatom in a hollow site has 3), isolated noise peaks outside the surface fewer.
    11. Species are classified again on the atoms kept.
    12. With two half maps, each is also traced alike (noise σ × √2) and matched to the full-map
        atoms; the per-atom estimate of the full map's positional error (per coordinate) is
        ``sigma_A = |r₁ − r₂| / (2√3)``.

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
        Candidate threshold on the smoothed map [map units], overriding the automatic one.
    noise_sigmas : float, optional
        Noise multiple (of the smoothed map's σ) in the automatic threshold.
    noise_sigma : float, optional
        Noise standard deviation of the (unsmoothed) map [map units], overriding the estimate.
    smooth_A : float, optional
        σ of the matched filter [Å]; by default the brightest atoms' geometric-mean width.
    min_distance_A : float, optional
        Minimum atom separation [Å].
    fit_radius_A : float, optional
        Radius of the fitting sphere [Å]; 0.4 × the smallest bulk nearest-neighbour distance by
        default.
    support : ndarray of bool, shape (Z, Y, X), optional
        Region allowed to hold atoms (see 3 for the default).
    min_intensity_fraction : float, optional
        Rejection level for weak peaks (see 7).
    max_fit_residual : float, optional
        Largest RMS fit residual relative to the fitted amplitude.
    fit_widths : bool, optional
        Fit each atom's widths too (and reject atoms with mean width outside 0.5–2 × the
        brightest atoms' or elongation beyond ``max_elongation``); by default every atom is fitted
        with the brightest atoms' anisotropic shape, which keeps weak light atoms' fits stable in
        voxel-scale noise and makes the intensity a matched-filter estimate.
    max_elongation : float, optional
        With ``fit_widths``: largest factor between an atom's ``s_z/s_yx`` and the brightest
        atoms' (either way).
    z_exponent : float, optional
        Z-contrast exponent (intensity ∝ Z ** z_exponent) for thresholds and species start values.
    n_rounds : int, optional
        Fit / reject rounds (the first without neighbour subtraction).
    half_maps : tuple of two ndarrays, optional
        Independent half-set maps, for the noise level and the per-atom uncertainty ``sigma_A``.
    match_distance_A : float, optional
        Largest distance for matching half-map atoms to full-map atoms [Å].
    half_map_sigmas : float, optional
        Significance [σ of one half map] an atom must reach in each half map (step 9); by default
        ``noise_sigmas``, the full map's test applied to each half; ``-inf`` turns the test off.
    min_neighbours : int, optional
        Fewest neighbours at a bond distance (step 10); 0 (default) turns the test off.
    bond_range : (float, float), optional
        Bond distances allowed in step 10, as multiples of the smallest and the largest bulk
        nearest-neighbour distance of ``elements``.

    Returns
    -------
    DataFrame
        One row per atom: ``x_A, y_A, z_A`` [Å], ``element``, ``intensity`` (integrated Gaussian
        [map units · Å³]), ``amplitude`` [map units], ``width_A`` (geometric-mean Gaussian σ [Å]),
        ``width_z_A`` (σ along z [Å]), ``fit_residual`` (RMS residual / amplitude),
        ``significance`` (smoothed map above background at the atom / noise σ),
        ``sigma_fit_A`` (per-coordinate position error from the fit's covariance [Å]),
        ``sigma_A`` (from the half maps [Å]; NaN without them or when unmatched),
        ``half_significance`` (the smaller significance in the two half maps [σ]; NaN without).
        ``atoms.attrs`` holds the noise σ, its method, the background and the threshold.

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
    if min_neighbours < 0:
        raise ValueError(f"min_neighbours must be >= 0, got {min_neighbours}")
    if not 0 <= bond_range[0] < bond_range[1]:
        raise ValueError(f"bond_range must be (low, high) with 0 <= low < high, got {bond_range}")
    if half_maps is not None:
        if len(half_maps) != 2:
            raise ValueError("half_maps must hold exactly two maps")
        if any(tuple(h.shape) != tuple(volume.shape) for h in half_maps):
            raise ValueError("half_maps must have the shape of volume")
    dtype = supported_float_type(volume.dtype)
    vol = volume.astype(dtype, copy=False)
    halves = None if half_maps is None else [xp.asarray(h).astype(dtype) for h in half_maps]
    if upsample > 1:
        vol = _upsample(vol, upsample)
        halves = None if halves is None else [_upsample(h, upsample) for h in halves]
        voxel_size_A = voxel_size_A / upsample
        if support is not None:
            support = _upsample(xp.asarray(support, dtype=vol.dtype), upsample) > 0.5
    options = {
        "elements": elements,
        "threshold": threshold,
        "noise_sigmas": noise_sigmas,
        "smooth_A": smooth_A,
        "min_distance_A": min_distance_A,
        "fit_radius_A": fit_radius_A,
        "min_intensity_fraction": min_intensity_fraction,
        "max_fit_residual": max_fit_residual,
        "fit_widths": fit_widths,
        "max_elongation": max_elongation,
        "z_exponent": z_exponent,
        "n_rounds": n_rounds,
    }
    atoms, state = _trace(
        vol, voxel_size_A, support=support, half_maps=halves, noise_sigma=noise_sigma, **options
    )
    keep = np.ones(len(atoms), bool)
    if halves is not None and len(atoms):
        positions = (
            atoms[["z_A", "y_A", "x_A"]].to_numpy() / voxel_size_A + np.array(vol.shape) // 2
        )
        significance = half_map_significance(
            positions,
            halves,
            support=state["support"],
            smooth_sigma_vox=state["smooth_A"] / voxel_size_A,
            noise_sigma=np.sqrt(2.0) * float(state["noise_sigma"][0]),
        ).min(axis=1)
        atoms["half_significance"] = significance
        level = noise_sigmas if half_map_sigmas is None else half_map_sigmas
        keep &= significance >= level
    if min_neighbours > 0 and keep.any():
        distances = [bulk_nearest_neighbour_distance_A(e) for e in elements]
        bonds = (bond_range[0] * min(distances), bond_range[1] * max(distances))
        xyz = atoms[["x_A", "y_A", "z_A"]].to_numpy()
        keep[keep] = coordination_filter(
            xyz[keep], bond_range_A=bonds, min_neighbours=min_neighbours
        )
    if not keep.all():
        attrs = dict(atoms.attrs)
        atoms = atoms[keep].reset_index(drop=True)
        atoms.attrs.update(attrs)
        atoms.attrs["n_rejected"] = int((~keep).sum())
        if len(atoms):
            labels = classify_species(
                atoms["intensity"].to_numpy(), elements, z_exponent=z_exponent
            )
            atoms["element"] = pd.Series(labels, dtype="string").to_numpy()
    if halves is not None and len(atoms):
        options["smooth_A"] = state["smooth_A"]
        # Each half holds half the data: twice the full map's noise variance.
        traced = [
            _trace(
                h,
                voxel_size_A,
                support=state["support"],
                half_maps=None,
                noise_sigma=None,
                noise_f=tuple(np.sqrt(2.0) * np.array(state["noise_sigma"])),
                **options,
            )[0][["x_A", "y_A", "z_A"]].to_numpy()
            for h in halves
        ]
        atoms["sigma_A"] = half_map_sigma(
            atoms[["x_A", "y_A", "z_A"]].to_numpy(), *traced, match_distance_A=match_distance_A
        )
    return atoms


def _trace(
    vol,
    voxel_size_A,
    *,
    elements,
    support,
    half_maps,
    noise_sigma,
    threshold,
    noise_sigmas,
    smooth_A,
    min_distance_A,
    fit_radius_A,
    min_intensity_fraction,
    max_fit_residual,
    fit_widths,
    max_elongation,
    z_exponent,
    n_rounds,
    noise_f=None,
):
    """The tracing steps of :func:`trace_atoms` on one (already upsampled) map; returns the atoms
    and the state the half-map tracings reuse (smoothing width, support, noise σ)."""
    xp, ndi = get_array_module(vol), get_ndimage_module(vol)
    shape = np.array(vol.shape)
    z = np.array([atomic_number(e) for e in elements], float)
    light_ratio = float((z.min() / z.max()) ** z_exponent)
    d_nn = min(bulk_nearest_neighbour_distance_A(e) for e in elements)
    min_distance_A = 0.7 * d_nn if min_distance_A is None else float(min_distance_A)
    fit_radius_A = 0.4 * d_nn if fit_radius_A is None else float(fit_radius_A)
    fit_radius = max(fit_radius_A / voxel_size_A, 1.5)
    min_distance = min_distance_A / voxel_size_A
    offsets = sphere_offsets(fit_radius, xp)
    state = {"smooth_A": smooth_A, "support": support, "noise_sigma": (0.0, 0.0)}

    # 1. The brightest maxima are atoms in any map: their fitted shape is the atom shape.
    index, values = local_maxima(vol, threshold=0.0)
    if len(index) == 0:
        return _empty(), state
    index = index[thin_peaks(index.astype(float), min_distance=min_distance)]
    n_bright = int(np.clip(0.01 * len(index), 5, 50))
    bright = index[:n_bright]
    params = _start_params(vol, bright, 1.0, xp)
    for _ in range(2):
        params, _, _ = _fit_round(vol, bright, params, offsets, fit_radius, False, xp)
    ok = params[:, 0] > 0
    if not ok.any():
        return _empty(), state
    width_z, width_yx = np.median(params[ok, 4]), np.median(params[ok, 5])
    bright_amplitude = float(np.median(params[ok, 0]))
    if smooth_A is None:
        smooth_A = float(np.clip(np.cbrt(width_z * width_yx**2), 0.5, 3.0)) * voxel_size_A
    smooth = smooth_A / voxel_size_A
    state["smooth_A"] = smooth_A
    filtered = ndi.gaussian_filter(vol, smooth)

    # 3. Support from the 1 Å-smoothed map.
    if support is None:
        wide = asnumpy(ndi.gaussian_filter(vol, 1.0 / voxel_size_A))
        level = 0.25 * light_ratio * float(np.median(wide[tuple(bright.T)]))
        support = _support(vol, voxel_size_A, level)
    support_np = asnumpy(support).astype(bool)
    state["support"] = support

    # 4. Noise of the smoothed map and background inside the particle.
    if noise_f is None:
        if noise_sigma is not None:
            noise_f, method = float(noise_sigma) * kernel_norm(smooth), "given"
            noise_voxel = float(noise_sigma)
        else:
            noise_f, method = estimate_noise(
                vol, support=support, half_maps=half_maps, smooth_sigma_vox=smooth
            )
            noise_voxel, _ = estimate_noise(vol, support=support, half_maps=half_maps)
    else:
        method = "given"
        noise_f, noise_voxel = noise_f
    state["noise_sigma"] = (noise_f, noise_voxel)
    filtered_np = asnumpy(filtered)
    background = float(np.median(filtered_np[support_np])) if support_np.any() else 0.0

    # 5. Candidates on the smoothed map.
    bright_filtered = float(np.median(filtered_np[tuple(bright.T)])) - background
    if threshold is None:
        threshold = background + max(noise_sigmas * noise_f, 0.25 * light_ratio * bright_filtered)
    index, values = local_maxima(filtered, threshold=threshold)
    centres = index[thin_peaks(index.astype(float), min_distance=min_distance)]
    centres = centres[support_np[tuple(centres.T)]]
    if len(centres) == 0:
        return _empty(), state

    # 6.–7. Fit / reject rounds on the unsmoothed map.
    ratio0 = width_z / width_yx
    width0 = np.cbrt(width_z * width_yx**2)
    params = _start_params(vol, centres, (width_z, width_yx), xp)
    params[:, 0] = np.maximum(params[:, 0], 1e-3 * bright_amplitude)
    reference = bright_amplitude * (2.0 * np.pi) ** 1.5 * width_z * width_yx**2 * voxel_size_A**3
    for round_index in range(max(n_rounds, 1)):
        params, residual, covariance = _fit_round(
            vol, centres, params, offsets, fit_radius, round_index > 0, xp, fit_widths
        )
        intensity = (
            params[:, 0] * (2.0 * np.pi) ** 1.5 * params[:, 4] * params[:, 5] ** 2 * voxel_size_A**3
        )
        position = centres + params[:, 1:4]
        grid = np.rint(position).astype(int)
        inside = np.all((grid >= 0) & (grid < shape), axis=1)
        grid = np.clip(grid, 0, shape - 1)
        level = asnumpy(ndi.map_coordinates(filtered, xp.asarray(position.T), order=1))
        elongation = params[:, 4] / np.maximum(params[:, 5], 1e-9) / ratio0
        mean_width = np.cbrt(params[:, 4] * params[:, 5] ** 2)
        shape_ok = (
            (mean_width > 0.5 * width0)
            & (mean_width < 2.0 * width0)
            & (elongation < max_elongation)
            & (elongation > 1.0 / max_elongation)
        )
        good = (
            (params[:, 0] > 0)
            & (shape_ok | (not fit_widths))
            & (intensity > min_intensity_fraction * light_ratio * reference)
            # Neighbours inflate the first round's residuals; noise inflates weak atoms'.
            & (
                (round_index == 0)
                | (residual < max_fit_residual * np.abs(params[:, 0]) + noise_voxel)
            )
            & (level > threshold)
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
        residual, covariance = residual[order], covariance[order]
        intensity, level = intensity[order], level[order]
        if len(centres) == 0:
            return _empty(), state

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
            "width_A": np.cbrt(params[:, 4] * params[:, 5] ** 2) * voxel_size_A,
            "width_z_A": params[:, 4] * voxel_size_A,
            "fit_residual": residual / params[:, 0],
            "significance": (level - background) / max(noise_f, 1e-30),
            "sigma_fit_A": np.sqrt(
                np.clip(np.einsum("nii->ni", covariance[:, 1:4, 1:4]).mean(axis=1), 0, None)
            )
            * voxel_size_A,
            "sigma_A": np.nan,
            "half_significance": np.nan,
        }
    )
    atoms.attrs.update(
        {
            "noise_sigma": noise_f,
            "noise_sigma_voxel": noise_voxel,
            "noise_method": method,
            "background": background,
            "threshold": float(threshold),
            "smooth_A": smooth_A,
        }
    )
    return atoms, state


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
