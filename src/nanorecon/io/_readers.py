"""Block-wise readers for raw image stacks: MRC, TIFF, DM3/DM4 and EMD.

Every reader exposes the same small interface (:class:`RawStack`) and reads a block of whole images
at a time, so a stack larger than memory streams through in bounded memory. MRC files and
contiguous TIFF data are read with positioned reads at the data offset instead of through a memory
map: mapped pages that were touched stay in the process's resident set, read() copies do not.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

__all__ = [
    "FORMATS",
    "RawFormatError",
    "RawStack",
    "open_raw_stack",
    "pixel_size_from_units",
]

log = logging.getLogger(__name__)

#: file-name extension → format name
FORMATS = {
    ".mrc": "MRC",
    ".mrcs": "MRC",
    ".st": "MRC",
    ".ali": "MRC",
    ".map": "MRC",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".dm3": "DM3",
    ".dm4": "DM4",
    ".emd": "EMD",
}

#: length unit → Å
_UNIT_TO_A = {
    "a": 1.0,
    "å": 1.0,
    "Å": 1.0,
    "ang": 1.0,
    "angstrom": 1.0,
    "pm": 1e-2,
    "nm": 10.0,
    "n_m": 10.0,
    "um": 1e4,
    "µm": 1e4,
    "μm": 1e4,
    "\\u00b5m": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "u_m": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
}

# A print resolution (72 dpi etc.) read as a pixel size gives ~0.1 mm; no atomic-resolution
# image has pixels of 1 µm or more, so such values are treated as "no pixel size".
_MAX_PLAUSIBLE_PIXEL_A = 1e4


#: IMOD's header stamp (bytes 152-155); imodFlags follow at 156-159
_IMOD_STAMP = 1146047817


class RawFormatError(ValueError):
    """A raw file that is not what its extension says, is truncated, or has an unusable layout."""


def pixel_size_from_units(scale: Any, units: Any) -> float | None:
    """Convert a length ``scale`` in ``units`` to Å; None when unknown, zero or not a length.

    Parameters
    ----------
    scale : float
        Pixel spacing in ``units``.
    units : str
        Length unit, e.g. ``"nm"``, ``"µm"``, ``"Å"``.

    Returns
    -------
    float or None
        Pixel size [Å].

    Examples
    --------
    >>> pixel_size_from_units(0.05, "nm")
    0.5
    """
    if scale is None or units is None:
        return None
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        return None
    factor = _UNIT_TO_A.get(str(units).strip().lower()) or _UNIT_TO_A.get(str(units).strip())
    if factor is None or not math.isfinite(scale) or scale <= 0:
        return None
    return scale * factor


def _sniff(head: bytes) -> str | None:
    """Guess a format from the first bytes of a file."""
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "HDF5/EMD"
    if len(head) >= 212 and head[208:212] == b"MAP ":
        return "MRC"
    if head[:4] in (b"\x00\x00\x00\x03", b"\x00\x00\x00\x04"):
        return "DM"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"PK\x03\x04":
        return "ZIP"
    return None


def _not_format(path: Path, expected: str, head: bytes, detail: str = "") -> RawFormatError:
    guess = _sniff(head)
    hint = f"is it a {guess} file? " if guess and guess != expected else ""
    reason = f" ({detail})" if detail else ""
    return RawFormatError(
        f"{path} is not a valid {expected} file (starts with bytes {head[:8]!r}){reason}; "
        f"{hint}rename it to the right extension or convert it"
    )


def _read_exact(fd: int, out: np.ndarray, offset: int, path: Path) -> None:
    """Fill ``out`` with bytes from ``fd`` at ``offset``; error if the file ends early."""
    view = memoryview(out).cast("B")
    done = 0
    while done < view.nbytes:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise RawFormatError(
                f"{path} is truncated: expected {offset + view.nbytes} bytes, found "
                f"{offset + done}; re-copy or re-export the file"
            )
        done += got


class RawStack(abc.ABC):
    """A stack of 2D images in a raw file, read block by block.

    Attributes
    ----------
    path : Path
        The file.
    format : str
        ``"MRC"``, ``"TIFF"``, ``"DM3"``, ``"DM4"`` or ``"EMD"``.
    shape : tuple of int
        (n, y, x): number of images and image size [pixels].
    dtype : numpy.dtype
        Data type stored in the file.
    pixel_size_A : float or None
        Pixel size from the file header [Å], None where absent or zero.
    """

    format = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shape: tuple[int, int, int] = (0, 0, 0)
        self.dtype = np.dtype(np.float32)
        self.pixel_size_A: float | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __enter__(self) -> RawStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, shape={self.shape}, dtype={self.dtype}, "
            f"pixel_size_A={self.pixel_size_A})"
        )

    def read(self, start: int, stop: int) -> np.ndarray:
        """Read images ``start`` to ``stop - 1``.

        Parameters
        ----------
        start, stop : int
            Image range, ``0 <= start < stop <= n``.

        Returns
        -------
        ndarray of shape (stop - start, y, x)
            float32 values, a fresh array owning its memory.
        """
        n = self.shape[0]
        if not 0 <= start < stop <= n:
            raise IndexError(f"image range [{start}, {stop}) outside a stack of {n} images")
        block = self._read(start, stop)
        return np.ascontiguousarray(block, dtype=np.float32)

    @abc.abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as stored (each format's reader)."""

    def close(self) -> None:  # noqa: B027 - readers holding no open file need nothing
        """Release the file."""


