"""The same kernels on numpy and cupy: module, dtype and closeness to the numpy result.

On the GPU the projector uses cufinufft when installed, else Kaiser–Bessel gridding with cupy.
"""

import numpy as np
from scipy.spatial.transform import Rotation

from nanorecon.backend import asnumpy, get_array_module, to_device
from nanorecon.geometry import tilt_series_rotations
from nanorecon.refine import backproject, cross_correlation_shifts, fsc, project, reconstruct


def test_projection_pair_on_each_device(device, render_gaussians):
    rng = np.random.default_rng(0)
    volume = render_gaussians(rng.uniform(-3, 3, (8, 3)), 24, 0.5, 0.6).astype(np.float32)
    rotations = Rotation.random(5, random_state=4)
    shifts_A = rng.uniform(-1, 1, (5, 2))
    images = project(to_device(volume, device), rotations, shifts_A=shifts_A)
    assert get_array_module(images) is get_array_module(device)
    assert images.dtype == np.float32
    expected = project(volume, rotations, shifts_A=shifts_A)
    np.testing.assert_allclose(asnumpy(images), expected, atol=1e-5 * np.abs(expected).max())
    back = backproject(images, rotations, shifts_A=shifts_A)
    assert get_array_module(back) is get_array_module(device)
    np.testing.assert_allclose(
        asnumpy(back), backproject(expected, rotations, shifts_A=shifts_A), rtol=0, atol=1e-3
    )


def test_reconstruction_on_each_device(device, render_gaussians):
    rng = np.random.default_rng(1)
    volume = render_gaussians(rng.uniform(-3, 3, (8, 3)), 24, 0.5, 0.6).astype(np.float32)
    rotations = tilt_series_rotations(np.arange(-60, 61, 5.0))
    images = project(volume, rotations)
    result = reconstruct(to_device(images, device), rotations, n_iterations=5)
    assert get_array_module(result.volume) is get_array_module(device)
    np.testing.assert_allclose(
        result.errors, reconstruct(images, rotations, n_iterations=5).errors, rtol=1e-4
    )


def test_fsc_and_shifts_on_each_device(device):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 16, 16, 16))
    table = fsc(to_device(a, device), to_device(a + b, device), 0.5)
    np.testing.assert_allclose(table["fsc"], fsc(a, a + b, 0.5)["fsc"], atol=1e-10)
    images = rng.standard_normal((3, 16, 16))
    moved = np.roll(images, (1, -2), axis=(1, 2))
    shifts = cross_correlation_shifts(to_device(moved, device), to_device(images, device))
    np.testing.assert_allclose(shifts, [[-2, 1]] * 3, atol=1e-6)
