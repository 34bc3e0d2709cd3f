import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nanorecon.backend import asnumpy, get_array_module, to_device
from nanorecon.geometry import rotations_from_euler, tilt_series_rotations
from nanorecon.refine import FourierSliceProjector, backproject, project
from nanorecon.refine._gridding import (
    GriddingPlan,
    gridding_width,
    kaiser_bessel_beta,
)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


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


def test_beta_follows_beatty():
    # Beatty et al. 2005 eq. 5 at σ = 2: β = π √(W² · 9/16 − 0.8).
    for width in (4, 6, 8):
        assert kaiser_bessel_beta(width, 2.0) == pytest.approx(
            np.pi * np.sqrt(width**2 * 0.5625 - 0.8)
        )
    assert [gridding_width(eps) for eps in (1e-3, 1e-4, 5e-5, 1e-6, 1e-9)] == [4, 5, 6, 7, 10]


@pytest.mark.parametrize("width", [4, 6, 8])
def test_plan_matches_exact_sums(width):
    # Measured relative L2 errors (complex128, both types): 8e-4 (W=4), 8.6e-6 (W=6), 8.8e-8 (W=8).
    rng = np.random.default_rng(width)
    shape, m = (10, 9, 12), 300
    points = tuple(rng.uniform(-np.pi, np.pi, m) for _ in range(3))
    modes = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    strengths = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    k = [np.arange(n) - n // 2 for n in shape]
    phase = (
        points[0][:, None, None, None] * k[0][:, None, None]
        + points[1][:, None, None, None] * k[1][:, None]
        + points[2][:, None, None, None] * k[2]
    )
    exact2 = (np.exp(-1j * phase) * modes).reshape(m, -1).sum(axis=1)
    exact1 = np.einsum("m,mabc->abc", strengths, np.exp(1j * phase))
    options = {"dtype": np.complex128, "width": width}
    type2 = GriddingPlan(2, shape, points, isign=-1, **options).execute(modes)
    type1 = GriddingPlan(1, shape, points, isign=1, **options).execute(strengths)
    bound = 2 * 10.0 ** (1 - width)
    assert _relative(type2, exact2) < bound
    assert _relative(type1, exact1) < bound
    # The opposite sign mirrors the points.
    mirrored = GriddingPlan(2, shape, points, isign=1, **options).execute(modes)
    assert _relative(mirrored, (np.exp(1j * phase) * modes).reshape(m, -1).sum(axis=1)) < bound


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("size", [20, 21])
def test_adjoint_identity(dtype, tolerance, size):
    rng = np.random.default_rng(size)
    rotations = Rotation.random(9, random_state=3)
    shifts_A = rng.uniform(-2, 2, (9, 2))
    x = rng.standard_normal((size,) * 3).astype(dtype)
    y = rng.standard_normal((9, size, size)).astype(dtype)
    weights = rng.uniform(0.5, 2, 9)
    projector = FourierSliceProjector(
        rotations, size, shifts_A=shifts_A, voxel_size_A=0.7, dtype=dtype, method="gridding"
    )
    projector = FourierSliceProjector(
        rotations,
        size,
        shifts_A=shifts_A,
        voxel_size_A=0.7,
        dtype=dtype,
        method="gridding",
        gridding_options={"chunk_points": 4 * projector.n_half_points},  # 4 images per pass
    )
    px, pty = projector.forward(x), projector.adjoint(y, weights=weights)
    assert px.dtype == dtype and pty.dtype == dtype
    left = np.vdot(px.astype(np.float64) * weights[:, None, None], y)
    right = np.vdot(x.astype(np.float64), pty)
    # Measured: 3.5e-8 / 1.6e-6 (float32, N = 20 / 21), 6.8e-16 / 2.3e-14 (float64).
    assert abs(left - right) / abs(left) < tolerance


def test_matches_finufft_projector(render_gaussians):
    rng = np.random.default_rng(1)
    size, voxel_size_A, sigma_A = 32, 0.5, 0.7
    volume = render_gaussians(rng.uniform(-4, 4, (12, 3)), size, voxel_size_A, sigma_A)
    rotations = Rotation.random(6, random_state=5)
    shifts_A = rng.uniform(-1.5, 1.5, (6, 2))
    options = {"shifts_A": shifts_A, "voxel_size_A": voxel_size_A}
    images = project(volume, rotations, **options)
    back = backproject(images, rotations, **options)
    # Measured relative L2 differences, projection / back-projection (finufft at eps 1e-6 included):
    # 5.4e-4 / 5.2e-4 (eps 1e-3, W = 4), 3.9e-5 / 5.2e-5 (1e-4, W = 5), 3.4e-7 / 6.2e-7 (1e-6, W = 7).
    for eps, bound in ((1e-3, 2e-3), (1e-4, 2e-4), (1e-6, 2e-6)):
        gridding = FourierSliceProjector(
            rotations, size, dtype=np.float64, eps=eps, **options, method="gridding"
        )
        assert _relative(gridding.forward(volume), images) < bound
        assert _relative(gridding.adjoint(images), back) < bound
    # float32 throughout (W = 7): measured 1.1e-6 / 1.1e-6.
    volume = volume.astype(np.float32)
    images = project(volume, rotations, **options)
    back = backproject(images, rotations, **options)
    gridding = FourierSliceProjector(rotations, size, **options, method="gridding")
    assert gridding.forward(volume).dtype == np.float32
    assert _relative(gridding.forward(volume), images) < 5e-6
    assert _relative(gridding.adjoint(images), back) < 5e-6


def test_gaussians_project_to_analytic_gaussians_with_shifts(render_gaussians):
    rng = np.random.default_rng(2)
    size, voxel_size_A, sigma_A = 40, 0.45, 0.6
    positions = rng.uniform(-5, 5, (8, 3))
    volume = render_gaussians(positions, size, voxel_size_A, sigma_A)
    rotations = rotations_from_euler(rng.uniform(-180, 180, (5, 3)))
    shifts_A = rng.uniform(-2, 2, (5, 2))
    projector = FourierSliceProjector(
        rotations,
        size,
        shifts_A=shifts_A,
        voxel_size_A=voxel_size_A,
        dtype=np.float64,
        method="gridding",
    )
    images = projector.forward(volume)
    expected = _gaussian_images(positions, rotations, shifts_A, size, voxel_size_A, sigma_A)
    error = np.linalg.norm(images - expected, axis=(1, 2)) / np.linalg.norm(expected, axis=(1, 2))
    # Measured 1.57e-4, as finufft: the error is the spectrum cut at the Nyquist disk.
    # σ = 1.3 voxels: the spectrum is exp(-8.8) ≈ 1.5e-4 of its peak at Nyquist, cut by the disk.
    assert error.max() < 5e-4


def test_integer_shift_moves_image_exactly(render_gaussians):
    rng = np.random.default_rng(4)
    size, voxel_size_A = 32, 0.5
    volume = render_gaussians(rng.uniform(-3, 3, (6, 3)), size, voxel_size_A, 0.7)
    rotations = Rotation.random(3, random_state=1)
    shifts_px = np.array([[3, -2], [0, 5], [-4, -1]])
    unshifted = FourierSliceProjector(rotations, size, dtype=np.float64, method="gridding").forward(
        volume
    )
    shifted = FourierSliceProjector(
        rotations,
        size,
        shifts_A=shifts_px * voxel_size_A,
        voxel_size_A=0.5,
        dtype=np.float64,
        method="gridding",
    ).forward(volume)
    for k, (sx, sy) in enumerate(shifts_px):
        expected = np.roll(unshifted[k], (sy, sx), axis=(0, 1))
        assert np.abs(shifted[k] - expected).max() < 1e-10 * np.abs(expected).max()


def test_tilt_series_geometry():
    # A point at map +x moves towards microscope -z under a +90° tilt about y and vanishes from x.
    size = 24
    volume = np.zeros((size,) * 3, np.float32)
    c = size // 2
    volume[c, c + 2, c + 6] = 1.0
    images = FourierSliceProjector(
        tilt_series_rotations([0.0, 90.0, -90.0]), size, method="gridding"
    ).forward(volume)
    peaks = [np.unravel_index(np.argmax(image), image.shape) for image in images]
    assert peaks == [(c + 2, c + 6), (c + 2, c), (c + 2, c)]


def test_batches_sample_density_and_weights_match_finufft():
    rng = np.random.default_rng(8)
    size, rotations = 17, tilt_series_rotations(np.arange(-60, 61, 20.0))
    reference = FourierSliceProjector(rotations, size, dtype=np.float64)
    whole = FourierSliceProjector(rotations, size, dtype=np.float64, method="gridding")
    batched = FourierSliceProjector(
        rotations,
        size,
        dtype=np.float64,
        method="gridding",
        gridding_options={"chunk_points": 2 * whole.n_half_points},  # two images per pass
    )
    assert whole.n_points == reference.n_points and whole._forward.width == 7
    volume = rng.standard_normal((size,) * 3)
    images = rng.standard_normal((len(rotations), size, size))
    np.testing.assert_allclose(batched.forward(volume), whole.forward(volume), atol=1e-12)
    np.testing.assert_allclose(batched.adjoint(images), whole.adjoint(images), atol=1e-12)
    density = whole.sample_density()
    # Measured: 8.8e-7 (density) and 9.6e-7 (density-weighted back-projection).
    assert _relative(density, reference.sample_density()) < 1e-5
    weights = 1 / density
    assert (
        _relative(
            whole.adjoint(images, sample_weights=weights),
            reference.adjoint(images, sample_weights=weights),
        )
        < 1e-5
    )


def test_numpy_and_cupy_agree(device, render_gaussians):
    rng = np.random.default_rng(0)
    volume = render_gaussians(rng.uniform(-3, 3, (8, 3)), 24, 0.5, 0.6).astype(np.float32)
    rotations = Rotation.random(5, random_state=4)
    shifts_A = rng.uniform(-1, 1, (5, 2))
    projector = FourierSliceProjector(
        rotations, 24, shifts_A=shifts_A, device=device, method="gridding"
    )
    images = projector.forward(to_device(volume, device))
    assert get_array_module(images) is get_array_module(device)
    assert images.dtype == np.float32
    host = FourierSliceProjector(rotations, 24, shifts_A=shifts_A, method="gridding")
    expected = host.forward(volume)
    np.testing.assert_allclose(asnumpy(images), expected, atol=1e-5 * np.abs(expected).max())
    back = projector.adjoint(images)
    assert get_array_module(back) is get_array_module(device) and back.dtype == np.float32
    reference = host.adjoint(expected)
    np.testing.assert_allclose(asnumpy(back), reference, atol=1e-5 * np.abs(reference).max())


def test_rejects_bad_arguments():
    rotations = Rotation.random(2, random_state=0)
    with pytest.raises(ValueError, match="shifts_A"):
        FourierSliceProjector(rotations, 8, shifts_A=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="oversampling"):
        FourierSliceProjector(
            rotations, 8, method="gridding", gridding_options={"oversampling": 1.5}
        )
    with pytest.raises(ValueError, match="volume must have shape"):
        FourierSliceProjector(rotations, 8, method="gridding").forward(np.zeros((8, 8, 9)))
    with pytest.raises(ValueError, match="images must have shape"):
        FourierSliceProjector(rotations, 8, method="gridding").adjoint(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="orthonormal"):
        FourierSliceProjector(np.ones((1, 3, 3)), 8)
