"""HAADF-STEM tilt series: Z-contrast projections with tilt errors, shifts, support and noise.

Dose to counts
--------------
A HAADF image is the number of electrons scattered onto the annular detector while the probe dwells
on each pixel. With a dose ``D`` [e/Å²] per image and pixel area ``A = p²`` [Å²], pixel ``j``
records on average

``E[n_j] = D · A · (f_bg,j + f_scat,j)``,   ``f_scat,j = Σ_i σ_i · g_i(j) / A``,

where ``σ_i = c · Z_i^1.7`` is the HAADF cross-section of atom i [Å²], ``g_i(j)`` the fraction of
its Gaussian (probe ⊕ thermal blur) inside pixel j, and ``f_bg`` the fraction scattered by the
amorphous support. So each atom adds ``D · σ_i`` counts in total. The default ``c = 1e-5 Å²`` comes
from the unscreened Rutherford cross-section ``dσ/dΩ = 4 γ² Z² / (a0² k⁴ θ⁴)`` integrated over a
detector from 60 mrad outwards at 300 kV (λ = 0.0197 Å, γ = 1.587), which gives ≈ 0.018 Å² for Pt
(Z = 78); screening lowers the exponent of Z to ≈ 1.7, and c · 78^1.7 ≈ 0.016 Å². The support is
amorphous carbon (0.1 atoms/Å³, 2 g/cm³) of thickness ``t / cos θ`` at tilt θ,
``f_bg = 0.1 · t / cos θ · c · 6^1.7``, modulated by a smooth random texture.

References
----------
E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 3rd ed., Springer (2020),
doi:10.1007/978-3-030-33260-0 (Rutherford scattering, Z^1.7 HAADF contrast).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from ase.data import atomic_numbers
from numpy.typing import ArrayLike
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from nanorecon.geometry import quaternions_from_rotations, tilt_series_rotations

from ._particles import Particle
from ._render import project_gaussians
from ._specs import TomographySpec
from ._truth import atoms_table, particles_table

#: Number density of amorphous carbon (2.0 g/cm³) [atoms/Å³].
CARBON_DENSITY_PER_A3 = 0.1


def haadf_cross_sections_A2(elements: ArrayLike, *, cross_section_scale_A2: float) -> np.ndarray:
    """HAADF cross-section per atom, ``scale · Z^1.7`` [Å²]."""
    z = np.array([atomic_numbers[str(e)] for e in np.asarray(elements).ravel()], dtype=float)
    return cross_section_scale_A2 * z**1.7


def project_haadf(
    positions_A: np.ndarray,
    cross_sections_A2: np.ndarray,
    rotation: Rotation,
    *,
    shape: tuple[int, int],
    pixel_size_A: float,
    sigma_A: float,
    shift_A: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Noiseless HAADF projection: scattered fraction × pixel area, per pixel [Å²].

    Parameters
    ----------
    positions_A : ndarray of shape (N, 3)
        Atoms (x, y, z) in the map frame [Å].
    cross_sections_A2 : ndarray of shape (N,)
        HAADF cross-sections [Å²].
    rotation : Rotation
        Map frame → microscope frame.
    shape : (int, int)
        (ny, nx) [px].
    pixel_size_A : float
        [Å].
    sigma_A : float
        Probe ⊕ thermal blur, standard deviation [Å].
    shift_A : (float, float)
        The map origin appears at the image centre plus this shift [Å].

    Returns
    -------
    ndarray of shape (ny, nx)
        Multiply by the dose [e/Å²] to get expected counts.
    """
    rotated = rotation.apply(positions_A)
    rotated[:, :2] += np.asarray(shift_A, dtype=float)
    return project_gaussians(
        rotated, cross_sections_A2, shape=shape, pixel_size_A=pixel_size_A, sigma_A=sigma_A
    )


@dataclass
class TiltSeriesResult:
    """A simulated tilt series and its ground truth.

    Attributes
    ----------
    images : ndarray of shape (n, ny, nx), float32
        Detector counts.
    tilt_angles_deg : ndarray of shape (n,)
        Nominal tilt angles [deg] (what the microscope reports).
    pixel_size_A : float
    particle : Particle
    atoms : DataFrame
        ``particle, x_A, y_A, z_A, element``.
    particles : DataFrame
        One row per particle.
    tilts : DataFrame
        ``image, tilt_nominal_deg, tilt_true_deg, tilt_axis_deg, shift_x_A, shift_y_A``
        [deg, Å] and the true orientation ``qx, qy, qz, qw``.
    spec : TomographySpec
    """

    images: np.ndarray
    tilt_angles_deg: np.ndarray
    pixel_size_A: float
    particle: Particle
    atoms: pd.DataFrame
    particles: pd.DataFrame
    tilts: pd.DataFrame
    spec: TomographySpec


