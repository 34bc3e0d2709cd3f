"""Small raw files and sample sheets for the io tests (imported by the test modules)."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from nanorecon.io._samplesheet import SHEET_COLUMNS

HEADER = SHEET_COLUMNS

IMOD_STAMP = 1146047817


def write_mrc(path: Path, data: np.ndarray, *, voxel_size_A: float | None = 0.5) -> Path:
    """Write ``data`` as MRC; ``voxel_size_A=None`` leaves the header's pixel size at 0."""
    with mrcfile.new(path, overwrite=True) as mrc, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # header statistics of NaN/Inf test data
        mrc.set_data(data.view(np.int8) if data.dtype == np.uint8 else data)
        if voxel_size_A is not None:
            mrc.voxel_size = voxel_size_A
    if data.dtype == np.uint8:  # MRC mode 0, unsigned by the IMOD convention (stamp, flags 0)
        with open(path, "r+b") as fh:
            fh.seek(152)
            fh.write(struct.pack("<ii", IMOD_STAMP, 0))
    return path


def write_tilts(path: Path, angles) -> Path:
    path.write_text("".join(f"{a:.2f}\n" for a in angles))
    return path


def write_sheet(path: Path, rows: list[dict], extra_columns: tuple[str, ...] = ()) -> Path:
    columns = HEADER + extra_columns
    lines = ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join(str(row.get(c, "")) for c in columns))
    path.write_text("\n".join(lines) + "\n")
    return path


def tomo_row(**kw) -> dict:
    row = {
        "dataset": "tomo1",
        "modality": "tomography",
        "path": "tomo.mrc",
        "pixel_size_A": "",
        "voltage_kV": 300,
        "elements": "Pt",
        "tilt_angles": "tomo.tlt",
        "dose_e_per_A2": 50,
    }
    row.update(kw)
    return row


def movie_row(**kw) -> dict:
    row = {
        "dataset": "movie1",
        "modality": "brownian",
        "path": "movie.mrc",
        "pixel_size_A": 0.36,
        "voltage_kV": 300,
        "elements": "Fe,Pt",
        "frame_rate_hz": 400,
        "dose_e_per_A2": 20,
        "defocus_A": 150,
        "cs_mm": 0.001,
    }
    row.update(kw)
    return row


def leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` (temporary outputs start with '.')."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
