"""The figure functions: geometry helpers against known answers, and every figure renders."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from ase.cluster import Octahedron
from scipy.spatial.transform import Rotation

from nanorecon import figures
from nanorecon.figures import FIGURE_SIZES_IN
from nanorecon.geometry import quaternions_from_rotations, tilt_series_rotations

DPI = 50
A_PT = 3.92


def render(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    buffer.seek(0)
    return matplotlib.image.imread(buffer, format="png")


def blob_volume(n: int, centre_voxel_xyz: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    z, y, x = np.indices((n, n, n), dtype=float) - n // 2
    cx, cy, cz = centre_voxel_xyz
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2))


@pytest.fixture(scope="module")
def orientation() -> np.ndarray:
    return Rotation.from_euler("ZYZ", [31.0, 47.0, -12.0], degrees=True).as_matrix()


@pytest.fixture(scope="module")
def atoms() -> pd.DataFrame:
    """A Pt octahedron on a known lattice (site indices in a/2), with a radial strain field."""
    cluster = Octahedron("Pt", 5, 1, latticeconstant=A_PT)
    positions = cluster.positions - cluster.positions.mean(axis=0)
    hkl = np.rint(2.0 * positions / A_PT).astype(int)
    r = np.linalg.norm(positions, axis=1)
    strain = 0.01 * r / r.max()
    table = pd.DataFrame(positions, columns=["x_A", "y_A", "z_A"])
    table["element"] = np.where(np.arange(len(table)) % 3 == 0, "Fe", "Pt")
    table[["h", "k", "l"]] = hkl
    for i, component in enumerate(figures.STRAIN_COMPONENTS):
        table[component] = strain * (1.0 if i < 3 else 0.2)
    return table


@pytest.mark.parametrize("zone", [(1, 0, 0), (1, 1, 0), (1, 1, 1)])
def test_zone_axis_volume_puts_the_zone_axis_along_the_view(device, orientation, zone):
    """A blob on the crystal's [uvw] axis ends up on the view axis (array axis 0) at its distance."""
    from nanorecon.backend import asnumpy, get_array_module

    n, distance_vox = 33, 7.0
    direction = orientation @ (np.asarray(zone, float) / np.linalg.norm(zone))
    volume = get_array_module(device).asarray(blob_volume(n, distance_vox * direction))
    view = figures.zone_axis_volume(volume, orientation, zone, order=3)
    assert get_array_module(view) is get_array_module(volume)
    view = asnumpy(view)
    z, y, x = np.indices(view.shape) - n // 2
    weights = np.clip(view, 0, None) ** 2
    centroid = [float((c * weights).sum() / weights.sum()) for c in (x, y, z)]
    np.testing.assert_allclose(centroid, [0.0, 0.0, distance_vox], atol=0.05)
    frame = figures.zone_axis_frame(orientation, zone)
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(frame), 1.0, atol=1e-12)


def test_alignment_corrections_recover_tilt_and_in_plane_errors():
    tilts = np.linspace(-60, 60, 13)
    rng = np.random.default_rng(0)
    tilt_error, in_plane_error = rng.normal(0, 1.0, 13), rng.normal(0, 0.5, 13)
    axis_deg = 7.0
    refined = Rotation.from_euler(
        "z", in_plane_error[:, None], degrees=True
    ) * tilt_series_rotations(tilts + tilt_error, tilt_axis_deg=axis_deg)
    quats = quaternions_from_rotations(refined)
    table = pd.DataFrame(quats, columns=["qx", "qy", "qz", "qw"])
    table["shift_x_A"], table["shift_y_A"] = 0.1 * tilts, -0.2
    result = figures.alignment_corrections(table, tilts, tilt_axis_deg=axis_deg)
    # first order in the (small) angles: the two corrections commute to within their product
    np.testing.assert_allclose(result.tilt_correction_deg, tilt_error, atol=0.02)
    np.testing.assert_allclose(result.in_plane_correction_deg, in_plane_error, atol=0.02)
    np.testing.assert_allclose(result.perpendicular_correction_deg, 0.0, atol=0.02)
    np.testing.assert_array_equal(result.shift_x_A, 0.1 * tilts)


def test_orientation_coverage_of_sphere_and_hemisphere():
    rng = np.random.default_rng(1)
    views = rng.normal(size=(3000, 3))
    assert figures.orientation_coverage(views, within_deg=10) > 0.99
    upper = views * np.sign(views[:, 2:3])
    # the upper hemisphere and a 10° band below the equator: (1 + sin 10°) / 2
    assert figures.orientation_coverage(upper, within_deg=10, antipodal=False) == pytest.approx(
        (1 + np.sin(np.deg2rad(10))) / 2, abs=0.015
    )
    assert figures.orientation_coverage(upper, within_deg=10, antipodal=True) > 0.99
    one_axis = np.tile([0.0, 0.0, 1.0], (10, 1))
    # a cap of 10° holds (1 - cos 10°) / 2 = 0.76 % of the sphere
    assert figures.orientation_coverage(
        one_axis, within_deg=10, antipodal=False, n_reference=20000
    ) == pytest.approx((1 - np.cos(np.deg2rad(10))) / 2, rel=0.05)


def test_atomic_layers_pick_the_central_consecutive_layers(atoms):
    layer, chosen = figures.atomic_layers(atoms, (0, 0, 1), n_layers=3)
    np.testing.assert_array_equal(layer, atoms["l"])
    np.testing.assert_array_equal(chosen, [-1, 0, 1])
    layer_111, chosen_111 = figures.atomic_layers(atoms, (1, 1, 1), n_layers=3)
    # fcc sites have h + k + l even: consecutive (111) layers differ by 2
    np.testing.assert_array_equal(np.diff(chosen_111), [2, 2])
    with pytest.raises(ValueError, match="layers"):
        figures.atomic_layers(atoms.iloc[:1], (0, 0, 1), n_layers=3)


