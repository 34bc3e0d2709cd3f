"""Simulation specifications: every parameter with its default, built from plain dictionaries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._particles import SHAPES, Particle, make_particle


def _check_keys(cls: type, d: dict[str, Any]) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} must be given as a mapping, not {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in known:
            raise ValueError(
                f"unknown key {key!r} in {cls.__name__}; known keys: {', '.join(sorted(known))}"
            )


def _split(value: Any) -> list:
    """Accept ``["Fe", "Pt"]``, ``"Fe:Pt"`` or ``"Pt"``; ``[50, 50]`` or ``"50:50"``."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(":") if v.strip()]
    return list(value)


@dataclass
class ParticleSpec:
    """One particle: shape, size, chemistry and structural distortions.

    Attributes
    ----------
    shape : str
        ``"sphere"``, ``"octahedron"``, ``"decahedron"`` or ``"icosahedron"``.
    diameter_nm : float
        Volume-equivalent diameter [nm].
    elements : list of str
        Chemical symbols (``"Fe:Pt"`` is accepted too).
    composition : list of float, optional
        Relative amounts per element (``"50:50"`` accepted); default equal.
    lattice_parameter_A : float, optional
        fcc lattice parameter [Å]; default Vegard average of the bulk values.
    surface_strain : float
        Relative radial displacement at the surface.
    strain_decay_length_A : float
        Decay length of the surface relaxation [Å].
    static_displacement_A : float
        Random static displacement per coordinate, standard deviation [Å].
    octahedron_truncation : float
        Vertex truncation of octahedra in [0, 1).
    """

    shape: str = "octahedron"
    diameter_nm: float = 2.0
    elements: list[str] = field(default_factory=lambda: ["Pt"])
    composition: list[float] | None = None
    lattice_parameter_A: float | None = None
    surface_strain: float = 0.0
    strain_decay_length_A: float = 2.5
    static_displacement_A: float = 0.05
    octahedron_truncation: float = 0.0

    def __post_init__(self) -> None:
        self.elements = [str(e) for e in _split(self.elements)]
        if self.composition is not None:
            self.composition = [float(c) for c in _split(self.composition)]
            if len(self.composition) != len(self.elements):
                raise ValueError(
                    f"composition {self.composition} needs one value per element {self.elements}"
                )
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, not {self.shape!r}")
        if self.diameter_nm <= 0:
            raise ValueError(f"diameter_nm must be positive, got {self.diameter_nm}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParticleSpec:
        """Build from a mapping; unknown keys raise ``ValueError`` naming the key."""
        _check_keys(cls, d)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def build(self, rng: np.random.Generator) -> Particle:
        """Make the particle (:func:`make_particle`) with this spec's parameters."""
        return make_particle(
            shape=self.shape,
            diameter_nm=self.diameter_nm,
            elements=self.elements,
            composition=self.composition,
            lattice_parameter_A=self.lattice_parameter_A,
            surface_strain=self.surface_strain,
            strain_decay_length_A=self.strain_decay_length_A,
            static_displacement_A=self.static_displacement_A,
            octahedron_truncation=self.octahedron_truncation,
            rng=rng,
        )


@dataclass
class TomographySpec:
    """A HAADF-STEM tilt series of one particle (atomic electron tomography).

    Attributes
    ----------
    particle : ParticleSpec
    tilt_min_deg, tilt_max_deg, tilt_step_deg : float
        Nominal tilt range and step [deg].
    tilt_error_rms_deg : float
        RMS of the Gaussian error added to each nominal tilt [deg].
    tilt_axis_deg : float
        Tilt axis direction in the images, counter-clockwise from the image y axis [deg].
    shift_max_px : float
        Per-image shift: half-width of the uniform distribution, or standard deviation for
        ``shift_distribution="gaussian"`` [px].
    shift_distribution : str
        ``"uniform"`` or ``"gaussian"``.
    image_size_px : int, optional
        Square image edge [px]; default: the particle plus shifts plus a 10 Å margin, even.
    pixel_size_A : float
        [Å].
    voltage_kV : float
        Accelerating voltage [kV] (recorded; HAADF contrast is taken as voltage independent).
    probe_sigma_A : float
        Gaussian probe standard deviation [Å] (0.34 Å ≈ 0.8 Å FWHM, aberration corrected).
    thermal_sigma_A : float
        Thermal vibration amplitude per axis [Å], added in quadrature to the probe.
    dose_e_per_A2 : float
        Electron dose per image [e/Å²].
    cross_section_scale_A2 : float
        HAADF cross-section of an atom = scale · Z^1.7 [Å²].
    support_thickness_A : float
        Amorphous carbon support thickness along the beam at zero tilt [Å].
    background_texture : float
        Relative RMS of the smooth support texture.
    background_correlation_A : float
        Correlation length of the support texture [Å].
    noise : bool
        Apply Poisson noise (off: expected counts).
    seed : int
    """

    particle: ParticleSpec = field(default_factory=ParticleSpec)
    tilt_min_deg: float = -70.0
    tilt_max_deg: float = 70.0
    tilt_step_deg: float = 2.0
    tilt_error_rms_deg: float = 1.0
    tilt_axis_deg: float = 0.0
    shift_max_px: float = 3.0
    shift_distribution: str = "uniform"
    image_size_px: int | None = None
    pixel_size_A: float = 0.35
    voltage_kV: float = 300.0
    probe_sigma_A: float = 0.34
    thermal_sigma_A: float = 0.08
    dose_e_per_A2: float = 5.0e4
    cross_section_scale_A2: float = 1.0e-5
    support_thickness_A: float = 30.0
    background_texture: float = 0.2
    background_correlation_A: float = 5.0
    noise: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.particle, dict):
            self.particle = ParticleSpec.from_dict(self.particle)
        if self.shift_distribution not in ("uniform", "gaussian"):
            raise ValueError(
                "shift_distribution must be 'uniform' or 'gaussian', "
                f"not {self.shift_distribution!r}"
            )
        if self.tilt_step_deg <= 0 or self.tilt_max_deg < self.tilt_min_deg:
            raise ValueError("need tilt_step_deg > 0 and tilt_max_deg >= tilt_min_deg")
        if self.pixel_size_A <= 0 or self.dose_e_per_A2 <= 0:
            raise ValueError("pixel_size_A and dose_e_per_A2 must be positive")

    @property
    def nominal_tilts_deg(self) -> np.ndarray:
        n = int(np.floor((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg + 1e-9)) + 1
        return self.tilt_min_deg + self.tilt_step_deg * np.arange(n)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TomographySpec:
        """Build from a mapping; unknown keys raise ``ValueError`` naming the key."""
        _check_keys(cls, d)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MovieSpec:
    """A liquid-cell HRTEM movie of several Brownian particles (one-particle reconstruction).

    Attributes
    ----------
    particles : list of ParticleSpec
    n_frames : int
    frame_rate_hz : float
    image_shape_px : (int, int)
        (ny, nx) [px].
    pixel_size_A : float
    voltage_kV : float
    dose_e_per_A2 : float
        Dose per frame [e/Å²].
    defocus_A : float
        Defocus, positive = underfocus (CTFFIND/RELION) [Å].
    cs_mm : float
        Spherical aberration [mm].
    focal_spread_A : float
        Standard deviation of the defocus spread (temporal coherence) [Å].
    convergence_mrad : float
        Illumination semi-angle (spatial coherence) [mrad].
    detector_blur_px : float
        Gaussian detector point-spread standard deviation [px] (MTF); 0 for none.
    thermal_sigma_A : float
        Thermal vibration amplitude per axis [Å].
    rotational_diffusion_rad2_per_s : float
        Rotational diffusion constant D_r [rad²/s]; RMS step angle per frame = √(6 D_r Δt).
    translational_diffusion_A2_per_s : float
        In-plane diffusion constant D_t [Å²/s]; RMS step per axis per frame = √(2 D_t Δt).
    drift_A_per_s : (float, float)
        Common stage drift (x, y) [Å/s].
    graphene_layers : int
    graphene_lattice_A : float
    liquid_thickness_A : float
        Mean water-layer thickness [Å].
    liquid_thickness_variation : float
        Relative RMS of the slowly varying thickness.
    liquid_correlation_A : float
        Lateral correlation length of the thickness variation [Å].
    liquid_correlation_time_s : float
        Correlation time of the thickness variation [s].
    liquid_inner_potential_V : float
        Mean inner potential of water [V].
    min_separation_A : float
        Extra gap between particles at frame 0 [Å].
    noise : bool
    seed : int
    """

    particles: list[ParticleSpec] = field(
        default_factory=lambda: [
            ParticleSpec(shape="octahedron", diameter_nm=2.4),
            ParticleSpec(shape="decahedron", diameter_nm=2.6),
        ]
    )
    n_frames: int = 100
    frame_rate_hz: float = 400.0
    image_shape_px: tuple[int, int] = (256, 256)
    pixel_size_A: float = 0.36
    voltage_kV: float = 300.0
    dose_e_per_A2: float = 50.0
    defocus_A: float = 100.0
    cs_mm: float = 0.001
    focal_spread_A: float = 30.0
    convergence_mrad: float = 0.1
    detector_blur_px: float = 0.0
    thermal_sigma_A: float = 0.08
    rotational_diffusion_rad2_per_s: float = 0.4
    translational_diffusion_A2_per_s: float = 50.0
    drift_A_per_s: tuple[float, float] = (20.0, -10.0)
    graphene_layers: int = 2
    graphene_lattice_A: float = 2.46
    liquid_thickness_A: float = 50.0
    liquid_thickness_variation: float = 0.2
    liquid_correlation_A: float = 30.0
    liquid_correlation_time_s: float = 0.05
    liquid_inner_potential_V: float = 4.0
    min_separation_A: float = 5.0
    noise: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.particles = [
            ParticleSpec.from_dict(p) if isinstance(p, dict) else p for p in self.particles
        ]
        if not self.particles:
            raise ValueError("particles must list at least one particle")
        self.image_shape_px = tuple(int(s) for s in np.broadcast_to(self.image_shape_px, (2,)))
        self.drift_A_per_s = tuple(float(v) for v in self.drift_A_per_s)
        if self.n_frames < 1 or self.frame_rate_hz <= 0:
            raise ValueError("n_frames must be >= 1 and frame_rate_hz positive")
        if self.pixel_size_A <= 0 or self.dose_e_per_A2 <= 0:
            raise ValueError("pixel_size_A and dose_e_per_A2 must be positive")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MovieSpec:
        """Build from a mapping; unknown keys raise ``ValueError`` naming the key."""
        _check_keys(cls, d)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape_px"] = list(self.image_shape_px)
        d["drift_A_per_s"] = list(self.drift_A_per_s)
        return d
