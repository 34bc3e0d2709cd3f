"""A small simulated liquid-cell movie shared by the Brownian tests (rendered once)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nanorecon.io import write_array_zarr
from nanorecon.simulate import MovieSpec, ParticleSpec, simulate_movie

# The shared synthetic particles live beside this file (tests/brownian/synthetic_particles.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Three ~2 nm Pt particles, well inside a 192 × 192 px field and never closer than a diameter
# (seed chosen for that), realistic 50 e/Å² per frame at 400 fps.
SPEC = dict(
    particles=[
        ParticleSpec(shape="sphere", diameter_nm=1.8),
        ParticleSpec(shape="sphere", diameter_nm=2.0),
        ParticleSpec(shape="octahedron", diameter_nm=1.8),
    ],
    n_frames=40,
    image_shape_px=(192, 192),
    min_separation_A=2.0,
    seed=6,
)
DIAMETER_A = 19.0


@pytest.fixture(scope="session")
def movie():
    """(MovieResult, frames (n, y, x) float32)."""
    result = simulate_movie(MovieSpec(**SPEC))
    return result, np.stack(list(result.frames()))


@pytest.fixture(scope="session")
def raw_zarr(movie, tmp_path_factory):
    """The movie as an ingested raw.zarr (attributes as `nanorecon ingest` writes them)."""
    result, frames = movie
    spec = result.spec
    path = tmp_path_factory.mktemp("brownian") / "raw.zarr"
    write_array_zarr(
        path,
        frames,
        attrs={
            "modality": "brownian",
            "pixel_size_A": result.pixel_size_A,
            "voltage_kV": spec.voltage_kV,
            "defocus_A": spec.defocus_A,
            "cs_mm": spec.cs_mm,
            "frame_rate_hz": spec.frame_rate_hz,
            "dose_e_per_A2": spec.dose_e_per_A2,
        },
        chunk_mb=1,
    )
    return path
