"""After the CI workflow: every figure is a real PNG, the Snakemake report embeds them all, and the
exports (OME-Zarr map, PDB/CIF models) open in the tools scientists use."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from nanorecon.cli._figures import DPI, figures_of
from nanorecon.figures import FIGURE_SIZES_IN
from nanorecon.io import read_map_zarr

pytestmark = pytest.mark.slow

DATASET = "results-ci/ci_tomo"
PARTICLE = f"{DATASET}/particles/p000"
MOVIE = "results-ci/ci_brownian"


@pytest.fixture(scope="module")
def finished(ci_workflow) -> Path:
    """The workflow copy after `snakemake --profile profiles/ci`."""
    root, result = ci_workflow
    assert result.returncode == 0, result.stdout
    return root


def figure_paths() -> dict[str, str]:
    """Figures every CI run must have: the tilt series' particle and dataset, the movie's tracks."""
    paths = {name: f"{DATASET}/figures/p000/{name}.png" for name in figures_of("tomography")}
    paths.update(
        {name: f"{DATASET}/figures/{name}.png" for name in figures_of("tomography", dataset=True)}
    )
    paths["tracks"] = f"{MOVIE}/figures/tracks.png"
    return paths


def _assert_png(path: Path, name: str) -> None:
    assert path.is_file() and path.stat().st_size > 0, f"{path} missing (figures in all_outputs?)"
    pixels = matplotlib.image.imread(path)
    width, height = FIGURE_SIZES_IN[name]
    assert pixels.shape[:2] == (round(height * DPI), round(width * DPI))
    assert pixels[..., :3].std() > 0.05  # not blank


@pytest.mark.parametrize("name", list(figure_paths()))
def test_figure_is_a_png_of_its_size(finished: Path, name: str):
    _assert_png(finished / figure_paths()[name], name)


def test_refined_brownian_particles_have_their_figures(finished: Path):
    """Every refined particle shows its FSC, map and orientation coverage; traced ones their atoms."""
    refinement = pd.read_csv(finished / MOVIE / "refinement.tsv", sep="\t", keep_default_na=False)
    refined = refinement[refinement.resolution_A != ""]
    assert len(refined) >= 1
    of_refinement = {"fsc", "map_axes", "orientation_coverage"}
    of_atoms = set(figures_of("brownian")) - of_refinement
    for row in refined.itertuples():
        folder = finished / MOVIE / "figures" / row.particle
        for name in of_refinement:
            _assert_png(folder / f"{name}.png", name)
        for name in of_atoms:
            # atoms are traced (and drawn) only where the refinement reached atomic resolution
            assert (folder / f"{name}.png").is_file() == (row.status == "ok"), (row.particle, name)
            if row.status == "ok":
                _assert_png(folder / f"{name}.png", name)


def test_report_embeds_every_figure(finished: Path, run_snakemake):
    result = run_snakemake(finished, "--profile", "profiles/ci", "--report", "report.html")
    assert result.returncode == 0, result.stdout
    html = (finished / "report.html").read_text(encoding="utf-8")
    assert len(html) > 100_000
    for name in figure_paths():
        # self-contained: each PNG is inlined as a data URI
        assert f"filename={name}.png;base64," in html, name
    for category in ("Reconstruction", "Atomic model", "Raw data", "Dataset", "Run time"):
        assert category in html
    assert "Fourier shell correlation" in html  # a caption


def test_map_zarr_is_an_ome_zarr_image_in_angstrom(finished: Path):
    path = finished / PARTICLE / "map.zarr"
    maps, attrs = read_map_zarr(path)
    voxel = attrs["voxel_size_A"]
    ome_zarr_io = pytest.importorskip("ome_zarr.io")
    ome_zarr_reader = pytest.importorskip("ome_zarr.reader")
    for name in ("map", "half1", "half2"):
        location = ome_zarr_io.parse_url(str(path / name))
        assert location is not None, name
        node = next(iter(ome_zarr_reader.Reader(location)()))
        multiscales = node.metadata
        assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]
        assert all(a["type"] == "space" and a["unit"] == "angstrom" for a in multiscales["axes"])
        scale = next(
            t["scale"] for t in multiscales["coordinateTransformations"][0] if t["type"] == "scale"
        )
        np.testing.assert_allclose(scale, [voxel] * 3)
        np.testing.assert_array_equal(np.asarray(node.data[0]), maps[name])


def test_models_load_in_ase(finished: Path):
    ase_io = pytest.importorskip("ase.io")
    atoms = pd.read_parquet(finished / PARTICLE / "atoms.parquet")
    expected = atoms[["x_A", "y_A", "z_A"]].to_numpy()
    for name, atol in (("model.pdb", 1e-3), ("model.cif", 1e-6)):  # PDB keeps 3 decimals
        model = ase_io.read(finished / PARTICLE / name)
        assert len(model) == len(atoms), name
        assert list(model.get_chemical_symbols()) == list(atoms["element"]), name
        np.testing.assert_allclose(model.positions, expected, atol=atol, err_msg=name)
