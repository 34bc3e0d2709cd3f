"""``nanorecon figures --dataset`` and ``nanorecon view`` on small folders."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from nanorecon.cli import main
from nanorecon.cli._figures import DPI
from nanorecon.figures import FIGURE_SIZES_IN
from nanorecon.io import (
    orientations_table,
    write_map_zarr,
    write_orientations,
    write_particle_stack,
    write_tracks,
)


def test_dataset_figures_from_tables(tmp_path: Path):
    dataset = tmp_path / "ds"
    (dataset / "benchmarks" / "reconstruct").mkdir(parents=True)
    pd.DataFrame(
        {
            "dataset": "ds",
            "particle": ["p000", "p001"],
            "diameter_nm": [2.1, 2.6],
            "lattice_parameter_A": [3.91, 3.92],
            "bulk_lattice_parameter_A": 3.9242,
        }
    ).to_csv(dataset / "particles.csv", index=False)
    header = "s\th:m:s\tmax_rss\tmax_vms\n"
    (dataset / "benchmarks" / "ingest.tsv").write_text(header + "2.9\t0:00:02\t180.8\t1535.9\n")
    (dataset / "benchmarks" / "reconstruct" / "p000.tsv").write_text(
        header + "41.3\t0:00:41\t637.3\t2533.5\n"
    )
    assert main(["figures", "--dataset", str(dataset), str(tmp_path / "out")]) == 0
    for name in ("lattice_vs_size", "runtime"):
        pixels = matplotlib.image.imread(tmp_path / "out" / f"{name}.png")
        width, height = FIGURE_SIZES_IN[name]
        assert pixels.shape[:2] == (round(height * DPI), round(width * DPI))
        assert pixels[..., :3].std() > 0.05


def _assert_figure(path: Path, name: str) -> None:
    pixels = matplotlib.image.imread(path)
    width, height = FIGURE_SIZES_IN[name]
    assert pixels.shape[:2] == (round(height * DPI), round(width * DPI))
    assert pixels[..., :3].std() > 0.05


def test_brownian_tracks_and_orientation_coverage(tmp_path: Path):
    rng = np.random.default_rng(0)
    dataset = tmp_path / "movie"
    dataset.mkdir()
    write_particle_stack(
        dataset / "raw.zarr", rng.normal(size=(6, 64, 64)).astype(np.float32), pixel_size_A=0.5
    )
    frames = np.arange(6)
    tracks = pd.concat(
        [
            pd.DataFrame(
                {"frame": frames, "track": t, "x_A": x0 + frames, "y_A": -x0 + 0.5 * frames}
            )
            for t, x0 in ((0, -8.0), (1, 6.0))
        ],
        ignore_index=True,
    ).assign(score=1.0, status="ok", reason="")
    write_tracks(dataset / "tracks.parquet", tracks)
    out = tmp_path / "dataset_figures"
    assert main(["figures", "--dataset", str(dataset), str(out), "--only", "tracks"]) == 0
    _assert_figure(out / "tracks.png", "tracks")
    assert sorted(path.name for path in out.iterdir()) == ["tracks.png"]
    # a requested figure that cannot be drawn is an error, naming the reason
    assert main(["figures", "--dataset", str(dataset), str(out), "--only", "runtime"]) == 2
    assert main(["figures", "--dataset", str(dataset), str(out), "--only", "nonsense"]) == 2

    particle = dataset / "particles" / "p000"
    particle.mkdir(parents=True)
    write_particle_stack(
        particle / "stack.zarr",
        np.zeros((50, 16, 16), np.float32),
        pixel_size_A=0.5,
        attrs={"modality": "brownian"},
    )
    rotations = Rotation.random(50, random_state=1)
    write_orientations(
        particle / "orientations.parquet",
        orientations_table(rotations, np.zeros((50, 2)), half_sets=1 + np.arange(50) // 25),
    )
    assert main(["figures", str(particle), str(tmp_path / "particle_figures")]) == 0
    _assert_figure(
        tmp_path / "particle_figures" / "orientation_coverage.png", "orientation_coverage"
    )
    # a tilt series gets no coverage figure: its wedge is by design
    write_particle_stack(
        particle / "stack.zarr",
        np.zeros((50, 16, 16), np.float32),
        pixel_size_A=0.5,
        attrs={"modality": "tomography", "tilt_angles_deg": list(np.linspace(-70, 70, 50))},
    )
    (tmp_path / "particle_figures" / "orientation_coverage.png").unlink()
    main(["figures", str(particle), str(tmp_path / "particle_figures")])
    assert not (tmp_path / "particle_figures" / "orientation_coverage.png").exists()


def test_figures_of_an_empty_folder_fail_clearly(tmp_path: Path, capsys):
    (tmp_path / "p000").mkdir()
    assert main(["figures", str(tmp_path / "p000"), str(tmp_path / "out")]) == 2
    assert "no figure could be drawn" in capsys.readouterr().err
    assert main(["figures", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2


def test_view_without_napari_says_how_to_install(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "napari", None)  # import napari → ImportError
    assert main(["view", str(tmp_path)]) == 2
    assert "pip install 'napari[all]'" in capsys.readouterr().err


def test_view_puts_map_and_atoms_in_angstrom(tmp_path: Path, monkeypatch):
    """With napari present (a recording stand-in here) the layers share one frame in Å."""
    calls: dict[str, list] = {"image": [], "points": [], "run": []}

    class Viewer:
        def __init__(self, title):
            self.layers, self.dims = [], types.SimpleNamespace(ndisplay=2)

        def add_image(self, data, **kwargs):
            calls["image"].append((data, kwargs))
            self.layers.append("image")

        def add_points(self, data, **kwargs):
            calls["points"].append((data, kwargs))
            self.layers.append("points")

    fake = types.SimpleNamespace(Viewer=Viewer, run=lambda: calls["run"].append(True))
    monkeypatch.setitem(sys.modules, "napari", fake)
    particle = tmp_path / "p000"
    particle.mkdir()
    volume = np.zeros((10, 12, 14), np.float32)
    volume[5 + 2, 6 - 1, 7 + 3] = 1.0  # z = +2, y = -1, x = +3 voxels from the centre
    write_map_zarr(particle / "map.zarr", {"map": volume}, voxel_size_A=0.5)
    pd.DataFrame(
        {"x_A": [1.5, 0.0], "y_A": [-0.5, 1.0], "z_A": [1.0, 2.0], "element": ["Pt", "Fe"]}
    ).to_parquet(particle / "atoms.parquet")
    assert main(["view", str(particle)]) == 0
    ((data, kwargs),) = calls["image"]
    np.testing.assert_array_equal(data, volume)
    world = np.array(np.unravel_index(np.argmax(data), data.shape)) * kwargs["scale"]
    world = world + kwargs["translate"]
    np.testing.assert_allclose(world, [1.0, -0.5, 1.5])  # (z, y, x) [Å] of the bright voxel
    points = {kw["name"]: xyz for xyz, kw in calls["points"]}
    np.testing.assert_allclose(points["atoms Pt"], [[1.0, -0.5, 1.5]])
    np.testing.assert_allclose(points["atoms Fe"], [[2.0, 1.0, 0.0]])
    assert calls["run"] == [True]
