"""Ingest of a sample-sheet row into raw.zarr: values, attributes, validation, atomicity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from io_helpers import leftovers, movie_row, tomo_row, write_mrc, write_sheet, write_tilts
from test_readers import write_ncem_emd

from nanorecon import __version__
from nanorecon.io import IngestError, ingest, open_raw_zarr, read_sample_sheet, sample_row

ANGLES = np.linspace(-60, 60, 7)


def load_row(folder: Path, row: dict, dataset: str | None = None) -> dict:
    sheet = write_sheet(folder / "samples.tsv", [row])
    return sample_row(read_sample_sheet(sheet), dataset or row["dataset"])


@pytest.fixture
def tomo(tmp_path: Path) -> tuple[dict, np.ndarray]:
    data = np.random.default_rng(4).normal(100, 10, size=(7, 24, 20)).astype(np.float32)
    write_mrc(tmp_path / "tomo.mrc", data, voxel_size_A=0.4)
    write_tilts(tmp_path / "tomo.tlt", ANGLES)
    return load_row(tmp_path, tomo_row(cs_mm=1.2)), data


def results(tmp_path: Path) -> Path:
    out = tmp_path / "results" / "tomo1"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8"])
def test_tomography_mrc_values_attrs_sha_chunks(tmp_path: Path, dtype: str):
    data = (np.random.default_rng(5).random((7, 24, 20)) * 120).astype(dtype)
    raw = write_mrc(tmp_path / "tomo.mrc", data, voxel_size_A=0.4)
    write_tilts(tmp_path / "tomo.tlt", ANGLES)
    row = load_row(tmp_path, tomo_row(cs_mm=1.2, defocus_A=""))
    out = tmp_path / "results" / "tomo1" / "raw.zarr"
    # 24×20 float32 images are 1920 B: 0.006 MiB holds 3 whole images per chunk
    summary = ingest(row, out, chunk_mb=0.006, progress=False)

    arr, attrs = open_raw_zarr(out)
    assert arr.shape == (7, 24, 20) and arr.dtype == np.float32
    assert arr.chunks == (3, 24, 20) == summary["chunks"]
    np.testing.assert_array_equal(arr[:], data.astype(np.float32))
    assert attrs["source_sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert attrs["pixel_size_A"] == pytest.approx(0.4, rel=1e-6)  # from the header
    assert attrs["tilt_angles_deg"] == pytest.approx(ANGLES.tolist(), abs=0.005)
    assert attrs["modality"] == "tomography"
    assert attrs["elements"] == ["Pt"]
    assert attrs["voltage_kV"] == 300.0
    assert attrs["dose_e_per_A2"] == 50.0
    assert attrs["cs_mm"] == 1.2 and attrs["defocus_A"] is None
    assert attrs["frame_rate_hz"] is None
    assert attrs["dataset"] == "tomo1"
    assert attrs["source_file"] == str(raw)
    assert attrs["source_format"] == "MRC" and attrs["source_dtype"] == dtype
    assert attrs["shape"] == [7, 24, 20]
    assert attrs["units"]["pixel_size_A"] == "Å" and attrs["units"]["tilt_angles_deg"] == "deg"
    assert attrs["nanorecon_version"] == __version__
    assert attrs["created"].endswith("+00:00")
    # compressed with Blosc zstd + bitshuffle, stored as zarr v3
    meta = json.loads((out / "data" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    blosc = [c for c in meta["codecs"] if c["name"] == "blosc"][0]["configuration"]
    assert blosc["cname"] == "zstd" and blosc["shuffle"] == "bitshuffle"
    assert leftovers(out.parent) == ["raw.zarr"]


def test_brownian_tiff_sheet_pixel_size_wins(tmp_path: Path, caplog):
    data = np.random.default_rng(6).integers(0, 50, size=(5, 20, 32), dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "movie.tif",
        data,
        imagej=True,
        resolution=(1 / 0.05, 1 / 0.05),
        metadata={"unit": "nm"},
    )  # header: 0.5 Å; sheet: 0.36 Å
    row = load_row(tmp_path, movie_row(path="movie.tif"))
    out = tmp_path / "raw.zarr"
    with caplog.at_level("WARNING"):
        summary = ingest(row, out, progress=False)
    assert "differs from the file header's 0.5 Å" in caplog.text
    arr, attrs = open_raw_zarr(out)
    np.testing.assert_array_equal(arr[:], data.astype(np.float32))
    assert attrs["pixel_size_A"] == 0.36 and attrs["source_pixel_size_A"] == pytest.approx(0.5)
    assert attrs["frame_rate_hz"] == 400.0 and attrs["elements"] == ["Fe", "Pt"]
    assert attrs["defocus_A"] == 150.0 and "tilt_angles_deg" not in attrs
    assert summary["chunks"] == (5, 20, 32)


def test_emd_tilt_series(tmp_path: Path):
    data = np.random.default_rng(8).integers(0, 900, size=(7, 20, 24)).astype(np.uint16)
    write_ncem_emd(tmp_path / "tomo.emd", data, pixel_nm=0.03)
    write_tilts(tmp_path / "tomo.tlt", ANGLES)
    row = load_row(tmp_path, tomo_row(path="tomo.emd"))
    ingest(row, tmp_path / "raw.zarr", progress=False)
    arr, attrs = open_raw_zarr(tmp_path / "raw.zarr")
    np.testing.assert_array_equal(arr[:], data.astype(np.float32))
    assert attrs["pixel_size_A"] == pytest.approx(0.3) and attrs["source_format"] == "EMD"


def test_replaces_previous_output(tomo, tmp_path: Path):
    row, data = tomo
    out = results(tmp_path) / "raw.zarr"
    zarr.open_group(str(out), mode="w").create_array("data", shape=(1, 2, 2), dtype="f4")
    ingest(row, out, progress=False)
    np.testing.assert_array_equal(open_raw_zarr(out)[0][:], data)
    assert leftovers(out.parent) == ["raw.zarr"]


# --- bad inputs: clear message, nothing partial, a previous output kept ---------------------


def ingest_fails(row: dict, tmp_path: Path, exc=IngestError) -> str:
    folder = results(tmp_path)
    out = folder / "raw.zarr"
    out.mkdir(exist_ok=True)
    (out / "previous.txt").write_text("keep me")
    with pytest.raises(exc) as info:
        ingest(row, out, chunk_mb=0.004, progress=False)
    assert leftovers(folder) == ["raw.zarr"]
    assert (out / "previous.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["previous.txt"]
    text = str(info.value)
    assert "\n" not in text
    return text


def test_missing_raw_file(tomo, tmp_path: Path):
    row, _ = tomo
    (tmp_path / "tomo.mrc").unlink()
    text = ingest_fails(row, tmp_path, FileNotFoundError)
    assert f"raw file {tmp_path / 'tomo.mrc'} does not exist" in text
    assert f"sample sheet {tmp_path / 'samples.tsv'}, line 2" in text
    assert "fix the path column" in text


def test_truncated_mrc(tomo, tmp_path: Path):
    row, _ = tomo
    raw = tmp_path / "tomo.mrc"
    size = raw.stat().st_size
    with open(raw, "r+b") as fh:
        fh.truncate(size - 1000)
    text = ingest_fails(row, tmp_path, ValueError)
    assert f"{raw} is truncated" in text and f"file has {size - 1000} bytes" in text


def test_tiff_with_mrc_extension(tomo, tmp_path: Path):
    row, _ = tomo
    tifffile.imwrite(
        tmp_path / "tomo.mrc", np.zeros((7, 20, 20), np.uint16), photometric="minisblack"
    )
    text = ingest_fails(row, tmp_path, ValueError)
    assert "is not a valid MRC file" in text and "is it a TIFF file? rename it" in text


def test_single_image_tilt_series(tmp_path: Path):
    write_mrc(tmp_path / "tomo.mrc", np.ones((24, 20), np.float32))  # 2D MRC: one image
    write_tilts(tmp_path / "tomo.tlt", [0.0])
    text = ingest_fails(load_row(tmp_path, tomo_row()), tmp_path)
    assert "holds 1 image(s); a tilt series needs at least 2" in text
    assert "dataset 'tomo1' (sample sheet" in text


def test_zero_frame_movie(tmp_path: Path):
    tifffile.imwrite(
        tmp_path / "movie.tif", np.zeros((1, 20, 20), np.uint16), photometric="minisblack"
    )
    text = ingest_fails(load_row(tmp_path, movie_row(path="movie.tif")), tmp_path)
    assert "holds 1 frame(s); Brownian reconstruction needs a movie of at least 2" in text
    row = load_row(tmp_path, movie_row(path="empty.mrc"))
    write_mrc(tmp_path / "empty.mrc", np.zeros((0, 20, 20), np.float32))
    text = ingest_fails(row, tmp_path)
    assert "movie " + str(tmp_path / "empty.mrc") + " holds 0 frame(s)" in text


def test_tiny_images(tmp_path: Path):
    write_mrc(tmp_path / "movie.mrc", np.zeros((3, 8, 40), np.float32))
    text = ingest_fails(load_row(tmp_path, movie_row()), tmp_path)
    assert "are 8×40 pixels; at least 16×16 are needed" in text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_names_first_bad_image(tomo, tmp_path: Path, bad):
    row, data = tomo
    data = data.copy()
    data[4, 3, 5] = bad
    data[6, 0, 0] = bad
    write_mrc(tmp_path / "tomo.mrc", data)
    text = ingest_fails(row, tmp_path)
    assert "holds NaN or Inf values, first in image 4 (0-based)" in text
    assert str(tmp_path / "tomo.mrc") in text


def test_tilt_count_differs_from_image_count(tomo, tmp_path: Path):
    row, _ = tomo
    write_tilts(tmp_path / "tomo.tlt", ANGLES[:-1])
    text = ingest_fails(row, tmp_path)
    assert "holds 7 images but tilt-angle file" in text and "has 6 angles" in text
    assert "give one angle per image" in text


def test_angles_outside_range(tomo, tmp_path: Path):
    row, _ = tomo
    write_tilts(tmp_path / "tomo.tlt", [*ANGLES[:-1], 95.0])
    text = ingest_fails(row, tmp_path)
    assert "line 7: 95 is outside [-90, 90] deg" in text and "radians" in text


def test_pixel_size_missing_in_sheet_and_header(tmp_path: Path):
    write_mrc(tmp_path / "movie.mrc", np.zeros((3, 20, 20), np.float32), voxel_size_A=None)
    row = load_row(tmp_path, movie_row(pixel_size_A=""))
    text = ingest_fails(row, tmp_path)
    assert (
        f"pixel size missing in both sheet (row 2 of {tmp_path / 'samples.tsv'}) and file "
        f"header of {tmp_path / 'movie.mrc'}; add pixel_size_A to the sheet"
    ) in text


def test_unknown_modality_in_a_hand_made_row(tomo, tmp_path: Path):
    row, _ = tomo
    text = ingest_fails({**row, "modality": "cryo"}, tmp_path)
    assert "unknown modality 'cryo'; use 'tomography' or 'brownian'" in text


def test_output_parent_is_a_file(tomo, tmp_path: Path):
    row, _ = tomo
    (tmp_path / "results").write_text("file")
    with pytest.raises(OSError, match=r"results is a file, not a folder; remove or rename"):
        ingest(row, tmp_path / "results" / "tomo1" / "raw.zarr", progress=False)
    assert (tmp_path / "results").read_text() == "file"
