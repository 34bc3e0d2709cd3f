"""``nanorecon ingest`` through ``nanorecon.cli.main``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from io_helpers import leftovers, movie_row, tomo_row, write_mrc, write_sheet, write_tilts

import nanorecon.cli as cli
from nanorecon.io import open_raw_zarr


@pytest.fixture(autouse=True)
def ingest_verb_only(monkeypatch):
    # the dispatcher imports every verb's module; test this verb independently of the others
    monkeypatch.setattr(cli, "VERBS", {"ingest": "_ingest"})


@pytest.fixture
def sheet(tmp_path: Path) -> Path:
    data = np.arange(4 * 20 * 20, dtype=np.int16).reshape(4, 20, 20)
    write_mrc(tmp_path / "movie.mrc", data, voxel_size_A=0.36)
    write_mrc(tmp_path / "tomo.mrc", data, voxel_size_A=0.36)
    write_tilts(tmp_path / "tomo.tlt", [-30, -10, 10, 30, 50])  # one angle too many
    return write_sheet(tmp_path / "samples.tsv", [movie_row(), tomo_row()])


def test_ingest_success(sheet: Path, tmp_path: Path, capsys):
    out = tmp_path / "results" / "movie1" / "raw.zarr"
    rc = cli.main(["ingest", str(sheet), "movie1", str(out), "--chunk-mb", "1", "--no-progress"])
    assert rc == 0
    arr, attrs = open_raw_zarr(out)
    assert arr.shape == (4, 20, 20) and attrs["dataset"] == "movie1"
    np.testing.assert_array_equal(arr[3], np.arange(3 * 400, 4 * 400).reshape(20, 20))
    assert "ingest movie1" not in capsys.readouterr().err  # --no-progress: no bar


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("tomo1", "holds 4 images but tilt-angle file"),
        ("nope", "dataset 'nope' is not in sample sheet"),
    ],
)
def test_ingest_error_is_one_line_and_writes_nothing(
    sheet: Path, tmp_path: Path, capsys, dataset: str, message: str
):
    out = tmp_path / "results" / dataset / "raw.zarr"
    rc = cli.main(["ingest", str(sheet), dataset, str(out), "--no-progress"])
    assert rc != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "nanorecon ingest:" in line]
    assert len(err) == 1
    assert err[0].startswith("nanorecon ingest: error: ") and message in err[0]
    assert not out.exists()
    assert leftovers(tmp_path / "results") == []


def test_bad_sheet_row_exit_code(tmp_path: Path, capsys):
    sheet = write_sheet(tmp_path / "s.tsv", [movie_row(elements="Pt,Qq")])
    rc = cli.main(["ingest", str(sheet), "movie1", str(tmp_path / "raw.zarr")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"sample sheet {sheet}, line 2 (dataset 'movie1'): unknown element symbol 'Qq'" in err
    assert leftovers(tmp_path) == ["s.tsv"]
