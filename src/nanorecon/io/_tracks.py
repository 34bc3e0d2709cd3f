"""Particle tracks of a Brownian movie: ``tracks.parquet`` (+ ``tracks.csv``) and ``drift.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._models import write_table_csv, write_table_parquet

__all__ = ["TRACK_UNITS", "read_tracks", "write_drift", "write_tracks"]

#: units of the track table's columns (parquet metadata)
TRACK_UNITS = {
    "frame": "index",
    "track": "index",
    "x_A": "angstrom from the centre of pixel (0, 0)",
    "y_A": "angstrom from the centre of pixel (0, 0)",
    "score": "robust standard deviations",
    "drift_x_A": "angstrom",
    "drift_y_A": "angstrom",
}

_REQUIRED = ["frame", "track", "x_A", "y_A", "score", "status", "reason"]


def write_tracks(path: str | Path, tracks: pd.DataFrame, *, csv: bool = True) -> Path:
    """Write the track table as parquet (units in metadata) and, with `csv`, a ``.csv`` twin.

    Parameters
    ----------
    path : str or Path
        ``…/tracks.parquet``.
    tracks : DataFrame
        :data:`nanorecon.brownian.TRACK_COLUMNS`.
    csv : bool, optional
        Also write the same table next to it with the suffix ``.csv``.
    """
    missing = [c for c in _REQUIRED if c not in tracks.columns]
    if missing:
        raise ValueError(f"track table lacks columns {missing}")
    path = Path(path)
    write_table_parquet(path, tracks, units=TRACK_UNITS)
    if csv:
        write_table_csv(path.with_suffix(".csv"), tracks)
    return path


def read_tracks(path: str | Path) -> pd.DataFrame:
    """Read ``tracks.parquet`` or ``tracks.csv`` and check its columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track table {path} does not exist; run `nanorecon track` first")
    table = pd.read_csv(path, keep_default_na=False) if path.suffix == ".csv" else None
    if table is None:
        table = pd.read_parquet(path)
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; re-run `nanorecon track`")
    table["reason"] = table["reason"].astype(str).replace("nan", "")
    return table


def write_drift(path: str | Path, drift_A: np.ndarray, *, pixel_size_A: float) -> Path:
    """Write ``drift.csv``: ``frame, drift_x_A, drift_y_A, drift_x_px, drift_y_px``."""
    drift = np.asarray(drift_A, dtype=float)
    if drift.ndim != 2 or drift.shape[1] != 2:
        raise ValueError(f"drift_A must have shape (n, 2), not {drift.shape}")
    table = pd.DataFrame(
        {
            "frame": np.arange(len(drift)),
            "drift_x_A": drift[:, 0],
            "drift_y_A": drift[:, 1],
            "drift_x_px": drift[:, 0] / pixel_size_A,
            "drift_y_px": drift[:, 1] / pixel_size_A,
        }
    )
    return write_table_csv(path, table)
