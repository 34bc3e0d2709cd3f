"""Read 3D density maps (MRC files and ``map.zarr`` groups) with their voxel size."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAP_ARRAYS", "MapFormatError", "read_map"]

log = logging.getLogger(__name__)

#: names of the full map inside a map.zarr group, in order of preference
MAP_ARRAYS = ("map", "data")
#: names of the two half maps inside a map.zarr group
HALF_MAP_ARRAYS = ("half1", "half2")
_MRC_SUFFIXES = (".mrc", ".map", ".rec", ".mrcs")


class MapFormatError(ValueError):
    """A map file that cannot be used: wrong layout, non-finite values, no voxel size."""


def _check_volume(volume: np.ndarray, path: Path, what: str) -> np.ndarray:
    if volume.ndim != 3:
        raise MapFormatError(
            f"{path}: {what} must be a 3D volume (z, y, x), but has shape {volume.shape}"
        )
    if min(volume.shape) < 2:
        raise MapFormatError(f"{path}: {what} has shape {volume.shape}; it holds no volume")
    if volume.dtype.kind not in "iuf":
        raise MapFormatError(f"{path}: {what} holds {volume.dtype} values, not real numbers")
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    bad = ~np.isfinite(volume)
    if bad.any():
        raise MapFormatError(
            f"{path}: {what} holds {int(bad.sum())} NaN or infinite values; fix the "
            "reconstruction that wrote it"
        )
    return volume


def _voxel_size(found: float | None, given: float | None, path: Path) -> float:
    if given is not None:
        if not np.isfinite(given) or given <= 0:
            raise MapFormatError(f"voxel size must be positive, not {given}")
        if found is not None and not np.isclose(found, given, rtol=1e-3):
            log.warning("%s: the given voxel size %.4g Å overrides %.4g Å", path, given, found)
        return float(given)
    if found is None:
        raise MapFormatError(
            f"{path} states no voxel size; give it (e.g. --voxel-size-A 0.35) or write it into "
            "the file"
        )
    return float(found)


def _read_mrc(path: Path) -> tuple[np.ndarray, float | None, dict[str, Any]]:
    import mrcfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, mode="r", permissive=False) as mrc:
                data = np.array(mrc.data)
                size = mrc.voxel_size
                sizes = np.array([float(size.x), float(size.y), float(size.z)])
                origin = mrc.header.origin
                origin_A = [float(origin.x), float(origin.y), float(origin.z)]
        except ValueError as err:
            raise MapFormatError(f"{path} is not a readable MRC file ({err})") from None
    for warning in caught:
        log.warning("%s: %s", path, warning.message)
    if np.all(sizes > 0):
        if not np.allclose(sizes, sizes[0], rtol=1e-3):
            raise MapFormatError(
                f"{path}: voxels are not cubic ({sizes[0]:.4g} × {sizes[1]:.4g} × "
                f"{sizes[2]:.4g} Å); resample the map to cubic voxels"
            )
        # the header holds float32: keep its shortest decimal form (0.35, not 0.3499999940)
        found = float(str(np.float32(sizes[0])))
    else:
        found = None
    return data, found, {"format": "mrc", "origin_A": origin_A}


def _read_zarr(path: Path) -> tuple[np.ndarray, float | None, dict[str, Any]]:
    import zarr

    try:
        group = zarr.open_group(store=str(path), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError) as err:
        raise MapFormatError(f"{path} is not a zarr group ({err})") from None
    name = next((n for n in MAP_ARRAYS if n in group), None)
    if name is None:
        raise MapFormatError(
            f"zarr group {path} has no array named {' or '.join(map(repr, MAP_ARRAYS))}"
        )

    def volume(entry: str) -> np.ndarray:
        # an array, or an OME-Zarr image group holding its full-resolution array at "0"
        node = group[entry]
        return node["0"][...] if isinstance(node, zarr.Group) else node[...]

    attrs = dict(group.attrs)
    extras: dict[str, Any] = {"format": "zarr", "attrs": attrs, "array": name}
    present = [n for n in HALF_MAP_ARRAYS if n in group]
    if len(present) == 2:
        extras["half_maps"] = tuple(volume(n) for n in HALF_MAP_ARRAYS)
    elif present:
        raise MapFormatError(f"zarr group {path} holds {present[0]!r} but not its other half map")
    found = attrs.get("voxel_size_A")
    if found is not None:
        try:
            found = float(found)
        except (TypeError, ValueError):
            raise MapFormatError(f"{path}: attribute voxel_size_A={found!r} is no number") from None
        if not np.isfinite(found) or found <= 0:
            raise MapFormatError(f"{path}: attribute voxel_size_A={found} is not positive")
    return volume(name), found, extras


def read_map(
    path: str | Path, *, voxel_size_A: float | None = None
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Read a 3D density map and its voxel size.

    MRC files (``.mrc``, ``.map``, ``.rec``, ``.mrcs``) are read with mrcfile, the voxel size from
    the header (cubic voxels required; a zero cell means none is stated). A zarr group (a folder,
    e.g. ``map.zarr``) holds the map as ``map`` (or ``data``), the voxel size as attribute
    ``voxel_size_A`` and, optionally, the two half maps as ``half1`` and ``half2``; each is an
    array or an OME-Zarr image group with its array at ``0`` (as :func:`write_map_zarr` writes).

    Parameters
    ----------
    path : str or Path
        The MRC file or zarr group.
    voxel_size_A : float, optional
        Voxel edge length [Å]; overrides the file's value and is required when the file has none.

    Returns
    -------
    volume : ndarray of shape (Z, Y, X), float32
        The map, index N//2 of each axis at 0 Å (see :mod:`nanorecon.geometry`).
    voxel_size_A : float
        Voxel edge length [Å].
    extras : dict
        ``format`` (``"mrc"`` or ``"zarr"``), ``source`` (the path); ``half_maps`` (a tuple of two
        float32 volumes, zarr only, when present); ``attrs`` (zarr group attributes);
        ``origin_A`` (MRC header origin, x, y, z [Å]).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    MapFormatError
        If the file is unreadable, not 3D, holds NaN or infinite values, has half maps of another
        shape, or states no voxel size and none is given. Every message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"map {path} does not exist")
    if path.is_dir() or path.suffix.lower() == ".zarr":
        data, found, extras = _read_zarr(path)
    elif path.suffix.lower() in _MRC_SUFFIXES:
        data, found, extras = _read_mrc(path)
    else:
        raise MapFormatError(
            f"{path}: unknown map format {path.suffix!r}; give an MRC file "
            f"({', '.join(_MRC_SUFFIXES)}) or a zarr group"
        )
    volume = _check_volume(np.asarray(data), path, "the map")
    size = _voxel_size(found, voxel_size_A, path)
    if "half_maps" in extras:
        halves = tuple(
            _check_volume(np.asarray(h), path, f"half map {name}")
            for h, name in zip(extras["half_maps"], HALF_MAP_ARRAYS, strict=True)
        )
        for half, name in zip(halves, HALF_MAP_ARRAYS, strict=True):
            if half.shape != volume.shape:
                raise MapFormatError(
                    f"{path}: half map {name} has shape {half.shape}, the map {volume.shape}"
                )
        extras["half_maps"] = halves
    extras["source"] = str(path)
    return volume, size, extras