def _fsc_table() -> pd.DataFrame:
    frequency = np.linspace(0.0, 1.4, 41)
    return pd.DataFrame(
        {
            "spatial_frequency_1_per_A": frequency,
            "fsc_half": 1.0 / (1.0 + np.exp((frequency - 1.0) * 20)),
            "fsc_truth": 1.0 / (1.0 + np.exp((frequency - 0.9) * 20)),
        }
    )


def test_fsc_legend_gives_the_resolutions():
    fig = figures.plot_fsc(_fsc_table())
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # logistic curves: FSC = 0.143 at f = 1 + ln(1/0.143 - 1)/20, FSC = 0.5 at f = 0.9
    f_half = 1.0 + np.log(1 / 0.143 - 1) / 20
    assert f"{1 / f_half:.2f} Å at FSC = 0.143" in texts[0]
    assert f"{1 / 0.9:.2f} Å at FSC = 0.5" in texts[1]


def _figure_cases(atoms, orientation):
    rng = np.random.default_rng(2)
    volume = blob_volume(24, np.array([2.0, -1.0, 3.0])).astype(np.float32)
    tilts = np.arange(-60.0, 61.0, 20.0)
    quats = quaternions_from_rotations(tilt_series_rotations(tilts))
    orientations = pd.DataFrame(quats, columns=["qx", "qy", "qz", "qw"]).assign(
        shift_x_A=rng.normal(size=7),
        shift_y_A=rng.normal(size=7),
        score=0.9,
        used=[True] * 6 + [False],
    )
    log = pd.DataFrame(
        {
            "stage": "refine",
            "round": np.repeat([0, 1], 5),
            "iteration": np.tile(range(5), 2),
            "error": np.linspace(0.7, 0.4, 10),
        }
    )
    profile = pd.DataFrame(
        {
            "r_mid_A": [1.5, 2.5, 3.5],
            "mean_distance_A": [2.77, 2.76, 2.74],
            "std_distance_A": [0.05, 0.06, 0.08],
            "n_bonds": [12, 30, 0],
        }
    )
    particles = pd.DataFrame(
        {
            "dataset": ["a", "a", "b"],
            "particle": ["p000", "p001", "p000"],
            "diameter_nm": [2.0, 2.5, 3.0],
            "lattice_parameter_A": [3.91, 3.92, 3.925],
            "bulk_lattice_parameter_A": 3.9242,
        }
    )
    benchmarks = pd.DataFrame(
        {"job": ["ingest", "reconstruct/p000"], "s": [3.1, 41.0], "max_rss": ["180.5", "-"]}
    )
    tracks = pd.DataFrame(
        {
            "frame": np.tile(range(10), 2),
            "track": np.repeat([0, 1], 10),
            "x_A": np.concatenate([np.linspace(-20, 0, 10), np.linspace(5, 25, 10)]),
            "y_A": rng.normal(size=20),
        }
    )
    return {
        "fsc": lambda: figures.plot_fsc(_fsc_table()),
        "map_axes": lambda: figures.plot_map_views(volume, 0.35),
        "map_zone_axes": lambda: figures.plot_zone_axis_views(
            volume, 0.35, orientation_matrix=orientation
        ),
        "model": lambda: figures.plot_atomic_model(atoms),
        "strain_layers": lambda: figures.plot_strain_layers(atoms, orientation_matrix=np.eye(3)),
        "radial_profile": lambda: figures.plot_radial_profile(profile, lattice_parameter_A=3.92),
        "alignment": lambda: figures.plot_alignment(orientations, tilts, reconstruction_log=log),
        "tilt_series": lambda: figures.plot_tilt_series(rng.normal(size=(7, 16, 20)), tilts, 0.35),
        "lattice_vs_size": lambda: figures.plot_lattice_vs_size(particles),
        "runtime": lambda: figures.plot_runtime(benchmarks),
        "tracks": lambda: figures.plot_tracks(
            tracks, image=rng.normal(size=(64, 64)), pixel_size_A=1.0, frame=3
        ),
        "orientation_coverage": lambda: figures.plot_orientation_coverage(
            rng.normal(size=(200, 3))
        ),
    }


def test_every_figure_renders_at_its_size(atoms, orientation):
    cases = _figure_cases(atoms, orientation)
    assert set(cases) == set(FIGURE_SIZES_IN)
    for name, draw in cases.items():
        pixels = render(draw())
        width, height = FIGURE_SIZES_IN[name]
        assert pixels.shape[:2] == (round(height * DPI), round(width * DPI)), name
        assert pixels[..., :3].std() > 0.05, name


def test_tracks_without_image_and_bad_inputs():
    tracks = pd.DataFrame({"frame": [0, 1], "track": [0, 0], "x_A": [0.0, 3.0], "y_A": [0.0, 1.0]})
    assert render(figures.plot_tracks(tracks)).std() > 0
    with pytest.raises(ValueError, match="pixel_size_A"):
        figures.plot_tracks(tracks, image=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="lacks columns"):
        figures.plot_tracks(tracks.drop(columns="track"))
    with pytest.raises(ValueError, match="rotation"):
        figures.zone_axis_frame(np.ones((3, 3)), (1, 0, 0))
