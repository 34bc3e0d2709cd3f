import numpy as np
import pandas as pd
import pytest

from nanorecon.geometry import tilt_series_rotations
from nanorecon.refine import fsc, half_set_reconstruction, project, resolution_at


def test_fsc_of_a_map_with_itself_is_one():
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((20, 20, 20))
    table = fsc(volume, 3 * volume, 0.5)
    assert list(table.columns) == ["spatial_frequency_1_per_A", "resolution_A", "fsc", "n_voxels"]
    np.testing.assert_allclose(table["fsc"], 1.0, atol=1e-12)
    assert len(table) == 11
    assert table["spatial_frequency_1_per_A"].iloc[-1] == pytest.approx(1.0)  # Nyquist of 0.5 Å
    assert table["resolution_A"].iloc[-1] == pytest.approx(1.0)
    # Shell counts follow the area of a sphere: 4π k² voxels in shell k.
    k = np.arange(4, 10)
    np.testing.assert_allclose(table["n_voxels"].iloc[4:10], 4 * np.pi * k**2, rtol=0.15)
    assert table["n_voxels"].iloc[0] == 1


def test_fsc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(1)
    table = fsc(rng.standard_normal((32, 32, 32)), rng.standard_normal((32, 32, 32)), 1.0)
    shells = table.iloc[2:]
    # Each shell correlates n independent complex values: standard deviation ≈ 1/√n.
    assert np.all(np.abs(shells["fsc"]) < 4 / np.sqrt(shells["n_voxels"]))


def test_fsc_of_a_blurred_map_falls_where_expected():
    # Two maps sharing a signal band-limited by a Gaussian, with equal independent noise: the FSC
    # follows S/(S+N), so it crosses 0.5 where the signal power equals the noise power.
    rng = np.random.default_rng(2)
    size, voxel_size_A = 48, 0.5
    f = np.fft.fftfreq(size, voxel_size_A)
    q2 = f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2
    signal = np.fft.ifftn(np.fft.fftn(rng.standard_normal((size,) * 3)) * np.exp(-q2 / 0.5**2)).real
    noise = np.exp(-1.0)  # the signal's Fourier amplitude equals the noise's at q = 0.5 [1/Å]
    maps = [signal + noise * rng.standard_normal(signal.shape) for _ in range(2)]
    assert resolution_at(fsc(*maps, voxel_size_A), 0.5) == pytest.approx(2.0, rel=0.1)


def test_resolution_at_interpolates_the_crossing():
    table = pd.DataFrame(
        {"spatial_frequency_1_per_A": [0.0, 0.1, 0.2, 0.3, 0.4], "fsc": [1, 0.8, 0.2, 0.6, 0.0]}
    )
    # First crossing of 0.5 between 0.1 (0.8) and 0.2 (0.2): 0.15 [1/Å].
    assert resolution_at(table, 0.5) == pytest.approx(1 / 0.15)
    # 0.143: the curve recovers at 0.3 and crosses between 0.3 (0.6) and 0.4 (0.0).
    assert resolution_at(table, 0.143) == pytest.approx(1 / (0.3 + 0.1 * 0.457 / 0.6))
    assert resolution_at(table, -1.0) == pytest.approx(2.5)  # never below: Nyquist
    assert resolution_at(table, 1.5) == np.inf


def test_half_set_reconstruction(fcc_particle):
    rng = np.random.default_rng(3)
    truth, voxel_size_A = fcc_particle["volume"], fcc_particle["voxel_size_A"]
    rotations = tilt_series_rotations(np.arange(-69, 70, 3.0))
    clean = project(truth, rotations)
    images = clean + 0.1 * clean.std() * rng.standard_normal(clean.shape).astype(np.float32)
    result = half_set_reconstruction(
        images, rotations, voxel_size_A=voxel_size_A, n_iterations=10, full_map=False
    )
    assert len(result.errors) == 2
    np.testing.assert_allclose(result.volume, (result.half_maps[0] + result.half_maps[1]) / 2)
    # Noise at 10 % of the image contrast: the halves agree nearly to Nyquist (0.8 Å).
    assert 0.8 <= result.resolution_A < 1.0  # measured 0.86 Å
    with pytest.raises(ValueError, match="half set 1"):
        half_set_reconstruction(images, rotations, voxel_size_A=0.4, half_sets=np.zeros(47))
