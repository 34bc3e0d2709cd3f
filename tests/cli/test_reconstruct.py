import json

import numpy as np
import pandas as pd
import pytest

from nanorecon.cli import main
from nanorecon.io import read_map_zarr, read_orientations, read_particle_stack, write_array_zarr


@pytest.fixture(scope="module")
def raw_tilt_series(tmp_path_factory):
    """A tiny simulated tilt series (1.5 nm Pt, 31 tilts ±60°, 0.5 Å/px), ingested."""
    root = tmp_path_factory.mktemp("reconstruct")
    spec = {
        "particle": {"shape": "sphere", "diameter_nm": 1.5, "elements": ["Pt"]},
        "tilt_min_deg": -60,
        "tilt_max_deg": 60,
        "tilt_step_deg": 4,
        "shift_max_px": 2,
        "pixel_size_A": 0.5,
        "seed": 3,
    }
    sim = root / "sim"
    argv = ["simulate", "tomography", str(sim), "--dataset", "d1", "--spec-json", json.dumps(spec)]
    assert main(argv) == 0
    raw = root / "raw.zarr"
    assert main(["ingest", str(sim / "samples.tsv"), "d1", str(raw), "--no-progress"]) == 0
    return root, raw, sim / "truth"


def test_reconstruct_end_to_end(raw_tilt_series):
    root, raw, truth = raw_tilt_series
    out = root / "particles" / "p000"
    argv = ["reconstruct", str(raw), str(out), "--truth", str(truth), "--no-progress"]
    assert main([*argv, "--iterations", "8", "--rounds", "3", "--threads", "2"]) == 0
    for name in ("stack.zarr", "orientations.parquet", "map.zarr", "map.mrc", "fsc.csv"):
        assert (out / name).exists(), name
    images, attrs = read_particle_stack(out / "stack.zarr")
    assert images.shape[0] == 31 and images.shape[1] == images.shape[2]
    assert attrs["pixel_size_A"] == 0.5
    table, rotations = read_orientations(out / "orientations.parquet")
    assert len(table) == 31 and set(table["half_set"]) == {1, 2}
    assert table["score"].min() > 0.9
    maps, map_attrs = read_map_zarr(out / "map.zarr")
    assert set(maps) == {"map", "half1", "half2"} and maps["map"].shape == (images.shape[1],) * 3
    log = pd.read_csv(out / "reconstruction_log.csv")
    assert list(log.columns) == ["stage", "round", "iteration", "error"]
    assert len(log) == (3 + 1) * 8 + 2 * 16
    refine = log[log["stage"] == "refine"]["error"].to_numpy()
    assert refine[-1] < 0.6 * refine[0]  # measured 0.59 → 0.18
    fsc = pd.read_csv(out / "fsc.csv")
    assert {"fsc_half", "fsc_truth", "resolution_A"} <= set(fsc.columns)
    # Measured: FSC against the truth above 0.99 to 9 Å, truth correlation 0.97.
    assert fsc["fsc_truth"].iloc[1:4].min() > 0.95
    validation = pd.read_csv(out / "alignment_validation.csv").iloc[0]
    # Measured: shifts 0.12 px RMS, angles 0.49° RMS (from 1° tilt errors), FSC 0.5 at Nyquist.
    assert validation["shift_rms_error_px"] < 0.3
    assert validation["angle_rms_error_deg"] < 0.8
    assert abs(validation["tilt_axis_estimate_deg"]) < 1.0
    assert validation["fsc_truth_05_A"] < 1.5
    assert validation["truth_correlation"] > 0.9


def test_brownian_store_is_refused(tmp_path, capsys):
    raw = tmp_path / "raw.zarr"
    attrs = {"modality": "brownian", "pixel_size_A": 0.36, "frame_rate_hz": 400.0}
    write_array_zarr(raw, np.ones((4, 16, 16), np.float32), attrs=attrs)
    assert main(["reconstruct", str(raw), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "modality 'brownian'" in err and "tomography" in err
    assert not (tmp_path / "out" / "map.zarr").exists()


def test_missing_tilt_angles_are_refused(tmp_path, capsys):
    raw = tmp_path / "raw.zarr"
    write_array_zarr(
        raw, np.ones((4, 16, 16), np.float32), attrs={"modality": "tomography", "pixel_size_A": 0.4}
    )
    assert main(["reconstruct", str(raw), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "tilt_angles_deg" in capsys.readouterr().err
    write_array_zarr(
        raw,
        np.ones((4, 16, 16), np.float32),
        attrs={"modality": "tomography", "pixel_size_A": 0.4, "tilt_angles_deg": [0.0, 1.0]},
    )
    assert main(["reconstruct", str(raw), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "4 images but 2 tilt angles" in capsys.readouterr().err
