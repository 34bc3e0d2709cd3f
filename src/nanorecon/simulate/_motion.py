"""Brownian rotation and translation of particles in a liquid, plus common stage drift."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation


def rotation_step_rms_deg(rotational_diffusion_rad2_per_s: float, frame_rate_hz: float) -> float:
    """RMS rotation angle per frame ``√(6 D_r Δt)`` [deg] (three independent axes of ``2 D_r Δt``).

    Examples
    --------
    >>> round(rotation_step_rms_deg(0.4, 400.0), 2)
    4.44
    """
    return float(np.rad2deg(np.sqrt(6.0 * rotational_diffusion_rad2_per_s / frame_rate_hz)))


def brownian_rotations(
    n_frames: int,
    *,
    rotational_diffusion_rad2_per_s: float,
    frame_rate_hz: float,
    rng: np.random.Generator,
    initial: Rotation | None = None,
) -> Rotation:
    """Orientations (particle → microscope) of a freely rotating particle, one per frame.

    Each step is a rotation vector with independent Gaussian components of variance ``2 D_r Δt``
    [rad²] (small-step isotropic rotational diffusion), applied in the microscope frame:
    ``R_{t+1} = ΔR_t · R_t``.
    """
    initial = Rotation.random(random_state=rng) if initial is None else initial
    sigma = np.sqrt(2.0 * rotational_diffusion_rad2_per_s / frame_rate_hz)
    steps = Rotation.from_rotvec(rng.normal(0.0, sigma, (max(n_frames - 1, 0), 3)))
    out = [initial]
    for k in range(n_frames - 1):
        out.append(steps[k] * out[-1])
    return Rotation.concatenate(out)


def brownian_translations(
    n_frames: int,
    start_A: Sequence[float],
    *,
    translational_diffusion_A2_per_s: float,
    drift_A_per_s: Sequence[float],
    frame_rate_hz: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """In-plane positions (x, y) [Å] per frame, shape (n_frames, 2).

    2D diffusion (step variance ``2 D_t Δt`` per axis) plus a constant drift.
    """
    dt = 1.0 / frame_rate_hz
    steps = rng.normal(0.0, np.sqrt(2.0 * translational_diffusion_A2_per_s * dt), (n_frames, 2))
    steps[0] = 0.0
    steps += np.asarray(drift_A_per_s, dtype=float) * dt
    steps[0] = 0.0
    return np.asarray(start_A, dtype=float) + np.cumsum(steps, axis=0)


def place_particles(
    radii_A: Sequence[float],
    field_A: Sequence[float],
    *,
    gap_A: float,
    rng: np.random.Generator,
    max_tries: int = 10000,
) -> np.ndarray:
    """Random non-overlapping centres (x, y) [Å] inside ``[0, fx] × [0, fy]`` with each particle
    fully inside and at least `gap_A` between surfaces (rejection sampling, largest first)."""
    radii = np.asarray(radii_A, dtype=float)
    fx, fy = (float(v) for v in field_A)
    centres = np.zeros((radii.size, 2))
    placed: list[int] = []
    for i in np.argsort(-radii):
        r = radii[i] + gap_A / 2
        for _ in range(max_tries):
            if fx < 2 * r or fy < 2 * r:
                break
            c = rng.uniform([r, r], [fx - r, fy - r])
            if all(np.hypot(*(c - centres[j])) >= radii[i] + radii[j] + gap_A for j in placed):
                centres[i] = c
                placed.append(int(i))
                break
        else:
            raise ValueError(
                f"cannot place {radii.size} particles without overlap in a "
                f"{fx:.0f} × {fy:.0f} Å field"
            )
        if int(i) not in placed:
            raise ValueError(f"a particle of radius {radii[i]:.1f} Å does not fit the field")
    return centres
