import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nanorecon.geometry import rotations_from_euler, tilt_series_rotations
from nanorecon.refine import FourierSliceProjector, backproject, project


def _gaussian_images(positions_A, rotations, shifts_A, size, voxel_size_A, sigma_A):
    """Analytic line integrals [voxel units] of unit-height 3D Gaussians: 2D Gaussians."""
    axis = (np.arange(size) - size // 2) * voxel_size_A
    amplitude = np.sqrt(2 * np.pi) * sigma_A / voxel_size_A
    images = np.zeros((len(rotations), size, size))
    for k, rotation in enumerate(rotations):
        for x, y, _ in rotation.apply(positions_A):
            gx = np.exp(-((axis - x - shifts_A[k, 0]) ** 2) / (2 * sigma_A**2))
            gy = np.exp(-((axis - y - shifts_A[k, 1]) ** 2) / (2 * sigma_A**2))
            images[k] += amplitude * gy[:, None] * gx[None, :]
    return images


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float32, 2e-5), (np.float64, 1e-11)])
@pytest.mark.parametrize("size", [20, 21])
def test_adjoint_identity(dtype, tolerance, size):
    rng = np.random.default_rng(size)
    rotations = Rotation.random(9, random_state=3)
    shifts_A = rng.uniform(-2, 2, (9, 2))
    x = rng.standard_normal((size,) * 3).astype(dtype)
    y = rng.standard_normal((9, size, size)).astype(dtype)
    weights = rng.uniform(0.5, 2, 9)
    px = project(x, rotations, shifts_A=shifts_A, voxel_size_A=0.7)
    pty = backproject(y, rotations, shifts_A=shifts_A, voxel_size_A=0.7, weights=weights)
    assert px.dtype == dtype and pty.dtype == dtype
    left = np.vdot(px.astype(np.float64) * weights[:, None, None], y)
    right = np.vdot(x.astype(np.float64), pty)
    assert abs(left - right) / abs(left) < tolerance


def test_matches_real_space_projector(render_gaussians, real_space_projection):
    rng = np.random.default_rng(1)
    size, voxel_size_A, sigma_A = 32, 0.5, 0.9
    positions = rng.uniform(-4, 4, (12, 3))
    volume = render_gaussians(positions, size, voxel_size_A, sigma_A)
    rotations = Rotation.random(4, random_state=5)
    images = project(volume, rotations)
    for image, matrix in zip(images, rotations.as_matrix(), strict=True):
        reference = real_space_projection(volume, matrix)
        assert np.linalg.norm(image - reference) / np.linalg.norm(reference) < 1e-2


def test_gaussians_project_to_analytic_gaussians_with_shifts(render_gaussians):
    rng = np.random.default_rng(2)
    size, voxel_size_A, sigma_A = 40, 0.45, 0.6
    positions = rng.uniform(-5, 5, (8, 3))
    volume = render_gaussians(positions, size, voxel_size_A, sigma_A)
    rotations = rotations_from_euler(rng.uniform(-180, 180, (5, 3)))
    shifts_A = rng.uniform(-2, 2, (5, 2))
    images = project(volume, rotations, shifts_A=shifts_A, voxel_size_A=voxel_size_A)
    expected = _gaussian_images(positions, rotations, shifts_A, size, voxel_size_A, sigma_A)
    error = np.linalg.norm(images - expected, axis=(1, 2)) / np.linalg.norm(expected, axis=(1, 2))
    # σ = 1.3 voxels: the spectrum is exp(-8.8) ≈ 1.5e-4 of its peak at Nyquist, cut by the disk.
    assert error.max() < 5e-4


def test_integer_shift_moves_image_exactly(render_gaussians):
    rng = np.random.default_rng(4)
    size, voxel_size_A = 32, 0.5
    volume = render_gaussians(rng.uniform(-3, 3, (6, 3)), size, voxel_size_A, 0.7)
    rotations = Rotation.random(3, random_state=1)
    shifts_px = np.array([[3, -2], [0, 5], [-4, -1]])
    unshifted = project(volume, rotations)
    shifted = project(volume, rotations, shifts_A=shifts_px * voxel_size_A, voxel_size_A=0.5)
    for k, (sx, sy) in enumerate(shifts_px):
        expected = np.roll(unshifted[k], (sy, sx), axis=(0, 1))
        assert np.abs(shifted[k] - expected).max() < 1e-6 * np.abs(expected).max()


