"""Separable Gaussian projector and volume renderer against brute force."""

import numpy as np
import pytest

from nanorecon.backend import asnumpy, get_array_module
from nanorecon.simulate import (
    atoms_to_volume,
    contrast_transfer,
    haadf_cross_sections_A2,
    project_gaussians,
    weak_phase_image,
)


def _brute_force_image(positions, weights, sigmas, shape, pixel, sub=40):
    """Midpoint-rule integral of each 2D Gaussian over every pixel (sub × sub samples)."""
    ny, nx = shape
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    ys = ((np.arange(ny) - ny // 2)[:, None] + offsets[None, :]).ravel() * pixel
    xs = ((np.arange(nx) - nx // 2)[:, None] + offsets[None, :]).ravel() * pixel
    image = np.zeros((ny * sub, nx * sub))
    for (x, y), w, s in zip(positions[:, :2], weights, sigmas, strict=True):
        gy = np.exp(-((ys - y) ** 2) / (2 * s**2))
        gx = np.exp(-((xs - x) ** 2) / (2 * s**2))
        image += w / (2 * np.pi * s**2) * np.outer(gy, gx)
    area = (pixel / sub) ** 2
    return image.reshape(ny, sub, nx, sub).sum(axis=(1, 3)) * area


def test_separable_projection_equals_brute_force():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-2.0, 2.0, (6, 3))
    weights = rng.uniform(0.5, 2.0, 6)
    sigmas = rng.uniform(0.25, 0.6, 6)
    shape, pixel = (26, 29), 0.4
    fast = project_gaussians(positions, weights, shape=shape, pixel_size_A=pixel, sigma_A=sigmas)
    slow = _brute_force_image(positions, weights, sigmas, shape, pixel)
    np.testing.assert_allclose(fast, slow, atol=2e-4 * slow.max())
    assert fast.sum() == pytest.approx(weights.sum(), rel=1e-6)


def test_origin_moves_the_image():
    pos = np.array([[1.2, -0.8, 0.0]])
    a = project_gaussians(pos, [1.0], shape=(16, 16), pixel_size_A=0.4, sigma_A=0.3)
    b = project_gaussians(
        pos + [0.8, 0.4, 0.0],
        [1.0],
        shape=(16, 16),
        pixel_size_A=0.4,
        sigma_A=0.3,
        origin_A=(0.8, 0.4),
    )
    np.testing.assert_allclose(a, b, atol=1e-12)
    # x runs along columns, y along rows; pixel N//2 is at 0 Å
    iy, ix = np.unravel_index(a.argmax(), a.shape)
    assert (iy, ix) == (8 - 2, 8 + 3)


def test_volume_matches_projection_and_integrates_weights():
    rng = np.random.default_rng(1)
    positions = rng.uniform(-3.0, 3.0, (20, 3))
    weights = rng.uniform(1.0, 3.0, 20)
    vol = atoms_to_volume(positions, weights, (24, 22, 20), 0.5, 0.4)
    assert vol.dtype == np.float32 and vol.shape == (24, 22, 20)
    proj = project_gaussians(positions, weights, shape=(22, 20), pixel_size_A=0.5, sigma_A=0.4)
    np.testing.assert_allclose(vol.sum(axis=0), proj, rtol=1e-5, atol=1e-6)
    assert vol.sum() == pytest.approx(weights.sum(), rel=1e-5)
    single = atoms_to_volume(np.array([[1.0, -0.5, 1.5]]), [1.0], (16, 16, 16), 0.5, 0.3)
    assert np.unravel_index(single.argmax(), single.shape) == (8 + 3, 8 - 1, 8 + 2)


def test_haadf_intensity_scales_as_z_to_the_1_7():
    sigma = haadf_cross_sections_A2(["Fe", "Pt"], cross_section_scale_A2=1e-5)
    images = [
        project_gaussians(np.zeros((1, 3)), [s], shape=(32, 32), pixel_size_A=0.35, sigma_A=0.35)
        for s in sigma
    ]
    assert images[1].sum() / images[0].sum() == pytest.approx((78 / 26) ** 1.7, rel=1e-9)
    assert sigma[1] == pytest.approx(1e-5 * 78**1.7)


def test_kernels_run_on_each_array_module(device):
    xp = get_array_module(device)
    rng = np.random.default_rng(2)
    positions = rng.uniform(-2.0, 2.0, (9, 3))
    weights = rng.uniform(0.5, 2.0, 9)
    image = project_gaussians(
        xp.asarray(positions), xp.asarray(weights), shape=(20, 24), pixel_size_A=0.4, sigma_A=0.3
    )
    vol = atoms_to_volume(xp.asarray(positions), xp.asarray(weights), (18, 20, 24), 0.4, 0.3)
    assert get_array_module(image) is xp and get_array_module(vol) is xp
    ref = project_gaussians(positions, weights, shape=(20, 24), pixel_size_A=0.4, sigma_A=0.3)
    np.testing.assert_allclose(asnumpy(image), ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(asnumpy(vol).sum(axis=0), ref, rtol=1e-4, atol=1e-6)
    phase = xp.asarray(rng.normal(size=(32, 32)))
    transfer = contrast_transfer((32, 32), 0.36, voltage_kV=300, defocus_A=100, cs_mm=0.001, xp=xp)
    out = weak_phase_image(phase, transfer)
    host = weak_phase_image(asnumpy(phase), asnumpy(transfer))
    np.testing.assert_allclose(asnumpy(out), host, atol=1e-9)
