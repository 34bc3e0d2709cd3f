"""Non-uniform FFT plans: finufft for numpy arrays, cufinufft for cupy arrays."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_array_module

__all__ = ["NufftPlan", "nufft_library"]

# finufft warns (and returns a degraded result) below these tolerances.
_MIN_EPS = {np.dtype(np.complex64): 1e-6, np.dtype(np.complex128): 1e-14}
# Smallest tolerances the low upsampling factor 1.25 reaches without widening the kernel past
# finufft's limits; above them it needs a (1.25 / 2)³ ≈ 4× smaller fine grid, hence ~3× less time
# and memory than the default factor 2.
_LOW_UPSAMPFAC = 1.25
_LOW_UPSAMPFAC_MIN_EPS = {np.dtype(np.complex64): 2e-5, np.dtype(np.complex128): 1e-9}


def nufft_library(xp: ModuleType) -> ModuleType:
    """Import the NUFFT library matching the array module ``xp`` (finufft or cufinufft)."""
    if xp is np:
        import finufft

        return finufft
    try:
        import cufinufft
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise ImportError("GPU projection needs cufinufft: pip install cufinufft") from err
    return cufinufft


class NufftPlan:
    """A 3D type-1 or type-2 NUFFT with fixed non-uniform points, on the CPU or the GPU.

    Parameters
    ----------
    nufft_type : {1, 2}
        1: non-uniform points → uniform modes; 2: uniform modes → non-uniform points.
    shape : tuple of int
        Mode grid ``(n0, n1, n2)``; mode ``k`` of an axis of length ``n`` sits at ``k + n // 2``.
    points : tuple of 3 arrays of shape (M,)
        Angular coordinates of the non-uniform points along the axes of `shape` [rad], in [-π, π].
    isign : {-1, 1}
        Sign of the exponent.
    dtype : complex64 or complex128
        Precision of the transform.
    eps : float
        Requested relative tolerance; raised to the smallest the precision supports.
    n_threads : int, optional
        CPU threads (finufft only); all cores when None.
    upsampfac : float, optional
        Fine-grid oversampling (finufft only); 1.25 when `eps` allows it, else 2, when None.
    """

    def __init__(
        self,
        nufft_type: int,
        shape: tuple[int, int, int],
        points: tuple[Any, Any, Any],
        *,
        isign: int,
        dtype: Any,
        eps: float,
        n_threads: int | None = None,
        upsampfac: float | None = None,
    ) -> None:
        xp = get_array_module(points[0])
        lib = nufft_library(xp)
        dtype = np.dtype(dtype)
        eps = max(float(eps), _MIN_EPS[dtype])
        options: dict[str, Any] = {}
        if xp is np:
            if n_threads is not None:
                options["nthreads"] = int(n_threads)
            if upsampfac is None:
                low = eps >= _LOW_UPSAMPFAC_MIN_EPS[dtype]
                upsampfac = _LOW_UPSAMPFAC if low else 2.0
            options["upsampfac"] = float(upsampfac)
        self.upsampfac = options.get("upsampfac", 2.0)
        self.xp = xp
        self.library = lib.__name__
        self.dtype = dtype
        self.shape = tuple(int(n) for n in shape)
        real = np.float32 if dtype == np.complex64 else np.float64
        # The plan keeps references to the points (no copy when they already match).
        self._points = tuple(xp.ascontiguousarray(p, dtype=real) for p in points)
        self._plan = lib.Plan(nufft_type, self.shape, 1, eps, isign, dtype=dtype.name, **options)
        self._plan.setpts(*self._points)

    def execute(self, data: Any, *, out: Any = None) -> Any:
        """Run the transform on modes (type 2) or point strengths (type 1), into `out` if given."""
        return self._plan.execute(self.xp.ascontiguousarray(data, dtype=self.dtype), out=out)
