"""Stream one raw dataset (a sample-sheet row) into ``raw.zarr``."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nanorecon import __version__

from ._atomic import atomic_output, check_output_writable
from ._readers import open_raw_stack
from ._tilts import read_tilt_angles
from ._zarr import create_stack_zarr, images_per_chunk

__all__ = ["IngestError", "ingest"]

log = logging.getLogger(__name__)

#: smallest image edge the later stages can work with [pixels]
MIN_IMAGE_SIZE = 16

UNITS = {
    "data": "as recorded (detector counts or arbitrary units)",
    "pixel_size_A": "Å",
    "voltage_kV": "kV",
    "tilt_angles_deg": "deg",
    "frame_rate_hz": "Hz",
    "dose_e_per_A2": "e/Å^2 per image",
    "defocus_A": "Å (positive = underfocus)",
    "cs_mm": "mm",
}


class IngestError(ValueError):
    """Raw data that cannot be ingested; the message names the dataset, the file and the fix."""


class _StreamingHash:
    """SHA-256 of a file, read sequentially in step with the ingest (page-cache hot)."""

    def __init__(self, path: Path, buffer_bytes: int = 8 * 2**20) -> None:
        self._fh = open(path, "rb", buffering=0)  # closed in finish() / close()
        self._size = os.fstat(self._fh.fileno()).st_size
        self._buf = bytearray(buffer_bytes)
        self._done = 0
        self._sha = hashlib.sha256()

    def advance(self, fraction: float) -> None:
        target = min(self._size, math.ceil(self._size * fraction))
        view = memoryview(self._buf)
        while self._done < target:
            got = self._fh.readinto(view[: min(len(view), target - self._done)])
            if not got:
                break
            self._sha.update(view[:got])
            self._done += got

    def finish(self) -> str:
        self.advance(1.0)
        while got := self._fh.readinto(self._buf):  # a file that grew meanwhile
            self._sha.update(memoryview(self._buf)[:got])
        self._fh.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        self._fh.close()


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _number(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    return None if _missing(value) else float(value)


def _where(row: dict[str, Any]) -> str:
    where = f"dataset {row.get('dataset')!r}"
    if not _missing(row.get("sheet_file")):
        where += f" (sample sheet {row['sheet_file']}, line {row.get('sheet_line')})"
    return where


def _check_stack(row: dict[str, Any], shape: tuple[int, int, int], path: Path, n_tilts: int | None):
    n, ny, nx = shape
    where = _where(row)
    if min(ny, nx) < MIN_IMAGE_SIZE:
        raise IngestError(
            f"{where}: images in {path} are {ny}×{nx} pixels; at least "
            f"{MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE} are needed, check the file"
        )
    if row["modality"] == "tomography":
        if n < 2:
            raise IngestError(
                f"{where}: {path} holds {n} image(s); a tilt series needs at least 2 (a 2D MRC "
                "or single-page TIFF is one image), give the whole tilt series"
            )
        if n_tilts != n:
            raise IngestError(
                f"{where}: {path} holds {n} images but tilt-angle file {row['tilt_angles']} has "
                f"{n_tilts} angles; give one angle per image, in image order"
            )
    elif n < 2:
        raise IngestError(
            f"{where}: movie {path} holds {n} frame(s); Brownian reconstruction needs a movie of "
            "at least 2 frames, give the whole movie"
        )


def _pixel_size(row: dict[str, Any], header_A: float | None, path: Path) -> float:
    sheet_A = _number(row, "pixel_size_A")
    if sheet_A is None:
        if header_A is None:
            line = row.get("sheet_line", "?")
            sheet = row.get("sheet_file") or "the sample sheet"
            raise IngestError(
                f"dataset {row.get('dataset')!r}: pixel size missing in both sheet (row {line} of "
                f"{sheet}) and file header of {path}; add pixel_size_A to the sheet"
            )
        return header_A
    if sheet_A <= 0:
        raise IngestError(f"{_where(row)}: pixel_size_A={sheet_A} must be positive")
    if header_A is not None and abs(sheet_A - header_A) > 0.01 * header_A:
        log.warning(
            "%s: sheet pixel size %.4g Å differs from the file header's %.4g Å by %.1f%%; "
            "using the sheet's",
            _where(row),
            sheet_A,
            header_A,
            100 * abs(sheet_A - header_A) / header_A,
        )
    return sheet_A


def _elements(value: Any) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(s) for s in value or []]


def ingest(
    row: dict[str, Any],
    out_path: str | Path,
    *,
    chunk_mb: float = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Stream one dataset's raw stack into a zarr v3 group, validating it on the way.

    The images are read block by block (a block is one output chunk of about ``chunk_mb``),
    checked for NaN/Inf, converted to float32 and written compressed; the source's SHA-256 is
    computed in the same pass. The store is built under a temporary name and renamed onto
    ``out_path`` only when complete, so a failure leaves no partial output and keeps an
    existing one.

    Parameters
    ----------
    row : dict
        One sample-sheet row, as from :func:`nanorecon.io.sample_row` (needs ``dataset``,
        ``modality``, ``path``; ``tilt_angles`` for tomography).
    out_path : str or Path
        The zarr group to write, conventionally ``results/{dataset}/raw.zarr``.
    chunk_mb : float, optional
        Target chunk size [MiB]; chunks hold whole images along n.
    progress : bool, optional
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        Summary: ``dataset``, ``out_path``, ``shape``, ``chunks``, ``source_format``,
        ``source_dtype``, ``pixel_size_A`` [Å], ``source_sha256``, ``source_bytes``,
        ``seconds``, ``attrs`` (the group attributes written).

    Raises
    ------
    IngestError
        For unusable data: too few images, tilt count mismatch, NaN/Inf, no pixel size, tiny
        images.
    FileNotFoundError
        If the raw or tilt-angle file does not exist.
    ValueError
        For a raw file of the wrong format or truncated, or bad tilt angles.
    OSError
        If the output folder is not writable.
    """
    t0 = time.perf_counter()
    for key in ("dataset", "modality", "path"):
        if _missing(row.get(key)):
            raise IngestError(f"{_where(row)}: the sample-sheet row has no {key!r}")
    modality = str(row["modality"]).lower()
    if modality not in ("tomography", "brownian"):
        raise IngestError(
            f"{_where(row)}: unknown modality {row['modality']!r}; use 'tomography' or 'brownian'"
        )
    row = {**row, "modality": modality}
    where = _where(row)
    out = check_output_writable(out_path)
    path = Path(row["path"])
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}: raw file {path} does not exist; fix the path column (relative paths are "
            "relative to the sample sheet's folder)"
        )
    angles = None
    if modality == "tomography":
        if _missing(row.get("tilt_angles")):
            raise IngestError(f"{where}: tomography needs a tilt_angles file in the sheet")
        try:
            angles = read_tilt_angles(row["tilt_angles"])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{where}: {err}; fix the tilt_angles column") from None
        except ValueError as err:
            raise IngestError(f"{where}: {err}") from None

    with open_raw_stack(path) as stack:
        shape = stack.shape
        n, ny, nx = shape
        _check_stack(row, shape, path, None if angles is None else len(angles))
        pixel_size_A = _pixel_size(row, stack.pixel_size_A, path)
        chunk_images = min(n, images_per_chunk(ny, nx, chunk_mb=chunk_mb))
        attrs: dict[str, Any] = {
            "dataset": str(row["dataset"]),
            "modality": modality,
            "pixel_size_A": pixel_size_A,
            "voltage_kV": _number(row, "voltage_kV"),
            "elements": _elements(row.get("elements")),
            "tilt_angles_deg": None if angles is None else [float(a) for a in angles],
            "frame_rate_hz": _number(row, "frame_rate_hz"),
            "dose_e_per_A2": _number(row, "dose_e_per_A2"),
            "defocus_A": _number(row, "defocus_A"),
            "cs_mm": _number(row, "cs_mm"),
            "source_file": str(path.resolve()),
            "source_sha256": None,
            "source_format": stack.format,
            "source_dtype": stack.dtype.name,
            "source_pixel_size_A": stack.pixel_size_A,
            "shape": [n, ny, nx],
            "units": dict(UNITS),
            "nanorecon_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if angles is None:
            del attrs["tilt_angles_deg"]
        check_finite = stack.dtype.kind in "fc"
        hasher = _StreamingHash(path)
        try:
            with (
                atomic_output(out) as tmp,
                tqdm(
                    total=n,
                    unit="img",
                    desc=f"ingest {row['dataset']}",
                    file=sys.stderr,
                    disable=not progress,
                ) as bar,
            ):
                data = create_stack_zarr(tmp, shape, chunk_images=chunk_images, attrs=attrs)
                # zarr compresses the chunks of one write in parallel: write a few at a time
                step = chunk_images * max(1, min(4, os.cpu_count() or 1))
                for start in range(0, n, step):
                    stop = min(n, start + step)
                    block = stack.read(start, stop)
                    if check_finite:
                        bad = ~np.isfinite(block).all(axis=(1, 2))
                        if bad.any():
                            index = start + int(np.argmax(bad))
                            raise IngestError(
                                f"{where}: {path} holds NaN or Inf values, first in image "
                                f"{index} (0-based); repair or drop that image before ingesting"
                            )
                    data[start:stop] = block
                    del block
                    hasher.advance(stop / n)
                    bar.update(stop - start)
                attrs["source_sha256"] = hasher.finish()
                group_attrs = _group_attrs(tmp)
                group_attrs.update({"source_sha256": attrs["source_sha256"]})
        finally:
            hasher.close()
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    log.info(
        "ingested %s: %d×%d×%d %s %s → %s in %.1f s (%.0f MB/s)",
        row["dataset"],
        n,
        ny,
        nx,
        attrs["source_dtype"],
        attrs["source_format"],
        out,
        seconds,
        size / 1e6 / max(seconds, 1e-9),
    )
    return {
        "dataset": attrs["dataset"],
        "out_path": str(out),
        "shape": (n, ny, nx),
        "chunks": (chunk_images, ny, nx),
        "source_format": attrs["source_format"],
        "source_dtype": attrs["source_dtype"],
        "pixel_size_A": pixel_size_A,
        "source_sha256": attrs["source_sha256"],
        "source_bytes": size,
        "seconds": seconds,
        "attrs": attrs,
    }


def _group_attrs(path: Path) -> Any:
    import zarr

    return zarr.open_group(store=str(path), mode="r+").attrs
