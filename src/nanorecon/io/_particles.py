"""The common particle format: ``particles/{pid}/`` stack, orientations, maps, FSC and logs.

Layout (one folder per particle)::

    stack.zarr                 zarr v3 group, array ``data`` (n, box, box) float32, pixel_size_A
    orientations.parquet       one row per image (see ORIENTATION_COLUMNS)
    map.zarr                   arrays ``map``, ``half1``, ``half2`` (z, y, x) float32, OME-Zarr 0.5
    map.mrc                    the full map, voxel size set
    fsc.csv, reconstruction_log.csv, alignment_validation.csv   tables
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd
import zarr
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from nanorecon import __version__
from nanorecon.geometry import (
    euler_from_rotations,
    quaternions_from_rotations,
    rotations_from_quaternions,
)

from ._atomic import atomic_output
from ._zarr import open_raw_zarr, write_array_zarr

__all__ = [
    "MAP_ARRAYS",
    "ORIENTATION_COLUMNS",
    "orientations_table",
    "read_map_zarr",
    "read_orientations",
    "read_particle_stack",
    "write_map_mrc",
    "write_map_zarr",
    "write_orientations",
    "write_particle_stack",
]

#: columns of orientations.parquet, in order (angles [deg], shifts [Å])
ORIENTATION_COLUMNS = [
    "image",
    "qx",
    "qy",
    "qz",
    "qw",
    "rot_deg",
    "tilt_deg",
    "psi_deg",
    "shift_x_A",
    "shift_y_A",
    "half_set",
    "score",
    "weight",
    "used",
]

#: arrays of map.zarr
MAP_ARRAYS = ("map", "half1", "half2")


def write_particle_stack(
    path: str | Path,
    images: np.ndarray,
    *,
    pixel_size_A: float,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a particle stack ``stack.zarr`` (n, box, box) float32 atomically.

    Parameters
    ----------
    path : str or Path
        Group folder, e.g. ``particles/p000/stack.zarr``.
    images : ndarray of shape (n, box, box)
        Particle images (host memory).
    pixel_size_A : float
        [Å], stored as the ``pixel_size_A`` attribute.
    attrs : dict, optional
        Further JSON-serialisable attributes (e.g. the tilt axis, the crop offset).

    Returns
    -------
    Path
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"a particle stack must have shape (n, box, box), not {images.shape}")
    if pixel_size_A <= 0:
        raise ValueError(f"pixel_size_A must be positive, not {pixel_size_A}")
    meta = {
        **(attrs or {}),
        "pixel_size_A": float(pixel_size_A),
        "units": {"pixel_size_A": "angstrom"},
        "nanorecon_version": __version__,
    }
    return write_array_zarr(path, images, attrs=meta)


def read_particle_stack(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read ``stack.zarr``: the (n, box, box) float32 images and the group attributes."""
    data, attrs = open_raw_zarr(path)
    if "pixel_size_A" not in attrs:
        raise ValueError(f"{path} has no pixel_size_A attribute; re-run `nanorecon reconstruct`")
    return np.asarray(data[...]), attrs


def orientations_table(
    rotations: Rotation,
    shifts_A: ArrayLike,
    *,
    half_sets: ArrayLike,
    scores: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    used: ArrayLike | None = None,
) -> pd.DataFrame:
    """One row per image in the columns of :data:`ORIENTATION_COLUMNS`.

    Parameters
    ----------
    rotations : Rotation
        Map frame → microscope frame, one per image (:mod:`nanorecon.geometry`).
    shifts_A : array_like of shape (n, 2)
        ``(shift_x_A, shift_y_A)`` [Å].
    half_sets : array_like of shape (n,)
        1 or 2.
    scores, weights : array_like of shape (n,), optional
        Match score (NaN when None) and weight (1 when None).
    used : array_like of bool, optional
        Whether the image entered the map (all True when None).
    """
    n = len(rotations)
    shifts = np.asarray(shifts_A, dtype=float)
    halves = np.asarray(half_sets, dtype=np.int8)
    if shifts.shape != (n, 2) or halves.shape != (n,):
        raise ValueError(f"need ({n}, 2) shifts and {n} half sets for {n} rotations")
    if not np.all((halves == 1) | (halves == 2)):
        raise ValueError("half_set must be 1 or 2")
    quats = quaternions_from_rotations(rotations)
    euler = euler_from_rotations(rotations)

    def column(values: ArrayLike | None, fill: Any, dtype: Any) -> np.ndarray:
        out = np.full(n, fill, dtype=dtype) if values is None else np.asarray(values, dtype)
        if out.shape != (n,):
            raise ValueError(f"expected {n} values per column, got shape {out.shape}")
        return out

    return pd.DataFrame(
        {
            "image": np.arange(n, dtype=np.int64),
            "qx": quats[:, 0],
            "qy": quats[:, 1],
            "qz": quats[:, 2],
            "qw": quats[:, 3],
            "rot_deg": euler[:, 0],
            "tilt_deg": euler[:, 1],
            "psi_deg": euler[:, 2],
            "shift_x_A": shifts[:, 0],
            "shift_y_A": shifts[:, 1],
            "half_set": halves,
            "score": column(scores, np.nan, np.float64),
            "weight": column(weights, 1.0, np.float64),
            "used": column(used, True, bool),
        }
    )


