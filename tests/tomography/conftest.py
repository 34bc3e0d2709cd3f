"""Small simulated tilt series for the front-end tests."""

from __future__ import annotations

import numpy as np
import pytest

from nanorecon.geometry import rotations_from_quaternions
from nanorecon.simulate import TomographySpec, simulate_tilt_series


def _series(tilt_axis_deg: float, seed: int):
    spec = TomographySpec(
        particle={"shape": "sphere", "diameter_nm": 1.5, "elements": ["Pt"]},
        tilt_min_deg=-60.0,
        tilt_max_deg=60.0,
        tilt_step_deg=4.0,
        tilt_axis_deg=tilt_axis_deg,
        shift_max_px=3.0,
        pixel_size_A=0.4,
        seed=seed,
    )
    result = simulate_tilt_series(spec)
    truth = {
        "rotations": rotations_from_quaternions(result.tilts[["qx", "qy", "qz", "qw"]].to_numpy()),
        "shifts_A": result.tilts[["shift_x_A", "shift_y_A"]].to_numpy(),
    }
    return result, truth


@pytest.fixture(scope="session")
def tilt_series():
    """1.5 nm Pt sphere, ±60° in 4° steps (31 images), 0.4 Å/px, ±3 px shifts, axis 0°."""
    return _series(0.0, 1)


@pytest.fixture(scope="session")
def make_series():
    return _series


def rms(values) -> float:
    return float(np.sqrt(np.mean(np.square(values))))
