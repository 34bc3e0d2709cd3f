"""Write simulated datasets like a microscope would, plus a sample sheet and the ground truth.

Layout of ``outdir``::

    samples.tsv                      one-row sample sheet (paths relative to outdir)
    tilt_series.mrc, .rawtlt         tomography: float32 stack, nominal tilts one per line
    movie.mrc                        brownian: float32 frames, written as they are rendered
    truth/atoms.csv                  particle, x_A, y_A, z_A, element (particle frame, Å)
    truth/particles.csv              one row per particle
    truth/tilts.csv | frames.csv     per-image geometry
    truth/simulation.json            the full spec, nanorecon version, seed
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd

from nanorecon import __version__

from ._atomic import atomic_output
from ._samplesheet import SHEET_COLUMNS as INTERFACE_COLUMNS

#: the sample-sheet columns plus the simulator's ground-truth folder
SHEET_COLUMNS = [*INTERFACE_COLUMNS, "truth"]


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp)`` and move the result onto `path`; nothing partial is left on error."""
    with atomic_output(path) as tmp:
        write(tmp)


def _write_text(path: Path, text: str) -> None:
    _replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    _replace_atomically(path, lambda tmp: table.to_csv(tmp, index=False))


def _write_mrc_stack(path: Path, data: np.ndarray, pixel_size_A: float) -> None:
    def write(tmp: Path) -> None:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.asarray(data, dtype=np.float32))
            mrc.set_image_stack()
            mrc.voxel_size = pixel_size_A

    _replace_atomically(path, write)


def _elements(atoms: pd.DataFrame) -> str:
    return ",".join(sorted(pd.unique(atoms["element"])))


def _write_sheet(outdir: Path, row: dict[str, Any]) -> Path:
    sheet = pd.DataFrame([{c: row.get(c, "") for c in SHEET_COLUMNS}], columns=SHEET_COLUMNS)
    path = outdir / "samples.tsv"
    _replace_atomically(path, lambda tmp: sheet.to_csv(tmp, sep="\t", index=False, na_rep=""))
    return path


def _write_truth(outdir: Path, result: Any, modality: str, dataset: str, per_image: str, table):
    truth = outdir / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    _write_csv(truth / "atoms.csv", result.atoms)
    _write_csv(truth / "particles.csv", result.particles)
    _write_csv(truth / per_image, table)
    meta = {
        "dataset": dataset,
        "modality": modality,
        "nanorecon_version": __version__,
        "seed": int(result.spec.seed),
        "pixel_size_A": float(result.pixel_size_A),
        "spec": result.spec.to_dict(),
    }
    _write_text(truth / "simulation.json", json.dumps(meta, indent=2) + "\n")


def write_simulated_tomography(result: Any, outdir: str | os.PathLike, dataset: str) -> Path:
    """Write a :class:`~nanorecon.simulate.TiltSeriesResult` into `outdir`.

    Writes ``tilt_series.mrc`` (float32, voxel size = pixel size), ``tilt_series.rawtlt`` (nominal
    angles [deg], one per line), ``samples.tsv`` and ``truth/``. Returns the sample sheet's path.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    spec = result.spec
    _write_mrc_stack(outdir / "tilt_series.mrc", result.images, result.pixel_size_A)
    _write_text(
        outdir / "tilt_series.rawtlt",
        "".join(f"{angle:.2f}\n" for angle in np.asarray(result.tilt_angles_deg)),
    )
    _write_truth(outdir, result, "tomography", dataset, "tilts.csv", result.tilts)
    return _write_sheet(
        outdir,
        {
            "dataset": dataset,
            "modality": "tomography",
            "path": "tilt_series.mrc",
            "pixel_size_A": result.pixel_size_A,
            "voltage_kV": spec.voltage_kV,
            "elements": _elements(result.atoms),
            "tilt_angles": "tilt_series.rawtlt",
            "dose_e_per_A2": spec.dose_e_per_A2,
            "truth": "truth",
        },
    )


def write_simulated_movie(
    result: Any,
    outdir: str | os.PathLike,
    dataset: str,
    *,
    frames: Iterable[np.ndarray] | None = None,
) -> Path:
    """Write a :class:`~nanorecon.simulate.MovieResult` into `outdir`, streaming the frames.

    Frames go into ``movie.mrc`` (float32, memory-mapped, voxel size = pixel size) as they are
    rendered, so memory stays bounded by one frame. `frames` may wrap ``result.frames()`` (e.g. a
    progress bar). Returns the sample sheet's path.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    spec = result.spec
    frames = result.frames() if frames is None else frames

    def write(tmp: Path) -> None:
        with mrcfile.new_mmap(tmp, shape=result.shape, mrc_mode=2, overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = result.pixel_size_A
            n = 0
            for n, frame in enumerate(frames, start=1):
                mrc.data[n - 1] = frame
            if n != result.shape[0]:
                raise ValueError(f"got {n} frames, expected {result.shape[0]}")
            mrc.update_header_stats()

    _replace_atomically(outdir / "movie.mrc", write)
    _write_truth(outdir, result, "brownian", dataset, "frames.csv", result.trajectory)
    return _write_sheet(
        outdir,
        {
            "dataset": dataset,
            "modality": "brownian",
            "path": "movie.mrc",
            "pixel_size_A": result.pixel_size_A,
            "voltage_kV": spec.voltage_kV,
            "elements": _elements(result.atoms),
            "frame_rate_hz": spec.frame_rate_hz,
            "dose_e_per_A2": spec.dose_e_per_A2,
            "defocus_A": spec.defocus_A,
            "cs_mm": spec.cs_mm,
            "truth": "truth",
        },
    )
