"""HAADF tilt series against the geometry conventions, the dose and the truth tables."""

import numpy as np
import pytest

from nanorecon.geometry import quaternions_from_rotations, tilt_series_rotations
from nanorecon.simulate import (
    ParticleSpec,
    TomographySpec,
    haadf_cross_sections_A2,
    project_gaussians,
    simulate_tilt_series,
)


def _spec(**kwargs):
    base = dict(
        particle=ParticleSpec(shape="octahedron", diameter_nm=1.6),
        tilt_step_deg=140 / 30,
        tilt_axis_deg=20.0,
        seed=11,
    )
    base.update(kwargs)
    return TomographySpec(**base)


@pytest.fixture(scope="module")
def clean():
    return simulate_tilt_series(_spec(noise=False, support_thickness_A=0.0))


def _rot(axis, angle_deg):
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_centre_of_mass_sits_at_centre_plus_true_shift(clean):
    images = clean.images.astype(np.float64)
    n, ny, nx = images.shape
    assert n == 31
    yy, xx = np.mgrid[:ny, :nx]
    total = images.sum(axis=(1, 2))
    com_x = (images * xx).sum(axis=(1, 2)) / total - nx // 2
    com_y = (images * yy).sum(axis=(1, 2)) / total - ny // 2
    p = clean.pixel_size_A
    np.testing.assert_allclose(com_x, clean.tilts["shift_x_A"] / p, atol=0.02)
    np.testing.assert_allclose(com_y, clean.tilts["shift_y_A"] / p, atol=0.02)
    assert np.abs(clean.tilts[["shift_x_A", "shift_y_A"]].to_numpy() / p).max() <= 3.0
    # every atom adds dose · σ_i counts
    sigma = haadf_cross_sections_A2(clean.particle.elements, cross_section_scale_A2=1e-5)
    np.testing.assert_allclose(total, 5e4 * sigma.sum(), rtol=1e-4)


def test_image_equals_projection_of_atoms_rotated_per_conventions(clean):
    spec = clean.spec
    sigma = haadf_cross_sections_A2(clean.particle.elements, cross_section_scale_A2=1e-5)
    blur = np.hypot(spec.probe_sigma_A, spec.thermal_sigma_A)
    for k in (0, 9, 30):
        row = clean.tilts.iloc[k]
        # R_k = Rz(tilt_axis) · Ry(θ_true), written out by hand
        r = _rot("z", spec.tilt_axis_deg) @ _rot("y", row["tilt_true_deg"])
        pos = clean.particle.positions_A @ r.T
        pos[:, 0] += row["shift_x_A"]
        pos[:, 1] += row["shift_y_A"]
        expected = spec.dose_e_per_A2 * project_gaussians(
            pos, sigma, shape=clean.images.shape[1:], pixel_size_A=spec.pixel_size_A, sigma_A=blur
        )
        np.testing.assert_allclose(clean.images[k], expected, rtol=1e-5, atol=1e-3)


def test_truth_tables_match_geometry(clean):
    tilts = clean.tilts
    np.testing.assert_allclose(tilts["tilt_nominal_deg"], np.linspace(-70, 70, 31))
    np.testing.assert_array_equal(clean.tilt_angles_deg, tilts["tilt_nominal_deg"])
    errors = tilts["tilt_true_deg"] - tilts["tilt_nominal_deg"]
    assert 0.5 < np.sqrt(np.mean(errors**2)) < 1.6  # RMS 1° from 31 samples
    q = quaternions_from_rotations(tilt_series_rotations(tilts["tilt_true_deg"], tilt_axis_deg=20))
    np.testing.assert_allclose(tilts[["qx", "qy", "qz", "qw"]].to_numpy(), q, atol=1e-12)
    assert list(clean.atoms.columns) == ["particle", "x_A", "y_A", "z_A", "element"]
    assert len(clean.atoms) == clean.particles["n_atoms"].iloc[0]


def test_poisson_noise_matches_expected_counts(clean):
    noisy_spec = _spec(dose_e_per_A2=5e3)
    expected = simulate_tilt_series(_spec(dose_e_per_A2=5e3, noise=False)).images.astype(float)
    noisy = simulate_tilt_series(noisy_spec).images.astype(float)
    assert np.all(noisy == np.round(noisy)) and noisy.min() >= 0
    bright = expected > 5
    z = (noisy[bright] - expected[bright]) / np.sqrt(expected[bright])
    assert bright.sum() > 5000
    assert abs(z.mean()) < 0.05
    assert z.var() == pytest.approx(1.0, abs=0.08)
    # background: D · p² · f_bg with f_bg = 0.1 Å⁻³ · 30 Å / cos θ · σ_C on average
    f_bg = 0.1 * 30.0 * 1e-5 * 6**1.7
    corner = expected[15, :4, :4]  # zero tilt, far from the particle
    assert corner.mean() == pytest.approx(5e3 * 0.35**2 * f_bg, rel=0.3)


def test_seed_reproducible_and_gaussian_shifts():
    a = simulate_tilt_series(_spec(shift_distribution="gaussian", tilt_step_deg=35.0))
    b = simulate_tilt_series(_spec(shift_distribution="gaussian", tilt_step_deg=35.0))
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.dtype == np.float32


def test_spec_rejects_unknown_keys():
    with pytest.raises(ValueError, match="'tilt_stepp_deg'"):
        TomographySpec.from_dict({"tilt_stepp_deg": 2.0})
    with pytest.raises(ValueError, match="'diametre_nm'"):
        TomographySpec.from_dict({"particle": {"diametre_nm": 2.0}})
    spec = TomographySpec.from_dict({"particle": {"diameter_nm": 2.5}, "seed": 4})
    assert spec.particle.diameter_nm == 2.5 and spec.seed == 4
