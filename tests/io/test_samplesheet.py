"""Sample-sheet parsing and validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from io_helpers import movie_row, tomo_row, write_sheet

from nanorecon.io import SampleSheetError, read_sample_sheet, sample_row


def test_reads_rows_resolves_paths_and_types(tmp_path: Path):
    sub = tmp_path / "data"
    sub.mkdir()
    sheet = write_sheet(
        sub / "samples.tsv",
        [tomo_row(truth="truth/tomo1"), movie_row(path="/abs/movie.tif", truth="")],
        extra_columns=("truth", "notes"),
    )
    df = read_sample_sheet(sheet)
    assert list(df["dataset"]) == ["tomo1", "movie1"]
    assert df["path"].iloc[0] == str(sub / "tomo.mrc")
    assert df["path"].iloc[1] == "/abs/movie.tif"
    assert df["tilt_angles"].iloc[0] == str(sub / "tomo.tlt")
    assert df["truth"].iloc[0] == str(sub / "truth" / "tomo1")
    assert "notes" in df.columns
    assert df["pixel_size_A"].dtype == "float64"
    assert math.isnan(df["pixel_size_A"].iloc[0])
    assert df["pixel_size_A"].iloc[1] == pytest.approx(0.36)
    assert list(df["sheet_line"]) == [2, 3]

    row = sample_row(df, "movie1")
    assert row["elements"] == ["Fe", "Pt"]
    assert row["frame_rate_hz"] == 400.0
    assert row["tilt_angles"] is None and row["truth"] is None
    assert sample_row(df, "tomo1")["pixel_size_A"] is None
    with pytest.raises(SampleSheetError, match="'nope' is not in sample sheet .* tomo1, movie1"):
        sample_row(df, "nope")


def test_optional_columns_may_be_absent_and_blank_lines_skipped(tmp_path: Path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text(
        "dataset\tmodality\tpath\tvoltage_kV\telements\tframe_rate_hz\n"
        "\n# a comment\n"
        "m\tBrownian\tm.mrc\t300\tAu\t100\n"
    )
    df = read_sample_sheet(sheet)
    assert df["modality"].iloc[0] == "brownian"
    assert df["sheet_line"].iloc[0] == 4
    assert math.isnan(df["cs_mm"].iloc[0])


BAD_ROWS = [
    ({"modality": "tomo"}, "unknown modality 'tomo'; use 'tomography' or 'brownian'"),
    ({"dataset": "a/b"}, "not a safe folder name; use only letters"),
    ({"dataset": ".."}, "not a safe folder name"),
    ({"elements": "Pt,Xx"}, "unknown element symbol 'Xx'; use chemical symbols"),
    ({"elements": "pt"}, "unknown element symbol 'pt'"),
    ({"pixel_size_A": "-0.3"}, "pixel_size_A='-0.3' must be positive"),
    ({"voltage_kV": "0"}, "voltage_kV='0' must be positive"),
    ({"voltage_kV": ""}, "voltage_kV is empty; give the acceleration voltage"),
    ({"dose_e_per_A2": "-1"}, "dose_e_per_A2='-1' must be positive"),
    ({"frame_rate_hz": "0"}, "frame_rate_hz='0' must be positive"),
    ({"frame_rate_hz": "fast"}, "frame_rate_hz='fast' is not a number"),
    ({"modality": "tomography", "tilt_angles": ""}, "tomography row without tilt_angles; give"),
    ({"frame_rate_hz": ""}, "brownian row without frame_rate_hz; give the movie's frame rate"),
    ({"path": ""}, "the path column is empty"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ROWS)
def test_bad_row_names_sheet_line_dataset_and_fix(tmp_path: Path, change: dict, message: str):
    row = movie_row(dataset="m2", **{k: v for k, v in change.items() if k != "dataset"})
    row["dataset"] = change.get("dataset", "m2")
    sheet = write_sheet(tmp_path / "samples.tsv", [tomo_row(), row])
    with pytest.raises(SampleSheetError) as info:
        read_sample_sheet(sheet)
    text = str(info.value)
    assert message in text
    assert f"sample sheet {sheet}, line 3" in text
    assert f"(dataset {row['dataset']!r})" in text
    assert "\n" not in text


def test_duplicate_dataset_id(tmp_path: Path):
    sheet = write_sheet(tmp_path / "s.tsv", [movie_row(), tomo_row(), movie_row()])
    with pytest.raises(
        SampleSheetError,
        match=r"line 4 \(dataset 'movie1'\): duplicate dataset id, "
        r"first used on line 2; give every row a unique id",
    ):
        read_sample_sheet(sheet)


def test_missing_required_columns(tmp_path: Path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("dataset\tmodality\tpath\telements\nm\tbrownian\tm.mrc\tPt\n")
    with pytest.raises(
        SampleSheetError,
        match=r"s.tsv, line 1: missing required column\(s\) "
        r"voltage_kV; .* Add the columns",
    ):
        read_sample_sheet(sheet)


def test_comma_separated_sheet_gets_a_hint(tmp_path: Path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("dataset,modality,path,voltage_kV,elements\nm,brownian,m.mrc,300,Pt\n")
    with pytest.raises(SampleSheetError, match="comma- rather than tab-separated"):
        read_sample_sheet(sheet)


def test_missing_sheet(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.tsv does not exist"):
        read_sample_sheet(tmp_path / "nope.tsv")