def write_orientations(path: str | Path, table: pd.DataFrame) -> Path:
    """Write ``orientations.parquet`` atomically; `table` must hold :data:`ORIENTATION_COLUMNS`."""
    missing = [c for c in ORIENTATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"orientations table lacks columns {missing}")
    with atomic_output(path) as tmp:
        table.to_parquet(tmp, index=False)
    return Path(path)


def read_orientations(path: str | Path) -> tuple[pd.DataFrame, Rotation]:
    """Read ``orientations.parquet``: the table and its rotations (from the quaternions)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"orientations file {path} does not exist")
    table = pd.read_parquet(path)
    missing = [c for c in ORIENTATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; re-run `nanorecon reconstruct`")
    return table, rotations_from_quaternions(table[["qx", "qy", "qz", "qw"]].to_numpy())


def _ome_attrs(name: str, shape: tuple[int, ...], voxel_size_A: float) -> dict[str, Any]:
    """OME-Zarr 0.5 multiscales metadata of one single-scale (z, y, x) image in Å."""
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in ("z", "y", "x")]
    # The map's origin (0 Å) is on voxel N // 2: translate so that physical coordinates match.
    translation = [-(n // 2) * float(voxel_size_A) for n in shape]
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    "axes": axes,
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [float(voxel_size_A)] * 3},
                                {"type": "translation", "translation": translation},
                            ],
                        }
                    ],
                }
            ],
        }
    }


def write_map_zarr(
    path: str | Path,
    maps: dict[str, np.ndarray],
    *,
    voxel_size_A: float,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write ``map.zarr``: one OME-Zarr 0.5 image group per map, atomically.

    Each of `maps` (e.g. ``map``, ``half1``, ``half2``) becomes a sub-group ``{name}/`` holding
    the float32 (z, y, x) array ``0`` and OME ``multiscales`` metadata (axes z, y, x in
    ``angstrom``, scale = voxel size), which napari (napari-ome-zarr) and ChimeraX open; the root
    group lists them and holds `voxel_size_A`.

    Parameters
    ----------
    path : str or Path
        Group folder, e.g. ``particles/p000/map.zarr``.
    maps : dict of str to ndarray of shape (N, N, N)
        Maps on one grid (host memory).
    voxel_size_A : float
        [Å].
    attrs : dict, optional
        Further JSON-serialisable root attributes.

    Returns
    -------
    Path
    """
    if voxel_size_A <= 0:
        raise ValueError(f"voxel_size_A must be positive, not {voxel_size_A}")
    shapes = {np.shape(m) for m in maps.values()}
    if not maps or len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError("maps must be one or more 3D arrays of one shape")
    with atomic_output(path) as tmp:
        root = zarr.open_group(
            store=str(tmp),
            mode="w",
            zarr_format=3,
            attributes={
                **(attrs or {}),
                "voxel_size_A": float(voxel_size_A),
                "maps": list(maps),
                "nanorecon_version": __version__,
            },
        )
        for name, volume in maps.items():
            volume = np.asarray(volume, dtype=np.float32)
            group = root.create_group(
                name,
                attributes={
                    **_ome_attrs(name, volume.shape, voxel_size_A),
                    "voxel_size_A": float(voxel_size_A),
                },
            )
            array = group.create_array(
                "0", shape=volume.shape, dtype="float32", dimension_names=("z", "y", "x")
            )
            array[...] = volume
    return Path(path)


def read_map_zarr(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``map.zarr``: ``{name: (z, y, x) float32}`` and the root attributes."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"map store {path} does not exist")
    root = zarr.open_group(store=str(path), mode="r")
    attrs = dict(root.attrs)
    if "maps" not in attrs or "voxel_size_A" not in attrs:
        raise ValueError(f"{path} is not a nanorecon map store (no maps / voxel_size_A)")
    return {name: np.asarray(root[name]["0"][...]) for name in attrs["maps"]}, attrs


def write_map_mrc(path: str | Path, volume: np.ndarray, *, voxel_size_A: float) -> Path:
    """Write a (z, y, x) map as MRC (float32, voxel size in Å), atomically."""
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"a map must be 3D, not {volume.shape}")
    with atomic_output(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(volume)
            mrc.voxel_size = float(voxel_size_A)
    return Path(path)
