"""One array-module switch for numpy and cupy.

Kernels start with ``xp = get_array_module(array)`` and never branch on the device; cupy is optional and
only imported when present.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import scipy.ndimage

try:  # cupy is an optional extra (``pip install nanorecon[gpu]``)
    import cupy as cp
    import cupyx.scipy.ndimage as cupy_ndimage
except ImportError:  # pragma: no cover - depends on the machine
    cp = None
    cupy_ndimage = None

__all__ = [
    "asnumpy",
    "cupy_available",
    "get_array_module",
    "get_ndimage_module",
    "supported_float_type",
    "to_device",
]


def cupy_available() -> bool:
    """True when cupy imports and sees at least one CUDA device."""
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # any CUDA runtime error means "no usable GPU"
        return False


def get_array_module(x: Any = None) -> ModuleType:
    """Return numpy or cupy for an array, a dask array (via ``_meta``), or ``"cpu"``/``"gpu"``."""
    if isinstance(x, str):
        if x == "cpu":
            return np
        if x == "gpu":
            if cp is None:
                raise RuntimeError("device 'gpu' needs cupy: pip install 'nanorecon[gpu]'")
            return cp
        raise ValueError(f"device must be 'cpu' or 'gpu', not {x!r}")
    meta = getattr(x, "_meta", None)
    if meta is not None:
        x = meta
    if cp is not None and isinstance(x, cp.ndarray):
        return cp
    return np


def get_ndimage_module(x: Any = None) -> ModuleType:
    """Return ``scipy.ndimage`` or ``cupyx.scipy.ndimage`` matching :func:`get_array_module`."""
    return cupy_ndimage if get_array_module(x) is cp and cp is not None else scipy.ndimage


def asnumpy(x: Any) -> np.ndarray:
    """Copy an array of either module to host memory (no copy for numpy input)."""
    if cp is not None and isinstance(x, cp.ndarray):
        return cp.asnumpy(x)
    return np.asarray(x)


def to_device(x: Any, device: str) -> Any:
    """Move an array to ``"cpu"`` (numpy) or ``"gpu"`` (cupy)."""
    xp = get_array_module(device)
    return xp.asarray(x) if xp is not np else asnumpy(x)


def supported_float_type(dtype: Any) -> np.dtype:
    """Keep float32/float64; every other dtype computes in float32."""
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
