"""Fourier-space coverage of a set of projections: the largest unsampled gap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nanorecon.geometry import largest_fourier_gap_deg, tilt_series_rotations


@pytest.mark.parametrize("max_tilt", [60.0, 70.0])
def test_single_axis_tilt_series_leaves_its_missing_wedge(max_tilt):
    rotations = tilt_series_rotations(np.arange(-max_tilt, max_tilt + 0.1, 1.0), tilt_axis_deg=25.0)
    assert largest_fourier_gap_deg(rotations) == pytest.approx(90.0 - max_tilt, abs=1.0)


def test_one_view_leaves_the_beam_direction_unsampled():
    assert largest_fourier_gap_deg(Rotation.random(random_state=1)) == pytest.approx(90.0, abs=1.0)


def test_views_spread_over_the_sphere_leave_no_gap():
    rotations = Rotation.random(3000, random_state=2)
    assert largest_fourier_gap_deg(rotations) < 4.0


def test_views_within_a_cone_leave_a_missing_cone():
    # viewing directions within 30° of the map's z axis: Fourier directions near z are 60° from
    # every sampled plane
    rng = np.random.default_rng(3)
    tilt = np.degrees(np.arccos(rng.uniform(np.cos(np.radians(30.0)), 1.0, 4000)))
    angles = np.column_stack([rng.uniform(0, 360, 4000), tilt, rng.uniform(0, 360, 4000)])
    rotations = Rotation.from_euler("ZYZ", angles, degrees=True).inv()
    views = rotations.as_matrix()[:, 2, :]
    assert np.degrees(np.arccos(np.abs(views[:, 2]).min())) <= 30.0 + 1e-6
    assert largest_fourier_gap_deg(rotations) == pytest.approx(60.0, abs=1.5)


def test_matrices_and_rotations_agree_and_bad_input_is_refused():
    rotations = Rotation.random(50, random_state=4)
    assert largest_fourier_gap_deg(rotations.as_matrix()) == largest_fourier_gap_deg(rotations)
    assert largest_fourier_gap_deg(rotations, chunk=7) == largest_fourier_gap_deg(rotations)
    with pytest.raises(ValueError, match="3 × 3"):
        largest_fourier_gap_deg(np.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match="3 × 3"):
        largest_fourier_gap_deg(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="n_directions"):
        largest_fourier_gap_deg(rotations, n_directions=1)
