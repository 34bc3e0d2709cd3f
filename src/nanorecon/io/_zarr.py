"""Zarr v3 stores of image stacks: layout, compression and reading back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ._atomic import atomic_output

__all__ = [
    "STACK_ARRAY",
    "create_stack_zarr",
    "images_per_chunk",
    "open_raw_zarr",
    "write_array_zarr",
]

#: name of the image array inside a stack group
STACK_ARRAY = "data"


def _compressors() -> tuple[BloscCodec]:
    # bitshuffle + zstd level 1 compresses detector counts in float32 about as well as level 3-5
    # (5.3× vs 5.4× on low-dose frames) at 1.5-2.5× the speed
    return (BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", typesize=4),)


def images_per_chunk(ny: int, nx: int, *, chunk_mb: float, itemsize: int = 4) -> int:
    """Number of whole images of ``ny × nx`` that fit in about ``chunk_mb`` MiB (at least 1).

    Examples
    --------
    >>> images_per_chunk(1024, 1024, chunk_mb=32)
    8
    """
    if chunk_mb <= 0:
        raise ValueError(f"chunk_mb must be positive, not {chunk_mb}")
    return max(1, int(chunk_mb * 2**20 // (ny * nx * itemsize)))


def create_stack_zarr(
    path: str | Path,
    shape: tuple[int, int, int],
    *,
    chunk_images: int,
    attrs: dict[str, Any],
    name: str = STACK_ARRAY,
) -> zarr.Array:
    """Create a zarr v3 group at ``path`` holding an empty float32 (n, y, x) array.

    Parameters
    ----------
    path : str or Path
        Group folder to create (overwritten if present).
    shape : tuple of int
        (n, y, x).
    chunk_images : int
        Whole images per chunk along n.
    attrs : dict
        JSON-serialisable group attributes.
    name : str, optional
        Array name inside the group.

    Returns
    -------
    zarr.Array
        The array, Blosc-zstd + bitshuffle compressed, chunks ``(chunk_images, y, x)``.
    """
    n, ny, nx = shape
    group = zarr.open_group(store=str(path), mode="w", zarr_format=3, attributes=attrs)
    return group.create_array(
        name,
        shape=(n, ny, nx),
        dtype="float32",
        chunks=(max(1, min(int(chunk_images), n)), ny, nx),
        compressors=_compressors(),
        fill_value=0.0,
        dimension_names=("n", "y", "x"),
    )


def write_array_zarr(
    path: str | Path,
    array: np.ndarray,
    *,
    attrs: dict[str, Any],
    chunk_mb: float = 32,
    name: str = STACK_ARRAY,
) -> Path:
    """Write an in-memory (n, y, x) stack atomically as a zarr v3 group.

    Parameters
    ----------
    path : str or Path
        Group folder; replaced only once the new one is complete.
    array : ndarray of shape (n, y, x)
        Images, stored as float32.
    attrs : dict
        JSON-serialisable group attributes.
    chunk_mb : float, optional
        Target chunk size [MiB] (whole images per chunk).
    name : str, optional
        Array name inside the group.

    Returns
    -------
    Path
        The written group.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"array must have shape (n, y, x), not {array.shape}")
    n, ny, nx = array.shape
    with atomic_output(path) as tmp:
        out = create_stack_zarr(
            tmp,
            (n, ny, nx),
            chunk_images=images_per_chunk(ny, nx, chunk_mb=chunk_mb),
            attrs=attrs,
            name=name,
        )
        out[...] = array.astype(np.float32, copy=False)
    return Path(path)


def open_raw_zarr(path: str | Path, *, name: str = STACK_ARRAY) -> tuple[zarr.Array, dict]:
    """Open an ingested stack (``raw.zarr``) read-only.

    Parameters
    ----------
    path : str or Path
        The zarr group written by :func:`nanorecon.io.ingest`.
    name : str, optional
        Array name inside the group.

    Returns
    -------
    data : zarr.Array
        The (n, y, x) float32 images (read lazily, slice to load).
    attrs : dict
        The group attributes (``pixel_size_A`` [Å], ``modality``, ``tilt_angles_deg`` ...).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a zarr group holding the array.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"zarr store {path} does not exist; run `nanorecon ingest` first")
    try:
        group = zarr.open_group(store=str(path), mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError) as err:
        raise ValueError(
            f"{path} is not a zarr group ({err}); re-run the step that writes it"
        ) from None
    if name not in group:
        raise ValueError(f"zarr group {path} has no array {name!r}; re-run the step that writes it")
    return group[name], dict(group.attrs)
