import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from nanorecon.geometry import tilt_series_rotations
from nanorecon.refine import fsc, project, reconstruct, resolution_at
from nanorecon.simulate import aberration_phase

N_ITERATIONS = 25


@pytest.fixture(scope="module")
def reconstructions(fcc_particle):
    """Reconstructions of the fcc particle from noiseless ±90° and ±70° tilt series (2° steps)."""
    out = {}
    for max_tilt in (90, 70):
        rotations = tilt_series_rotations(np.arange(-max_tilt, max_tilt + 1, 2.0))
        images = project(fcc_particle["volume"], rotations)
        history = []
        result = reconstruct(
            images,
            rotations,
            voxel_size_A=fcc_particle["voxel_size_A"],
            n_iterations=N_ITERATIONS,
            callback=lambda i, error, history=history: history.append((i, error)),
        )
        out[max_tilt] = (result, history)
    return out


def _fourier_error(volume, truth):
    return np.linalg.norm(volume - truth) / np.linalg.norm(truth)


def test_full_range_reconstruction_matches_truth(fcc_particle, reconstructions):
    result, history = reconstructions[90]
    truth = fcc_particle["volume"]
    table = fsc(result.volume, truth, fcc_particle["voxel_size_A"])
    # Measured: FSC ≥ 0.98 in every shell up to Nyquist (0.8 Å), relative error 0.009, R 0.003.
    assert table["fsc"].min() > 0.9
    assert resolution_at(table, 0.5) == pytest.approx(2 * fcc_particle["voxel_size_A"])
    assert _fourier_error(result.volume, truth) < 0.05
    assert result.errors[-1] < 0.01
    assert result.volume.dtype == np.float32 and result.volume.min() >= 0


def test_errors_are_reported_for_every_iteration(reconstructions):
    result, history = reconstructions[90]
    assert [i for i, _ in history] == list(range(N_ITERATIONS))
    np.testing.assert_allclose([e for _, e in history], result.errors)
    assert result.errors[-1] < 0.1 * result.errors[0]


def test_noisy_frames_give_a_map_not_an_empty_one(fcc_particle):
    """Movie-like data, noise 10× the signal per pixel: every iterate's R is above the empty map's
    (R = 1), yet the least-squares map is the particle, so the map must not be chosen by R."""
    truth = fcc_particle["volume"]
    rotations = Rotation.random(300, random_state=3)
    images = project(truth, rotations)
    rng = np.random.default_rng(4)
    images += rng.normal(0, 10 * images.std(), images.shape).astype(images.dtype)
    result = reconstruct(
        images, rotations, voxel_size_A=fcc_particle["voxel_size_A"], n_iterations=10
    )
    assert result.errors.min() > 1.0
    # measured 0.16 (0.60 at 3× noise); a map of noise alone correlates ~0 ± 0.01
    correlation = np.corrcoef(result.volume.ravel(), truth.ravel())[0, 1]
    assert correlation > 0.1


def test_missing_wedge_is_present_and_handled(fcc_particle, reconstructions):
    truth, voxel_size_A = fcc_particle["volume"], fcc_particle["voxel_size_A"]
    full = fsc(reconstructions[90][0].volume, truth, voxel_size_A)
    wedge = fsc(reconstructions[70][0].volume, truth, voxel_size_A)
    high = full["spatial_frequency_1_per_A"] > 0.5 / (2 * voxel_size_A)
    # The ±70° series misses 22 % of Fourier space: the FSC drops at high resolution and the map
    # error grows several-fold, yet the map still correlates well with the truth.
    assert wedge["fsc"][high].mean() < full["fsc"][high].mean() - 0.02
    error_full = _fourier_error(reconstructions[90][0].volume, truth)
    error_wedge = _fourier_error(reconstructions[70][0].volume, truth)
    assert error_wedge > 3 * error_full
    assert wedge["fsc"][high].mean() > 0.8


@pytest.mark.parametrize("max_tilt", [90, 70])
def test_every_atom_is_a_separate_local_maximum(fcc_particle, reconstructions, max_tilt):
    volume = reconstructions[max_tilt][0].volume
    size, voxel_size_A = volume.shape[0], fcc_particle["voxel_size_A"]
    peaks = (ndimage.maximum_filter(volume, size=3) == volume) & (volume > 0.3 * volume.max())
    indices = np.rint(fcc_particle["positions_A"][:, ::-1] / voxel_size_A).astype(int) + size // 2
    found = [peaks[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2].any() for z, y, x in indices]
    assert all(found)
    # No spurious maxima: one peak per atom.
    assert peaks.sum() == len(indices)


def test_support_and_positivity_are_imposed(fcc_particle):
    truth = fcc_particle["volume"]
    rotations = tilt_series_rotations(np.arange(-60, 61, 4.0))
    images = project(truth, rotations)
    size = truth.shape[0]
    z, y, x = np.indices(truth.shape) - size // 2
    support = z**2 + y**2 + x**2 < 20**2  # 8 Å: the atoms reach 6.5 Å + 3σ
    constrained = reconstruct(images, rotations, n_iterations=15, support=support)
    assert np.all(constrained.volume[~support] == 0) and constrained.volume.min() >= 0
    free = reconstruct(images, rotations, n_iterations=15, positivity=False)
    assert free.volume.min() < 0
    # The constraints fill the ±60° missing wedge in part: the constrained map is closer to truth.
    error_constrained = _fourier_error(constrained.volume, truth)
    error_free = _fourier_error(free.volume, truth)
    assert error_constrained < 0.8 * error_free


