"""Liquid-cell HRTEM movie of Brownian particles on graphene, rendered lazily frame by frame."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from nanorecon.geometry import quaternions_from_rotations

from ._hrtem import (
    contrast_transfer,
    frequency_grid,
    graphene_positions_A,
    interaction_constant,
    potential_gaussians,
    project_potential,
    water_potential_spectrum,
    weak_phase_image,
)
from ._motion import brownian_rotations, brownian_translations, place_particles
from ._particles import Particle
from ._specs import MovieSpec
from ._truth import atoms_table, particles_table

#: Number density of liquid water [molecules/Å³].
WATER_DENSITY_PER_A3 = 0.0334
# Graphene is rendered in square tiles of this size [px], each with the atoms within 6σ of it.
_TILE_PX = 64


@dataclass
class MovieResult:
    """A simulated movie (rendered on demand) and its ground truth.

    Attributes
    ----------
    spec : MovieSpec
    shape : (int, int, int)
        (n_frames, ny, nx).
    pixel_size_A : float
    particle_models : list of Particle
    atoms : DataFrame
        ``particle, x_A, y_A, z_A, element`` (particle frame).
    particles : DataFrame
        One row per particle.
    trajectory : DataFrame
        ``frame, time_s, particle, x_A, y_A, qx, qy, qz, qw, in_view``; (x_A, y_A) is the particle
        centre measured from the centre of pixel (0, 0); the quaternion maps particle → microscope
        frame; ``in_view`` is true when the particle's bounding circle lies inside the frame.
    drift_A : ndarray of shape (n_frames, 2)
        Common stage displacement (x, y) per frame [Å] (moves graphene and particles).

    Iterating over the result (or calling :meth:`frames`) renders the frames in order; every pass
    gives the same frames.
    """

    spec: MovieSpec
    shape: tuple[int, int, int]
    pixel_size_A: float
    particle_models: list[Particle]
    atoms: pd.DataFrame
    particles: pd.DataFrame
    trajectory: pd.DataFrame
    drift_A: np.ndarray
    _rotations: list[Rotation]
    _centres_A: np.ndarray  # (n_particles, n_frames, 2)
    _seeds: tuple[np.random.SeedSequence, ...]

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def particle_potential(self, t: int) -> np.ndarray:
        """Projected potential ``V_z`` of the particles alone in frame `t` [V·Å], (ny, nx)."""
        _, ny, nx = self.shape
        potential = np.zeros((ny, nx))
        for i, model in enumerate(self.particle_models):
            _add_particle(
                potential,
                model,
                self._rotations[i][t],
                self._centres_A[i, t],
                pixel_size_A=self.pixel_size_A,
                thermal_sigma_A=self.spec.thermal_sigma_A,
            )
        return potential

    def frames(self, *, include: tuple[str, ...] = ("particles", "graphene", "liquid")):
        """Render the frames one by one (float32 counts, (ny, nx)).

        Parameters
        ----------
        include : tuple of str
            Specimen parts to render; leave some out for diagnostics (e.g. ``("liquid",)``).
        """
        spec = self.spec
        _, ny, nx = self.shape
        p = self.pixel_size_A
        pixel_area = p * p
        rng_liquid = np.random.default_rng(self._seeds[0])
        rng_graphene = np.random.default_rng(self._seeds[1])
        rng_noise = np.random.default_rng(self._seeds[2])
        sigma = interaction_constant(spec.voltage_kV)
        transfer = contrast_transfer(
            (ny, nx),
            p,
            voltage_kV=spec.voltage_kV,
            defocus_A=spec.defocus_A,
            cs_mm=spec.cs_mm,
            focal_spread_A=spec.focal_spread_A,
            convergence_mrad=spec.convergence_mrad,
            detector_blur_px=spec.detector_blur_px,
        )
        graphene = (
            _GrapheneLayer(spec, (ny, nx), p, self.drift_A, rng_graphene)
            if "graphene" in include and spec.graphene_layers > 0
            else None
        )
        liquid = (
            _LiquidLayer(spec, (ny, nx), p, rng_liquid)
            if "liquid" in include and spec.liquid_thickness_A > 0
            else None
        )
        for t in range(self.shape[0]):
            if "particles" in include:
                potential = self.particle_potential(t)
            else:
                potential = np.zeros((ny, nx))
            if graphene is not None:
                potential += graphene.at(t)
            if liquid is not None:
                potential += liquid.next()
            intensity = weak_phase_image(sigma * potential, transfer)
            expected = spec.dose_e_per_A2 * pixel_area * np.clip(intensity, 0.0, None)
            frame = rng_noise.poisson(expected) if spec.noise else expected
            yield frame.astype(np.float32)


def _add_particle(
    potential: np.ndarray,
    model: Particle,
    rotation: Rotation,
    centre_A: np.ndarray,
    *,
    pixel_size_A: float,
    thermal_sigma_A: float,
) -> None:
    """Render one particle in a local box around its centre and add it into the frame."""
    ny, nx = potential.shape
    _, sigmas = potential_gaussians(model.elements[:1], thermal_sigma_A=thermal_sigma_A)
    reach_A = float(np.linalg.norm(model.positions_A, axis=1).max()) + 5 * float(sigmas.max())
    half = int(np.ceil(reach_A / pixel_size_A)) + 1
    box = 2 * half
    ix0, iy0 = (int(round(c / pixel_size_A)) for c in centre_A)
    x_lo, y_lo = ix0 - half, iy0 - half
    xs = slice(max(x_lo, 0), min(x_lo + box, nx))
    ys = slice(max(y_lo, 0), min(y_lo + box, ny))
    if xs.start >= xs.stop or ys.start >= ys.stop:
        return
    positions = rotation.apply(model.positions_A)[:, :2] + centre_A
    local = project_potential(
        positions,
        model.elements,
        shape=(box, box),
        pixel_size_A=pixel_size_A,
        thermal_sigma_A=thermal_sigma_A,
        origin_A=(ix0 * pixel_size_A, iy0 * pixel_size_A),
        dtype=np.float32,
    )
    potential[ys, xs] += local[ys.start - y_lo : ys.stop - y_lo, xs.start - x_lo : xs.stop - x_lo]


class _GrapheneLayer:
    """Static graphene, rendered once on a padded grid and moved with the stage drift (Fourier)."""

    def __init__(self, spec, shape, pixel_size_A, drift_A, rng):
        ny, nx = shape
        reach = np.abs(drift_A).max(axis=0) / pixel_size_A if drift_A.size else np.zeros(2)
        self.margin = int(np.ceil(reach.max())) + 8
        self.shape = shape
        pad = (ny + 2 * self.margin, nx + 2 * self.margin)
        atoms = graphene_positions_A(
            (pad[1] * pixel_size_A, pad[0] * pixel_size_A),
            lattice_A=spec.graphene_lattice_A,
            layers=spec.graphene_layers,
            rng=rng,
        )
        # padded pixel j sits at j · p; tiles keep the cost proportional to the area
        image = np.zeros(pad)
        _, sigmas = potential_gaussians(["C"], thermal_sigma_A=spec.thermal_sigma_A)
        reach = 6 * float(sigmas.max())
        for y0 in range(0, pad[0], _TILE_PX):
            for x0 in range(0, pad[1], _TILE_PX):
                lo = np.array([x0, y0]) * pixel_size_A - reach
                hi = np.array([x0, y0]) * pixel_size_A + (_TILE_PX - 1) * pixel_size_A + reach
                inside = np.all((atoms >= lo) & (atoms <= hi), axis=1)
                if not inside.any():
                    continue
                tile = project_potential(
                    atoms[inside],
                    np.full(int(inside.sum()), "C"),
                    shape=(_TILE_PX, _TILE_PX),
                    pixel_size_A=pixel_size_A,
                    thermal_sigma_A=spec.thermal_sigma_A,
                    origin_A=(
                        (x0 + _TILE_PX // 2) * pixel_size_A,
                        (y0 + _TILE_PX // 2) * pixel_size_A,
                    ),
                    dtype=np.float32,
                )
                view = image[y0 : y0 + _TILE_PX, x0 : x0 + _TILE_PX]
                view += tile[: view.shape[0], : view.shape[1]]
        self.spectrum = np.fft.rfft2(image)
        self.pad = pad
        self.ky = np.fft.fftfreq(pad[0], d=pixel_size_A)[:, None]
        self.kx = np.fft.rfftfreq(pad[1], d=pixel_size_A)[None, :]
        self.drift_A = drift_A

    def at(self, t: int) -> np.ndarray:
        dx, dy = self.drift_A[t]
        ramp = np.exp(-2j * np.pi * (self.kx * dx + self.ky * dy))
        shifted = np.fft.irfft2(self.spectrum * ramp, s=self.pad)
        m = self.margin
        return shifted[m : m + self.shape[0], m : m + self.shape[1]]


class _LiquidLayer:
    """Water: a slowly varying thickness (AR(1) in time) and an amorphous molecular texture.

    The texture is a Gaussian random field with the power spectrum of independently placed
    molecules, ``n_a |v̂(k)|²`` (``n_a`` molecules per Å², ``v̂`` one molecule's projected
    potential), redrawn each frame because molecules move far more than an atom spacing in one
    frame.
    """

    def __init__(self, spec: MovieSpec, shape, pixel_size_A, rng):
        self.spec = spec
        self.shape = shape
        self.p = pixel_size_A
        self.rng = rng
        self.rho = float(np.exp(-1.0 / (spec.frame_rate_hz * spec.liquid_correlation_time_s)))
        self.sigma_px = max(spec.liquid_correlation_A / pixel_size_A, 1.0)
        k = frequency_grid(shape, pixel_size_A)
        self.smooth = np.exp(-2 * (np.pi * self.sigma_px * pixel_size_A) ** 2 * k**2)
        self.smooth *= np.sqrt(4 * np.pi) * self.sigma_px  # unit variance after smoothing
        self.molecule = water_potential_spectrum(k)
        self.field = self._smooth_noise()

    def _smooth_noise(self) -> np.ndarray:
        noise = self.rng.standard_normal(self.shape)
        return np.fft.irfft2(np.fft.rfft2(noise) * self.smooth, s=self.shape)

    def next(self) -> np.ndarray:
        spec = self.spec
        self.field = self.rho * self.field + np.sqrt(1 - self.rho**2) * self._smooth_noise()
        thickness = np.clip(
            spec.liquid_thickness_A * (1 + spec.liquid_thickness_variation * self.field), 0.0, None
        )
        area = self.p * self.p
        per_pixel = WATER_DENSITY_PER_A3 * thickness * area
        counts = self.rng.standard_normal(self.shape) * np.sqrt(per_pixel)
        texture = np.fft.irfft2(np.fft.rfft2(counts) * self.molecule, s=self.shape) / area
        return spec.liquid_inner_potential_V * thickness + texture


def simulate_movie(spec: MovieSpec) -> MovieResult:
    """Simulate a liquid-cell HRTEM movie of Brownian particles with ground truth.

    Particles are built, placed without overlap, and given Brownian orientations and positions plus
    a common stage drift; frames are rendered lazily by iterating over the result (weak-phase
    object, CTF with envelopes, graphene and liquid background, Poisson noise).
    Where thick columns push the weak-phase intensity below zero it is clipped to zero before the
    Poisson draw.

    Parameters
    ----------
    spec : MovieSpec

    Returns
    -------
    MovieResult
    """
    seeds = np.random.SeedSequence(spec.seed).spawn(6)
    rng_particles = np.random.default_rng(seeds[0])
    rng_motion = np.random.default_rng(seeds[1])
    models = [ps.build(rng_particles) for ps in spec.particles]
    n, (ny, nx), p = spec.n_frames, spec.image_shape_px, spec.pixel_size_A
    radii = [float(np.linalg.norm(m.positions_A, axis=1).max()) + 1.5 for m in models]
    # pixel (0, 0) is centred at 0 Å, so the field spans [-p/2, (n - 1/2) p]
    starts = place_particles(
        radii, ((nx - 1) * p, (ny - 1) * p), gap_A=spec.min_separation_A, rng=rng_motion
    )
    time_s = np.arange(n) / spec.frame_rate_hz
    drift = np.asarray(spec.drift_A_per_s)[None, :] * time_s[:, None]
    rotations, centres = [], []
    for i in range(len(models)):
        rotations.append(
            brownian_rotations(
                n,
                rotational_diffusion_rad2_per_s=spec.rotational_diffusion_rad2_per_s,
                frame_rate_hz=spec.frame_rate_hz,
                rng=rng_motion,
            )
        )
        centres.append(
            brownian_translations(
                n,
                starts[i],
                translational_diffusion_A2_per_s=spec.translational_diffusion_A2_per_s,
                drift_A_per_s=spec.drift_A_per_s,
                frame_rate_hz=spec.frame_rate_hz,
                rng=rng_motion,
            )
        )
    centres_arr = np.stack(centres)
    rows = []
    for i, (rot, xy) in enumerate(zip(rotations, centres_arr, strict=True)):
        q = quaternions_from_rotations(rot)
        r = radii[i]
        in_view = (
            (xy[:, 0] - r >= -p / 2)
            & (xy[:, 0] + r <= (nx - 0.5) * p)
            & (xy[:, 1] - r >= -p / 2)
            & (xy[:, 1] + r <= (ny - 0.5) * p)
        )
        rows.append(
            pd.DataFrame(
                {
                    "frame": np.arange(n),
                    "time_s": time_s,
                    "particle": i,
                    "x_A": xy[:, 0],
                    "y_A": xy[:, 1],
                    "qx": q[:, 0],
                    "qy": q[:, 1],
                    "qz": q[:, 2],
                    "qw": q[:, 3],
                    "in_view": in_view,
                }
            )
        )
    trajectory = pd.concat(rows).sort_values(["frame", "particle"], kind="stable")
    return MovieResult(
        spec=spec,
        shape=(n, ny, nx),
        pixel_size_A=float(p),
        particle_models=models,
        atoms=atoms_table(models),
        particles=particles_table(models, spec.particles),
        trajectory=trajectory.reset_index(drop=True),
        drift_A=drift,
        _rotations=rotations,
        _centres_A=centres_arr,
        _seeds=tuple(seeds[2:5]),
    )
