"""Shared synthetic particles of the Brownian tests (imported through tests/brownian/conftest.py)."""

from __future__ import annotations

import numpy as np

from nanorecon.simulate import brownian_rotations, make_particle, project_potential


def asymmetric_particle(rng: np.random.Generator, diameter_nm: float):
    """Pt atoms of an fcc crystal cut to a triaxial ellipsoid with one flat facet.

    A perfect crystal sphere is (nearly) as symmetric as its lattice, so its orientations would
    only be defined up to the point group; this shape has no symmetry. Returns (positions [Å],
    centred; elements).
    """
    crystal = make_particle(shape="sphere", diameter_nm=1.3 * diameter_nm, rng=rng)
    positions = crystal.positions_A
    radius_A = 5.0 * diameter_nm
    keep = ((positions / (np.array([1.15, 0.95, 0.75]) * radius_A)) ** 2).sum(axis=1) <= 1
    facet = np.array([0.3, -0.5, 0.81]) / np.linalg.norm([0.3, -0.5, 0.81])
    keep &= positions @ facet < 0.5 * radius_A
    positions = positions[keep] - positions[keep].mean(axis=0)
    return positions, crystal.elements[keep]


def tumbling_stack(
    n_frames: int,
    size: int,
    seed: int,
    *,
    step_rms_deg: float,
    pixel_size_A: float = 0.7,
    frame_rate_hz: float = 400.0,
):
    """Frames of a ~100-atom Pt particle (:func:`asymmetric_particle`, 1.6 nm) tumbling with an
    RMS step of `step_rms_deg` per frame, centred in boxes of `size` pixels.

    The projected potential scaled to unit standard deviation plus white noise of 0.5 (atoms
    bright). Returns (images, true rotations, rotational diffusion [rad²/s], atom positions [Å]).
    """
    rng = np.random.default_rng(seed)
    positions, elements = asymmetric_particle(rng, 1.6)
    diffusion = np.radians(step_rms_deg) ** 2 * frame_rate_hz / 6
    rotations = brownian_rotations(
        n_frames, rotational_diffusion_rad2_per_s=diffusion, frame_rate_hz=frame_rate_hz, rng=rng
    )
    images = np.stack(
        [
            project_potential(
                r.apply(positions), elements, shape=(size, size), pixel_size_A=pixel_size_A
            )
            for r in rotations
        ]
    ).astype(np.float32)
    images /= images.std()
    images += rng.normal(0, 0.5, images.shape).astype(np.float32)
    return images, rotations, diffusion, positions