def test_tilt_series_geometry_and_rotation_inputs(render_gaussians):
    # A point at map +x moves towards microscope -z under a +90° tilt about y and vanishes from x.
    size = 24
    volume = render_gaussians([[3.0, 1.0, 0.0]], size, 0.5, 0.6)
    rotations = tilt_series_rotations([0.0, 90.0, -90.0])
    images = project(volume, rotations.as_matrix(), voxel_size_A=0.5)
    peaks = [np.unravel_index(np.argmax(image), image.shape) for image in images]
    c = size // 2
    assert peaks == [(c + 2, c + 6), (c + 2, c), (c + 2, c)]
    np.testing.assert_allclose(images, project(volume, rotations), rtol=0, atol=1e-6)


def test_sample_density_counts_overlapping_slices():
    size, tilts = 32, np.arange(-60, 61, 3.0)
    single = FourierSliceProjector(tilt_series_rotations([0.0]), size).sample_density()[0]
    double = FourierSliceProjector(tilt_series_rotations([0.0, 0.0]), size).sample_density()
    np.testing.assert_allclose(double, np.stack([2 * single] * 2), rtol=1e-4)
    projector = FourierSliceProjector(tilt_series_rotations(tilts), size)
    density = projector.sample_density()[len(tilts) // 2] / single
    k = np.arange(size) - size // 2
    kx = np.broadcast_to(k, (size, size))[np.hypot(*np.meshgrid(k, k)) < size / 2]
    # All 41 slices share the tilt axis (kx = 0); far from it they fan out.
    np.testing.assert_allclose(density[kx == 0], len(tilts), rtol=0.1)
    assert density[np.abs(kx) >= 12].max() < len(tilts) / 2


def test_rejects_bad_arguments():
    rotations = Rotation.random(2, random_state=0)
    with pytest.raises(ValueError, match="cube"):
        project(np.zeros((8, 8, 9)), rotations)
    with pytest.raises(ValueError, match="shifts_A"):
        project(np.zeros((8, 8, 8)), rotations, shifts_A=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="images must have shape"):
        backproject(np.zeros((3, 8, 8)), rotations)
    with pytest.raises(ValueError, match="orthonormal"):
        project(np.zeros((8, 8, 8)), np.ones((1, 3, 3)))


def test_fast_low_upsampling_plan_stays_accurate(render_gaussians):
    # eps ≥ 2e-5 (float32) selects finufft's 1.25× fine grid; it must agree with the 2× grid.
    rng = np.random.default_rng(6)
    size = 32
    volume = render_gaussians(rng.uniform(-4, 4, (10, 3)), size, 0.5, 0.7).astype(np.float32)
    rotations = Rotation.random(6, random_state=2)
    fast = FourierSliceProjector(rotations, size, eps=1e-4)
    exact = FourierSliceProjector(rotations, size, eps=1e-6)
    assert fast._forward.upsampfac == 1.25 and exact._forward.upsampfac == 2.0
    images_fast, images_exact = fast.forward(volume), exact.forward(volume)
    # Measured: 8e-6 (projection) and 1.1e-4 (back-projection) relative difference.
    assert np.linalg.norm(images_fast - images_exact) / np.linalg.norm(images_exact) < 5e-4
    back_fast, back_exact = fast.adjoint(images_exact), exact.adjoint(images_exact)
    assert np.linalg.norm(back_fast - back_exact) / np.linalg.norm(back_exact) < 5e-4


def test_unit_sample_weights_change_nothing():
    rng = np.random.default_rng(8)
    projector = FourierSliceProjector(Rotation.random(4, random_state=4), 17)
    images = rng.standard_normal((4, 17, 17)).astype(np.float32)
    ones = np.ones((4, projector.n_points), np.float32)
    np.testing.assert_allclose(
        projector.adjoint(images, sample_weights=ones), projector.adjoint(images), atol=1e-6
    )
    assert projector.sample_density().shape == (4, projector.n_points)