def _support_texture(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float):
    field = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    return field / max(float(field.std()), 1e-12)


def simulate_tilt_series(spec: TomographySpec) -> TiltSeriesResult:
    """Simulate a HAADF-STEM tilt series of one particle with ground truth.

    The particle's atoms are rotated by ``R_k = Rz(tilt_axis) · Ry(θ_k)`` (``θ_k`` = nominal +
    error, :func:`nanorecon.geometry.tilt_series_rotations`), projected along the beam as
    pixel-integrated Gaussians of weight ``σ_i = c · Z^1.7``, shifted by a random per-image shift,
    put on a tilted amorphous support, converted to expected counts (see the module notes) and
    Poisson sampled.

    Parameters
    ----------
    spec : TomographySpec

    Returns
    -------
    TiltSeriesResult
    """
    seeds = np.random.SeedSequence(spec.seed).spawn(4)
    rng_particle, rng_geometry, rng_support, rng_noise = (np.random.default_rng(s) for s in seeds)
    ps = spec.particle
    particle = ps.build(rng_particle)
    nominal = spec.nominal_tilts_deg
    n = nominal.size
    true_tilts = nominal + rng_geometry.normal(0.0, spec.tilt_error_rms_deg, n)
    if spec.shift_distribution == "uniform":
        shifts_px = rng_geometry.uniform(-spec.shift_max_px, spec.shift_max_px, (n, 2))
        shift_reach_px = spec.shift_max_px
    else:
        shifts_px = rng_geometry.normal(0.0, spec.shift_max_px, (n, 2))
        shift_reach_px = float(np.abs(shifts_px).max(initial=0.0))
    shifts_A = shifts_px * spec.pixel_size_A

    if spec.image_size_px is None:
        radius_A = float(np.linalg.norm(particle.positions_A, axis=1).max())
        size = (2 * radius_A + 10.0) / spec.pixel_size_A + 2 * shift_reach_px
        size_px = 2 * int(np.ceil(size / 2))
    else:
        size_px = int(spec.image_size_px)
    shape = (size_px, size_px)

    rotations = tilt_series_rotations(true_tilts, tilt_axis_deg=spec.tilt_axis_deg)
    cross_sections = haadf_cross_sections_A2(
        particle.elements, cross_section_scale_A2=spec.cross_section_scale_A2
    )
    sigma_A = float(np.hypot(spec.probe_sigma_A, spec.thermal_sigma_A))
    pixel_area = spec.pixel_size_A**2
    f_bg0 = (
        CARBON_DENSITY_PER_A3
        * spec.support_thickness_A
        * float(
            haadf_cross_sections_A2(["C"], cross_section_scale_A2=spec.cross_section_scale_A2)[0]
        )
    )
    images = np.empty((n, *shape), dtype=np.float32)
    for k in range(n):
        scattered = project_haadf(
            particle.positions_A,
            cross_sections,
            rotations[k],
            shape=shape,
            pixel_size_A=spec.pixel_size_A,
            sigma_A=sigma_A,
            shift_A=shifts_A[k],
        )
        texture = _support_texture(
            rng_support, shape, spec.background_correlation_A / spec.pixel_size_A
        )
        f_bg = f_bg0 / np.cos(np.deg2rad(true_tilts[k]))
        background = np.clip(f_bg * (1.0 + spec.background_texture * texture), 0.0, None)
        expected = spec.dose_e_per_A2 * (scattered + pixel_area * background)
        images[k] = rng_noise.poisson(expected) if spec.noise else expected

    quats = quaternions_from_rotations(rotations)
    tilts = pd.DataFrame(
        {
            "image": np.arange(n),
            "tilt_nominal_deg": nominal,
            "tilt_true_deg": true_tilts,
            "tilt_axis_deg": np.full(n, float(spec.tilt_axis_deg)),
            "shift_x_A": shifts_A[:, 0],
            "shift_y_A": shifts_A[:, 1],
            "qx": quats[:, 0],
            "qy": quats[:, 1],
            "qz": quats[:, 2],
            "qw": quats[:, 3],
        }
    )
    return TiltSeriesResult(
        images=images,
        tilt_angles_deg=nominal,
        pixel_size_A=float(spec.pixel_size_A),
        particle=particle,
        atoms=atoms_table([particle]),
        particles=particles_table([particle], [ps]),
        tilts=tilts,
        spec=spec,
    )