def test_rejects_bad_arguments(fcc_particle):
    rotations = tilt_series_rotations([0.0, 10.0])
    images = np.ones((2, 16, 16), np.float32)
    with pytest.raises(ValueError, match="rotations"):
        reconstruct(images[:1], rotations)
    with pytest.raises(ValueError, match="step"):
        reconstruct(images, rotations, step=3)
    with pytest.raises(ValueError, match="support"):
        reconstruct(images, rotations, support=np.ones((8, 8, 8), bool))
    with pytest.raises(ValueError, match="zero"):
        reconstruct(np.zeros_like(images), rotations)


def _phase_contrast_transfer(k):
    """|sin χ| at 300 kV, 10 nm underfocus, Cs 1 µm: 0.02 at 20 Å, 0.38 at 4 Å, 1 near 2 Å."""
    return np.abs(np.sin(aberration_phase(k, voltage_kV=300, defocus_A=100, cs_mm=0.001)))


@pytest.fixture(scope="module")
def phase_flipped_frames(render_gaussians):
    """A 16 Å fcc particle (a = 3.92 Å, σ 0.4 Å) on a 48³ grid of 0.4 Å, seen in 200 random
    orientations through the phase-flipped transfer, with noise of the signal's size per pixel."""
    cells = np.arange(-4, 5)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    grid = np.stack(np.meshgrid(cells, cells, cells, indexing="ij"), -1).reshape(-1, 1, 3)
    positions = (grid + basis).reshape(-1, 3) * 3.92
    positions = positions[np.linalg.norm(positions, axis=1) < 8.0]
    size, voxel_size_A = 48, 0.4
    truth = render_gaussians(positions, size, voxel_size_A, 0.4).astype(np.float32)
    rotations = Rotation.random(200, random_state=3)
    ky = np.fft.fftfreq(size, voxel_size_A)[:, None]
    kx = np.fft.rfftfreq(size, voxel_size_A)[None, :]
    transfer = _phase_contrast_transfer(np.sqrt(kx**2 + ky**2))
    images = np.fft.irfft2(np.fft.rfft2(project(truth, rotations)) * transfer, s=(size, size))
    rng = np.random.default_rng(7)
    images = (images + rng.normal(0, images.std(), images.shape)).astype(np.float32)
    radius = np.sqrt(((np.indices(truth.shape) - size // 2) ** 2).sum(axis=0)) * voxel_size_A
    return {"truth": truth, "images": images, "rotations": rotations, "radius_A": radius}


def _map_against_truth(frames, n_iterations, **options):
    """Correlation with the truth, and core (r < 4 Å) over shell (4–8 Å) density relative to
    the truth's."""
    truth, radius = frames["truth"], frames["radius_A"]
    volume = reconstruct(
        frames["images"],
        frames["rotations"],
        voxel_size_A=0.4,
        n_iterations=n_iterations,
        support=radius < 10,
        **options,
    ).volume
    correlation = np.corrcoef(volume.ravel(), truth.ravel())[0, 1]
    core, shell = radius < 4, (radius >= 4) & (radius < 8)
    ratio = (volume[core].mean() / truth[core].mean()) / (
        volume[shell].mean() / truth[shell].mean()
    )
    return correlation, ratio


def test_transfer_with_wiener_term_restores_the_particle(phase_flipped_frames):
    """Fitted as they are, phase-flipped frames (no low frequencies) give a map whose core is
    too faint; fitted through their transfer, with a Wiener term, the map is the particle's."""
    plain = _map_against_truth(phase_flipped_frames, 20)
    wiener = _map_against_truth(
        phase_flipped_frames, 20, transfer=_phase_contrast_transfer, wiener_constant=0.3
    )
    # measured: correlation 0.917 plain, 0.945 Wiener; core / shell 0.89 and 0.99
    assert wiener[0] > plain[0] + 0.015
    assert plain[1] < 0.93
    assert 0.94 < wiener[1] < 1.06


def test_wiener_term_stops_noise_growing_with_iterations(phase_flipped_frames):
    """Without it the weakly transferred frequencies keep fitting noise (semi-convergence)."""
    options = {"transfer": _phase_contrast_transfer}
    free = [_map_against_truth(phase_flipped_frames, n, **options)[0] for n in (20, 60)]
    damped = [
        _map_against_truth(phase_flipped_frames, n, wiener_constant=0.3, **options)[0]
        for n in (20, 60)
    ]
    # measured: 0.881 → 0.804 without the term, 0.945 → 0.945 with it
    assert free[1] < free[0] - 0.04
    assert abs(damped[1] - damped[0]) < 0.005


def test_unit_transfer_is_the_plain_reconstruction(fcc_particle):
    rotations = Rotation.random(20, random_state=1)
    images = project(fcc_particle["volume"], rotations)
    plain = reconstruct(images, rotations, voxel_size_A=0.4, n_iterations=5).volume
    unit = reconstruct(
        images, rotations, voxel_size_A=0.4, n_iterations=5, transfer=np.ones_like
    ).volume
    np.testing.assert_allclose(unit, plain, atol=1e-4 * float(plain.max()))


def test_rejects_bad_transfers():
    rotations = tilt_series_rotations([0.0, 10.0])
    images = np.ones((2, 16, 16), np.float32)
    with pytest.raises(ValueError, match="non-negative"):
        reconstruct(images, rotations, transfer=lambda k: -np.ones_like(k))
    with pytest.raises(ValueError, match="one finite value per frequency"):
        reconstruct(images, rotations, transfer=lambda k: np.ones(3))
    with pytest.raises(ValueError, match="wiener_constant"):
        reconstruct(images, rotations, wiener_constant=-1.0)