class _OffsetStack(RawStack):
    """Images stored contiguously at a byte offset: read with pread, no memory map."""

    def __init__(self, path: Path, *, offset: int, dtype: np.dtype, shape: tuple[int, int, int]):
        super().__init__(path)
        self.shape = shape
        self.dtype = dtype
        self._offset = offset
        self._fd: int | None = os.open(path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):  # blocks are read in order: let the kernel read ahead
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        _, ny, nx = self.shape
        out = np.empty((stop - start, ny, nx), dtype=self.dtype)
        _read_exact(self._fd, out, self._offset + start * ny * nx * self.dtype.itemsize, self.path)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _MrcStack(_OffsetStack):
    format = "MRC"


def _open_mrc(path: Path) -> RawStack:
    import mrcfile
    import mrcfile.utils

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    guess = _sniff(head)
    if guess not in (None, "MRC"):
        raise _not_format(path, "MRC", head)
    if len(head) < 1024:
        raise RawFormatError(
            f"{path} is truncated: an MRC header alone is 1024 bytes, the file has {size}; "
            "re-copy or re-export it"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
                header = mrc.header.copy()
                voxel_size = mrc.voxel_size.copy()
        except ValueError as err:
            raise _not_format(path, "MRC", head, str(err).rstrip(".")) from None
    for warning in caught:
        log.warning("%s: %s", path, warning.message)
    try:
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except ValueError as err:
        raise RawFormatError(f"{path}: unsupported MRC data mode ({err}); convert it") from None
    int32 = np.dtype("i4").newbyteorder(header.mode.dtype.byteorder)
    stamp, flags = np.frombuffer(head[152:160], dtype=int32)
    if int(header.mode) == 0 and stamp == _IMOD_STAMP and not flags & 1:
        # IMOD writes 8-bit data unsigned unless bit 0 of imodFlags says signed
        dtype = np.dtype(np.uint8)
    if dtype.kind == "c":
        raise RawFormatError(
            f"{path}: MRC mode {int(header.mode)} holds complex values, not images; "
            "convert it to real-valued images"
        )
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if min(nx, ny) <= 0 or nz < 0:  # nz == 0 is an empty stack, reported by the caller
        raise RawFormatError(
            f"{path}: MRC header gives a size of {nx}×{ny}×{nz}; the header is corrupt"
        )
    offset = 1024 + int(header.nsymbt)
    expected = offset + nx * ny * nz * dtype.itemsize
    if size < expected:
        raise RawFormatError(
            f"{path} is truncated: its header promises {nz} images of {ny}×{nx} {dtype.name} "
            f"({expected} bytes with header) but the file has {size} bytes; re-copy or "
            "re-export it"
        )
    if size > expected:
        log.warning("%s has %d bytes after the data; ignored", path, size - expected)
    stack = _MrcStack(path, offset=offset, dtype=dtype, shape=(nz, ny, nx))
    px, py = float(voxel_size.x), float(voxel_size.y)
    if math.isfinite(px) and px > 0:
        if abs(py - px) > 0.01 * px:
            log.warning("%s: non-square pixels %.4g × %.4g Å; using x", path, px, py)
        stack.pixel_size_A = float(f"{px:.7g}")  # the header stores float32
    return stack


class _TiffStack(RawStack):
    format = "TIFF"

    def __init__(self, path: Path, tif: Any, n: int, dtype: np.dtype, ny: int, nx: int):
        super().__init__(path)
        self._tif = tif
        self.shape = (n, ny, nx)
        self.dtype = dtype

    def _read(self, start: int, stop: int) -> np.ndarray:
        data = self._tif.asarray(key=range(start, stop), series=0, maxworkers=1)
        return np.asarray(data).reshape(stop - start, *self.shape[1:])

    def close(self) -> None:
        self._tif.close()


class _ContiguousTiffStack(_OffsetStack):
    format = "TIFF"


def _tiff_pixel_size(tif: Any) -> float | None:
    page = tif.pages[0]
    if tif.is_fei and tif.fei_metadata:
        scan = tif.fei_metadata.get("Scan") or tif.fei_metadata.get("EScan") or {}
        value = pixel_size_from_units(scan.get("PixelWidth"), "m")
        if value is not None:
            return value
    tags = page.tags
    if "XResolution" not in tags:
        return None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None
    per_unit = 1.0 / (num / den)  # pixel spacing in the resolution unit
    ij = tif.imagej_metadata or {}
    if ij.get("unit"):
        value = pixel_size_from_units(per_unit, ij["unit"])
    else:
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        value = {2: per_unit * 2.54e8, 3: per_unit * 1e8}.get(unit)
    if value is None or value >= _MAX_PLAUSIBLE_PIXEL_A:
        return None
    return value


def _open_tiff(path: Path) -> RawStack:
    import tifffile

    with open(path, "rb") as fh:
        head = fh.read(1024)
    if _sniff(head) != "TIFF":
        raise _not_format(path, "TIFF", head)
    size = path.stat().st_size
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as err:
        raise RawFormatError(
            f"{path} is not a readable TIFF file ({err}); it may be truncated, re-copy it"
        ) from None
    try:
        series = tif.series[0]
        shape, axes = tuple(int(s) for s in series.shape), series.axes
        if "S" in axes or len(shape) < 2:
            raise RawFormatError(
                f"{path}: TIFF holds {axes} data of shape {shape} (colour or 1D); "
                "save the stack as greyscale images"
            )
        ny, nx = shape[-2:]
        n = int(np.prod(shape[:-2], dtype=np.int64))
        dtype = np.dtype(series.dtype)
        if dtype.kind == "c":
            raise RawFormatError(f"{path}: TIFF holds complex values, not images")
        pixel_size_A = _tiff_pixel_size(tif)
        offset = series.dataoffset
        if offset is not None:
            expected = offset + n * ny * nx * dtype.itemsize
            if size < expected:
                raise RawFormatError(
                    f"{path} is truncated: its tags promise {n} images of {ny}×{nx} {dtype.name} "
                    f"ending at byte {expected} but the file has {size} bytes; re-copy it"
                )
            stack: RawStack = _ContiguousTiffStack(
                path,
                offset=offset,
                dtype=dtype.newbyteorder(tif.byteorder),
                shape=(n, ny, nx),
            )
            tif.close()
        else:
            for page in series.pages:
                ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)]
                if ends and max(ends) > size:
                    raise RawFormatError(
                        f"{path} is truncated: page data end at byte {max(ends)} but the file "
                        f"has {size} bytes; re-copy it"
                    )
            stack = _TiffStack(path, tif, n, dtype, ny, nx)
    except BaseException:
        tif.close()
        raise
    stack.pixel_size_A = pixel_size_A
    return stack


