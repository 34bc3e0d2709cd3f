"""Writers and the ``nanorecon simulate`` verb: files, headers, sheet and truth tables."""

import argparse
import json

import mrcfile
import numpy as np
import pandas as pd
import pytest

from nanorecon.cli import UserError, _simulate
from nanorecon.io import read_sample_sheet, read_tilt_angles
from nanorecon.io._simulated import (
    SHEET_COLUMNS,
    write_simulated_movie,
    write_simulated_tomography,
)
from nanorecon.simulate import (
    MovieSpec,
    ParticleSpec,
    TomographySpec,
    simulate_movie,
    simulate_tilt_series,
)

PARTICLE = ParticleSpec(shape="sphere", diameter_nm=1.2, elements=["Fe", "Pt"])


def test_tomography_files(tmp_path):
    result = simulate_tilt_series(TomographySpec(particle=PARTICLE, tilt_step_deg=10.0, seed=1))
    sheet = write_simulated_tomography(result, tmp_path, "tomo1")
    assert sheet == tmp_path / "samples.tsv"
    with mrcfile.open(tmp_path / "tilt_series.mrc", permissive=False) as mrc:
        np.testing.assert_array_equal(mrc.data, result.images)
        assert mrc.data.dtype == np.float32
        assert mrc.voxel_size.x == pytest.approx(0.35) and mrc.voxel_size.y == pytest.approx(0.35)
    lines = (tmp_path / "tilt_series.rawtlt").read_text().splitlines()
    assert [float(v) for v in lines] == pytest.approx(list(np.arange(-70, 71, 10)))
    np.testing.assert_allclose(
        read_tilt_angles(tmp_path / "tilt_series.rawtlt"), result.tilt_angles_deg
    )
    raw = pd.read_csv(sheet, sep="\t", keep_default_na=False)
    assert list(raw.columns) == SHEET_COLUMNS == [
        "dataset", "modality", "path", "pixel_size_A", "voltage_kV", "elements", "tilt_angles",
        "frame_rate_hz", "dose_e_per_A2", "defocus_A", "cs_mm", "truth",
    ]  # fmt: skip
    row = raw.iloc[0]
    assert (row["dataset"], row["modality"], row["path"]) == (
        "tomo1",
        "tomography",
        "tilt_series.mrc",
    )
    assert (row["elements"], row["tilt_angles"], row["truth"]) == (
        "Fe,Pt",
        "tilt_series.rawtlt",
        "truth",
    )
    assert row["frame_rate_hz"] == "" and row["defocus_A"] == "" and row["cs_mm"] == ""
    parsed = read_sample_sheet(sheet)
    assert list(parsed["dataset"]) == ["tomo1"]
    truth = tmp_path / "truth"
    atoms = pd.read_csv(truth / "atoms.csv")
    assert list(atoms.columns) == ["particle", "x_A", "y_A", "z_A", "element"]
    np.testing.assert_allclose(atoms[["x_A", "y_A", "z_A"]], result.particle.positions_A)
    tilts = pd.read_csv(truth / "tilts.csv")
    assert list(tilts.columns) == [
        "image", "tilt_nominal_deg", "tilt_true_deg", "tilt_axis_deg", "shift_x_A", "shift_y_A",
        "qx", "qy", "qz", "qw",
    ]  # fmt: skip
    particles = pd.read_csv(truth / "particles.csv")
    for column in ("shape", "diameter_nm", "n_atoms", "elements", "composition",
                   "lattice_parameter_A", "surface_strain", "qx", "qy", "qz", "qw"):  # fmt: skip
        assert column in particles.columns
    meta = json.loads((truth / "simulation.json").read_text())
    assert meta["seed"] == 1 and meta["spec"]["tilt_step_deg"] == 10.0
    assert TomographySpec.from_dict(meta["spec"]) == result.spec
    assert not [p for p in tmp_path.rglob(".*tmp*")]


def test_movie_streams_frames_and_leaves_nothing_partial(tmp_path):
    spec = MovieSpec(particles=[PARTICLE], n_frames=5, image_shape_px=(96, 80), seed=4)
    result = simulate_movie(spec)
    write_simulated_movie(result, tmp_path, "movie1")
    with mrcfile.open(tmp_path / "movie.mrc") as mrc:
        assert mrc.data.shape == (5, 96, 80)
        assert mrc.voxel_size.x == pytest.approx(0.36)
        np.testing.assert_array_equal(mrc.data, np.stack(list(result)))
    frames = pd.read_csv(tmp_path / "truth" / "frames.csv")
    assert list(frames.columns) == [
        "frame", "time_s", "particle", "x_A", "y_A", "qx", "qy", "qz", "qw", "in_view",
    ]  # fmt: skip
    row = pd.read_csv(tmp_path / "samples.tsv", sep="\t", keep_default_na=False).iloc[0]
    assert (row["modality"], row["path"], row["tilt_angles"]) == ("brownian", "movie.mrc", "")
    assert (row["frame_rate_hz"], row["defocus_A"], row["cs_mm"]) == (400.0, 100.0, 0.001)
    assert MovieSpec.from_dict(json.loads((tmp_path / "truth/simulation.json").read_text())["spec"])

    def broken():
        frames = result.frames()
        yield next(frames)
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError, match="renderer failed"):
        write_simulated_movie(result, tmp_path / "other", "movie2", frames=broken())
    assert list((tmp_path / "other").iterdir()) == []


def _run(argv):
    parser = argparse.ArgumentParser()
    _simulate.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["simulate", *argv])
    return args.run(args)


def test_cli_merges_spec_file_json_and_seed(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "n_frames: 3\nimage_shape_px: [96, 96]\nseed: 1\n"
        "particles:\n  - {shape: sphere, diameter_nm: 1.2}\n"
    )
    out = tmp_path / "out"
    argv = ["brownian", str(out), "--dataset", "d1", "--spec-file", str(spec_file),
            "--spec-json", '{"n_frames": 2}', "--seed", "7"]  # fmt: skip
    assert _run(argv) == 0
    meta = json.loads((out / "truth" / "simulation.json").read_text())
    assert meta["spec"]["n_frames"] == 2 and meta["seed"] == 7
    assert meta["spec"]["image_shape_px"] == [96, 96]
    with mrcfile.open(out / "movie.mrc") as mrc:
        assert mrc.data.shape == (2, 96, 96)


def test_cli_reports_unknown_keys(tmp_path):
    with pytest.raises(UserError, match="'tilt_stepp_deg'"):
        _run(
            ["tomography", str(tmp_path), "--dataset", "x", "--spec-json", '{"tilt_stepp_deg": 1}']
        )
    with pytest.raises(UserError, match="JSON"):
        _run(["tomography", str(tmp_path), "--dataset", "x", "--spec-json", "{bad"])
    assert not (tmp_path / "samples.tsv").exists()
