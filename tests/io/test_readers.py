"""Raw stack readers: MRC, TIFF, EMD; format checks and truncation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from io_helpers import write_mrc

from nanorecon.io import RawFormatError, open_raw_stack, pixel_size_from_units


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8", "uint16", "float16"])
def test_mrc_blocks_equal_source(tmp_path: Path, dtype: str):
    rng = np.random.default_rng(1)
    data = (rng.random((7, 20, 18)) * 200).astype(dtype)
    path = write_mrc(tmp_path / "s.mrcs", data, voxel_size_A=0.42)
    with open_raw_stack(path) as stack:
        assert stack.format == "MRC"
        assert stack.shape == (7, 20, 18)
        assert stack.dtype == np.dtype(dtype)
        assert stack.pixel_size_A == pytest.approx(0.42, rel=1e-6)
        block = stack.read(2, 5)
        assert block.dtype == np.float32
        np.testing.assert_array_equal(block, data[2:5].astype(np.float32))
        np.testing.assert_array_equal(stack.read(0, 7), data.astype(np.float32))
        with pytest.raises(IndexError):
            stack.read(5, 8)


def test_mrc_2d_is_one_image_and_zero_pixel_size_is_none(tmp_path: Path):
    path = write_mrc(tmp_path / "one.mrc", np.ones((20, 24), np.float32), voxel_size_A=None)
    with open_raw_stack(path) as stack:
        assert stack.shape == (1, 20, 24)
        assert stack.pixel_size_A is None


def test_truncated_mrc_names_expected_and_actual_size(tmp_path: Path):
    path = write_mrc(tmp_path / "t.st", np.zeros((4, 20, 20), np.int16))
    full = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(full - 100)
    with pytest.raises(RawFormatError) as info:
        open_raw_stack(path)
    text = str(info.value)
    assert f"{path} is truncated" in text
    assert f"({full} bytes with header) but the file has {full - 100} bytes" in text
    assert "re-copy" in text


def test_mrc_shorter_than_header(tmp_path: Path):
    path = tmp_path / "tiny.mrc"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(RawFormatError, match="an MRC header alone is 1024 bytes, the file has 100"):
        open_raw_stack(path)


def test_tiff_named_mrc(tmp_path: Path):
    path = tmp_path / "fake.mrc"
    tifffile.imwrite(path, np.zeros((3, 20, 20), np.uint16), photometric="minisblack")
    with pytest.raises(RawFormatError) as info:
        open_raw_stack(path)
    text = str(info.value)
    assert f"{path} is not a valid MRC file (starts with bytes b'II*\\x00" in text
    assert "is it a TIFF file? rename it" in text


def test_garbage_named_mrc(tmp_path: Path):
    path = tmp_path / "junk.mrc"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(RawFormatError, match=r"junk.mrc is not a valid MRC file \(starts with"):
        open_raw_stack(path)


def test_mrc_named_tiff(tmp_path: Path):
    path = write_mrc(tmp_path / "fake.tif", np.zeros((2, 20, 20), np.float32))
    with pytest.raises(RawFormatError, match=r"fake.tif is not a valid TIFF file .* is it a MRC"):
        open_raw_stack(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_stack_page_wise(tmp_path: Path, compression):
    rng = np.random.default_rng(2)
    data = rng.integers(0, 4000, size=(6, 20, 30), dtype=np.uint16)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, data, compression=compression)
    with open_raw_stack(path) as stack:
        assert stack.format == "TIFF"
        assert stack.shape == (6, 20, 30)
        assert stack.pixel_size_A is None  # no resolution given
        np.testing.assert_array_equal(stack.read(1, 4), data[1:4].astype(np.float32))
        np.testing.assert_array_equal(stack.read(5, 6), data[5:6].astype(np.float32))


def test_tiff_imagej_pixel_size(tmp_path: Path):
    data = np.arange(4 * 20 * 20, dtype=np.float32).reshape(4, 20, 20)
    path = tmp_path / "ij.tiff"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 0.025, 1 / 0.025), metadata={"unit": "nm"}
    )
    with open_raw_stack(path) as stack:
        assert stack.pixel_size_A == pytest.approx(0.25)
        np.testing.assert_array_equal(stack.read(0, 4), data)


def test_tiff_cm_resolution_and_print_dpi(tmp_path: Path):
    data = np.zeros((2, 20, 20), np.uint8)
    cm = tmp_path / "cm.tif"
    tifffile.imwrite(cm, data, resolution=(1e7, 1e7), resolutionunit="CENTIMETER")  # 1 nm px
    dpi = tmp_path / "dpi.tif"
    tifffile.imwrite(dpi, data, resolution=(72, 72), resolutionunit="INCH")
    with open_raw_stack(cm) as a, open_raw_stack(dpi) as b:
        assert a.pixel_size_A == pytest.approx(10.0)
        assert b.pixel_size_A is None  # a print resolution, not a pixel size


def test_truncated_tiff(tmp_path: Path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.ones((4, 32, 32), np.float32), photometric="minisblack")
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(RawFormatError, match=r"cut.tif is (truncated|not a readable TIFF)"):
        open_raw_stack(path)


def write_ncem_emd(path: Path, data: np.ndarray, pixel_nm: float) -> Path:
    """NCEM EMD as rsciio reads it: HDF5 dataset stored (x, y, n), dim1 describing x."""
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        group = f.create_group("data").create_group("series")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=data.T)
        dims = [("x", "nm", pixel_nm), ("y", "nm", pixel_nm), ("image", "", 1.0)]
        for i, (name, units, step) in enumerate(dims, start=1):
            dim = group.create_dataset(f"dim{i}", data=np.arange(data.T.shape[i - 1]) * step)
            dim.attrs["name"] = name
            dim.attrs["units"] = units
    return path


def test_emd_ncem_via_rosettasciio(tmp_path: Path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, size=(5, 20, 24)).astype(np.uint16)
    path = write_ncem_emd(tmp_path / "series.emd", data, pixel_nm=0.035)
    with open_raw_stack(path) as stack:
        assert stack.format == "EMD"
        assert stack.shape == (5, 20, 24)
        assert stack.pixel_size_A == pytest.approx(0.35)
        np.testing.assert_array_equal(stack.read(1, 4), data[1:4].astype(np.float32))


def test_tiff_named_emd_and_dm4(tmp_path: Path):
    for name in ("x.emd", "x.dm4"):
        path = tmp_path / name
        tifffile.imwrite(path, np.zeros((2, 20, 20), np.uint8))
        with pytest.raises(RawFormatError, match="is it a TIFF file"):
            open_raw_stack(path)


def test_missing_file_and_unknown_extension(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="raw file .*nope.mrc does not exist"):
        open_raw_stack(tmp_path / "nope.mrc")
    path = tmp_path / "data.raw"
    path.write_bytes(b"0" * 10)
    with pytest.raises(RawFormatError, match=r"unknown raw file extension '.raw'; supported: "):
        open_raw_stack(path)


@pytest.mark.parametrize(
    ("scale", "units", "expected"),
    [
        (0.05, "nm", 0.5),
        (1.5, "Å", 1.5),
        (2e-4, "µm", 2.0),
        (0.3, "<undefined>", None),
        (0.0, "nm", None),
        (1.0, "1/nm", None),
    ],
)
def test_pixel_size_from_units(scale, units, expected):
    assert pixel_size_from_units(scale, units) == (
        None if expected is None else pytest.approx(expected)
    )
