"""`nanorecon track` and `nanorecon extract` on the simulated movie, and their one-line errors."""

import numpy as np
import pandas as pd

from nanorecon.cli import main
from nanorecon.io import read_orientations, read_particle_stack, write_array_zarr

from .conftest import DIAMETER_A


def test_track_and_extract_write_particle_folders(raw_zarr, movie, tmp_path):
    result, _ = movie
    d = str(DIAMETER_A)
    assert (
        main(["track", str(raw_zarr), str(tmp_path), "--particle-diameter-A", d, "--no-progress"])
        == 0
    )
    tracks = pd.read_parquet(tmp_path / "tracks.parquet")
    assert (tmp_path / "tracks.csv").is_file()
    drift = pd.read_csv(tmp_path / "drift.csv")
    assert np.abs(drift[["drift_x_A", "drift_y_A"]].to_numpy() - result.drift_A).max() < 0.5 * 0.36
    args = ["extract", str(raw_zarr), str(tmp_path / "tracks.parquet"), str(tmp_path)]
    assert main([*args, "--box", "64", "--particle-diameter-A", d, "--no-progress"]) == 0
    listing = pd.read_csv(tmp_path / "particles.tsv", sep="\t")
    kept = listing[listing["status"] == "ok"]
    assert len(kept) == 3
    for _, row in kept.iterrows():
        folder = tmp_path / "particles" / row["particle"]
        images, attrs = read_particle_stack(folder / "stack.zarr")
        table, rotations = read_orientations(folder / "orientations.parquet")
        assert images.shape == (row["n_frames"], 64, 64) and len(table) == row["n_frames"]
        assert attrs["phase_flipped"] and np.allclose(rotations.magnitude(), 0)
        ok = tracks[(tracks["track"] == row["track"]) & (tracks["status"] == "ok")]
        assert list(table["frame"]) == list(ok["frame"])
        assert (folder / "ctf.json").is_file()


def test_errors_are_one_line(tmp_path, capsys):
    tomo = tmp_path / "tomo.zarr"
    write_array_zarr(
        tomo, np.ones((3, 32, 32)), attrs={"modality": "tomography", "pixel_size_A": 0.4}
    )
    assert main(["track", str(tomo), str(tmp_path / "o")]) == 2
    assert "modality 'tomography'" in capsys.readouterr().err
    empty = tmp_path / "empty.zarr"
    write_array_zarr(
        empty, np.ones((4, 128, 128)), attrs={"modality": "brownian", "pixel_size_A": 0.4}
    )
    assert main(["track", str(empty), str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no particle found" in err[0]
