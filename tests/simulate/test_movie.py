"""HRTEM optics, Brownian motion and the liquid-cell movie against their formulas and the truth."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nanorecon.simulate import (
    MovieSpec,
    ParticleSpec,
    aberration_phase,
    brownian_rotations,
    brownian_translations,
    contrast_transfer,
    electron_wavelength_A,
    interaction_constant,
    place_particles,
    potential_gaussians,
    rotation_step_rms_deg,
    simulate_movie,
)

SMALL = dict(
    particles=[ParticleSpec(shape="octahedron", diameter_nm=1.6), ParticleSpec(diameter_nm=1.4)],
    n_frames=6,
    image_shape_px=(160, 160),
    seed=2,
)


def test_wavelength_and_interaction_constant():
    assert electron_wavelength_A(300.0) == pytest.approx(0.019687, abs=2e-6)
    assert electron_wavelength_A(200.0) == pytest.approx(0.025079, abs=2e-6)
    assert interaction_constant(300.0) == pytest.approx(6.5262e-4, rel=1e-3)  # Kirkland


def test_projected_potential_integral_is_47_878_times_f0():
    weights, sigmas = potential_gaussians(["Pt", "C"], thermal_sigma_A=0.1)
    assert weights[0].sum() == pytest.approx(47.878 * (0.9148 + 1.8096 + 3.2134 + 3.2953 + 1.5754))
    assert np.all(sigmas >= 0.1)
    with pytest.raises(ValueError, match="Xe"):
        potential_gaussians(["Xe"])


def test_ctf_formula_and_sign():
    shape, p = (64, 64), 0.36
    t = contrast_transfer(shape, p, voltage_kV=300, defocus_A=100, cs_mm=0.001)
    kx = np.fft.rfftfreq(64, d=p)
    chi = np.pi * 0.0196875 * 100 * kx**2 - 0.5 * np.pi * 1e4 * 0.0196875**3 * kx**4
    np.testing.assert_allclose(t[0], np.sin(chi), atol=1e-4)
    assert np.all(t[0, 1:8] > 0)  # underfocus: positive sin χ at low k, atoms dark
    damped = contrast_transfer(
        shape,
        p,
        voltage_kV=300,
        defocus_A=100,
        cs_mm=0.001,
        focal_spread_A=30,
        convergence_mrad=0.2,
    )
    assert np.all(np.abs(damped) <= np.abs(t) + 1e-12)


def test_ctf_zeros_in_power_spectrum_of_amorphous_liquid():
    defocus = 500.0
    spec = MovieSpec(
        **{**SMALL, "image_shape_px": (256, 256), "n_frames": 4},
        defocus_A=defocus,
        noise=False,
        liquid_thickness_variation=0.0,
    )
    movie = simulate_movie(spec)
    power = np.zeros((256, 129))
    for frame in movie.frames(include=("liquid",)):
        power += np.abs(np.fft.rfft2(frame - frame.mean())) ** 2
    k = np.hypot(np.fft.fftfreq(256, d=0.36)[:, None], np.fft.rfftfreq(256, d=0.36)[None, :])
    dk = 1 / (256 * 0.36)
    bins = np.round(k / dk).astype(int)
    radial = np.bincount(bins.ravel(), power.ravel()) / np.bincount(bins.ravel())
    k_axis = np.arange(radial.size) * dk
    fine = np.linspace(0.05, 1.0, 20000)
    chi = aberration_phase(fine, voltage_kV=300, defocus_A=defocus, cs_mm=0.001)
    for n in (1, 2, 3, 4):
        k_zero = fine[np.argmin(np.abs(chi - n * np.pi))]
        window = np.abs(k_axis - k_zero) < 0.04
        k_min = k_axis[window][np.argmin(radial[window])]
        assert abs(k_min - k_zero) <= 1.5 * dk, (n, k_min, k_zero)
        assert radial[window].min() < 0.05 * radial[window].max()


def test_rotation_and_translation_steps_follow_diffusion_constants():
    rng = np.random.default_rng(0)
    rot = brownian_rotations(4001, rotational_diffusion_rad2_per_s=0.4, frame_rate_hz=400, rng=rng)
    steps = (rot[1:] * rot[:-1].inv()).magnitude()
    rms = np.rad2deg(np.sqrt(np.mean(steps**2)))
    assert rms == pytest.approx(rotation_step_rms_deg(0.4, 400), rel=0.04)
    assert rotation_step_rms_deg(0.4, 400) == pytest.approx(np.rad2deg(np.sqrt(6 * 0.4 / 400)))
    xy = brownian_translations(
        4001,
        (10.0, 20.0),
        translational_diffusion_A2_per_s=50.0,
        drift_A_per_s=(40.0, -20.0),
        frame_rate_hz=400,
        rng=rng,
    )
    d = np.diff(xy, axis=0)
    np.testing.assert_allclose(xy[0], (10.0, 20.0))
    np.testing.assert_allclose(d.mean(axis=0), (0.1, -0.05), atol=0.02)
    np.testing.assert_allclose(d.var(axis=0), 2 * 50.0 / 400, rtol=0.08)


def test_placement_does_not_overlap():
    rng = np.random.default_rng(3)
    radii = [10.0, 12.0, 9.0, 11.0]
    c = place_particles(radii, (120.0, 120.0), gap_A=5.0, rng=rng)
    for i in range(4):
        assert radii[i] <= c[i, 0] <= 120 - radii[i] and radii[i] <= c[i, 1] <= 120 - radii[i]
        for j in range(i):
            assert np.hypot(*(c[i] - c[j])) >= radii[i] + radii[j] + 5.0
    with pytest.raises(ValueError, match="place"):
        place_particles([30.0, 30.0], (70.0, 70.0), gap_A=5.0, rng=rng)


@pytest.fixture(scope="module")
def movie():
    return simulate_movie(MovieSpec(**SMALL))


def test_truth_positions_match_the_particles_in_the_frame(movie):
    p = movie.pixel_size_A
    ny, nx = movie.shape[1:]
    yy, xx = np.mgrid[:ny, :nx] * p
    for t in (0, 5):
        potential = movie.particle_potential(t)
        rows = movie.trajectory[movie.trajectory["frame"] == t]
        for _, row in rows.iterrows():
            model = movie.particle_models[int(row["particle"])]
            radius = np.linalg.norm(model.positions_A, axis=1).max() + 4.0
            mask = np.hypot(xx - row["x_A"], yy - row["y_A"]) < radius
            w = potential * mask
            # the whole particle is there: Σ V_z · p² = Σ 47.878 · f(0) over its atoms [V·Å³]
            total = potential_gaussians(model.elements)[0].sum()
            assert w.sum() * p**2 == pytest.approx(total, rel=1e-3)
            # single-element particle: potential centre = atom centroid = truth position
            assert (w * xx).sum() / w.sum() == pytest.approx(row["x_A"], abs=0.02 * p)
            assert (w * yy).sum() / w.sum() == pytest.approx(row["y_A"], abs=0.02 * p)
            # orientation in the table is the one that projects the atoms
            r = Rotation.from_quat(row[["qx", "qy", "qz", "qw"]].to_numpy(float))
            proj = r.apply(model.positions_A)[:, :2].mean(axis=0)
            np.testing.assert_allclose(proj, 0.0, atol=1e-9)


def test_noiseless_contrast_is_centred_on_the_truth(movie):
    spec = MovieSpec(**SMALL, noise=False)
    clean = simulate_movie(spec)
    frame = next(clean.frames(include=("particles",)))
    contrast = (frame / frame.mean() - 1.0) ** 2
    p = clean.pixel_size_A
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]] * p
    for _, row in clean.trajectory[clean.trajectory["frame"] == 0].iterrows():
        mask = np.hypot(xx - row["x_A"], yy - row["y_A"]) < 16.0
        w = contrast * mask
        assert (w * xx).sum() / w.sum() == pytest.approx(row["x_A"], abs=1.5)
        assert (w * yy).sum() / w.sum() == pytest.approx(row["y_A"], abs=1.5)


def test_frames_are_float32_counts_reproducible_and_dose_scaled(movie):
    first = list(movie)
    second = list(movie.frames())
    assert len(first) == 6 and first[0].dtype == np.float32 and first[0].shape == (160, 160)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    mean = np.mean([f.mean() for f in first])
    assert mean == pytest.approx(50.0 * 0.36**2, rel=0.03)  # dose · pixel area
    assert np.all(np.concatenate(first) == np.round(np.concatenate(first)))
    table = movie.trajectory
    assert list(table.columns) == [
        "frame",
        "time_s",
        "particle",
        "x_A",
        "y_A",
        "qx",
        "qy",
        "qz",
        "qw",
        "in_view",
    ]
    assert len(table) == 6 * 2
    np.testing.assert_allclose(table["time_s"].unique(), np.arange(6) / 400.0)
    assert table["in_view"].all()