class _RsciioStack(RawStack):
    def __init__(self, path: Path, fmt: str, data: Any, pixel_size_A: float | None):
        super().__init__(path)
        self.format = fmt
        ny, nx = (int(s) for s in data.shape[-2:])
        n = int(np.prod(data.shape[:-2], dtype=np.int64))
        self._data = data.reshape((n, ny, nx)) if data.ndim != 3 else data
        self.shape = (n, ny, nx)
        self.dtype = np.dtype(data.dtype)
        self.pixel_size_A = pixel_size_A

    def _read(self, start: int, stop: int) -> np.ndarray:
        # the synchronous scheduler keeps a single copy of the block in flight
        return np.asarray(self._data[start:stop].compute(scheduler="synchronous"))

    def close(self) -> None:
        self._data = None


def _open_rsciio(path: Path, fmt: str) -> RawStack:
    with open(path, "rb") as fh:
        head = fh.read(1024)
    expected_magic = "HDF5/EMD" if fmt == "EMD" else "DM"
    if _sniff(head) != expected_magic:
        raise _not_format(path, fmt, head)
    if fmt == "EMD":
        from rsciio.emd import file_reader
    else:
        from rsciio.digitalmicrograph import file_reader
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            signals = file_reader(str(path), lazy=True)
        except Exception as err:  # rsciio raises many types for broken files
            raise RawFormatError(
                f"{path} could not be read as {fmt} ({type(err).__name__}: {err}); it may be "
                "truncated or of another format, re-copy or re-export it"
            ) from None
    for warning in caught:
        log.debug("%s: %s", path, warning.message)
    images = [s for s in signals if getattr(s.get("data"), "ndim", 0) >= 2]
    if not images:
        raise RawFormatError(f"{path} holds no image data (found {len(signals)} signals)")
    if len(images) > 1:
        log.warning("%s holds %d signals; using the first image signal", path, len(images))
    signal = images[0]
    data = signal["data"]
    if np.dtype(data.dtype).kind in "cV":
        raise RawFormatError(f"{path}: {fmt} data of type {data.dtype} are not greyscale images")
    axes = sorted(signal.get("axes", []), key=lambda a: a.get("index_in_array", 0))
    pixel_size_A = None
    if len(axes) >= 2:
        x_axis = axes[-1]
        pixel_size_A = pixel_size_from_units(x_axis.get("scale"), x_axis.get("units"))
    return _RsciioStack(path, fmt, data, pixel_size_A)


def open_raw_stack(path: str | Path) -> RawStack:
    """Open a raw image stack for block-wise reading.

    The format follows the extension (``.mrc .mrcs .st .ali .map .tif .tiff .dm3 .dm4 .emd``) and
    is checked against the file's content.

    Parameters
    ----------
    path : str or Path
        The raw file.

    Returns
    -------
    RawStack
        With ``shape`` (n, y, x), ``dtype``, ``pixel_size_A`` (header value [Å] or None),
        ``read(start, stop)`` and ``close()``; use it as a context manager.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    RawFormatError
        For an unknown extension, content not matching the extension, or a truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"raw file {path} does not exist or is not a file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = " ".join(sorted(FORMATS))
        raise RawFormatError(
            f"{path}: unknown raw file extension {path.suffix!r}; supported: {known}"
        )
    if fmt == "MRC":
        return _open_mrc(path)
    if fmt == "TIFF":
        return _open_tiff(path)
    return _open_rsciio(path, fmt)
