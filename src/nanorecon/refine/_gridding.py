"""Fourier-slice projection by Kaiser–Bessel gridding on an oversampled FFT grid (numpy or cupy).

The same operators as :mod:`._projector` (finufft / cufinufft) written with array-module
operations only, for GPUs without cufinufft: the type-2 transform is a 3D FFT of the zero-padded,
deapodised map followed by a separable Kaiser–Bessel gather of the ``W³`` grid neighbours of each
Fourier sample; the type-1 transform is its exact transpose (scatter-add, inverse FFT, crop,
deapodise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import get_array_module

__all__ = ["GriddingPlan", "gridding_width", "kaiser_bessel_beta"]

# Gathered (or scattered) values per pass: a chunk of samples × W² neighbours, ~32 MiB complex64.
_CHUNK_ELEMENTS = 2**22
# The precision floors the tolerance (as for finufft): float32 rounding dominates past W = 7.
_MIN_EPS = {np.dtype(np.complex64): 1e-6, np.dtype(np.complex128): 1e-14}


def kaiser_bessel_beta(width: int, oversampling: float) -> float:
    """Kaiser–Bessel shape parameter β for a kernel of `width` grid points.

    Parameters
    ----------
    width : int
        Kernel width ``W`` [grid points].
    oversampling : float
        Grid oversampling ratio ``σ`` (≥ 1).

    Returns
    -------
    float
        ``β = π √(W² / σ² · (σ − ½)² − 0.8)`` (Beatty et al. 2005, eq. 5).

    References
    ----------
    .. [1] P. J. Beatty, D. G. Nishimura, J. M. Pauly, "Rapid gridding reconstruction with a
       minimal oversampling ratio", IEEE Trans. Med. Imaging 24, 799–808 (2005),
       :doi:`10.1109/TMI.2005.848376`.

    Examples
    --------
    >>> round(kaiser_bessel_beta(6, 2.0), 3)
    13.855
    """
    value = (width / oversampling) ** 2 * (oversampling - 0.5) ** 2 - 0.8
    if width < 2 or oversampling < 1 or value <= 0:
        raise ValueError(f"no Kaiser-Bessel kernel for width {width}, oversampling {oversampling}")
    return math.pi * math.sqrt(value)


def gridding_width(eps: float) -> int:
    """Kernel width ``W`` [grid points] reaching relative tolerance `eps` at oversampling 2.

    ``W = ⌈log₁₀(1 / eps)⌉ + 1``: with β of :func:`kaiser_bessel_beta` the measured relative L2
    error of a type-2 transform (random modes, random points, against the exact sum, complex128)
    is 8.0e-4, 8.1e-5, 8.6e-6, 8.9e-7, 8.8e-8, 9.0e-9 for W = 4 … 9, i.e. about ``0.9 · 10^(1−W)``.

    Examples
    --------
    >>> gridding_width(1e-6)
    7
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return max(2, math.ceil(-math.log10(eps) - 1e-9) + 1)


def _deapodisation(n: int, grid: int, width: int, beta: float) -> np.ndarray:
    """1 / Φ(r / G) for r = j − n // 2: the inverse Fourier transform of the kernel (float64).

    Φ(x) = ∫ φ(t) e^{2πi t x} dt = W sinh(√(β² − (πWx)²)) / √(β² − (πWx)²) / I₀(β) for the
    kernel φ(t) = I₀(β √(1 − (2t/W)²)) / I₀(β) on |t| ≤ W/2 (sin instead of sinh past the root).
    """
    x = (np.arange(n) - n // 2) / grid
    a = beta**2 - (np.pi * width * x) ** 2
    root = np.sqrt(np.abs(a))
    safe = np.where(a > 0, root, 1.0)
    phi = np.where(a > 0, np.sinh(safe) / safe, np.sinc(root / np.pi))
    return np.i0(beta) / (width * phi)


class GriddingPlan:
    """A 3D type-1 or type-2 non-uniform FFT by Kaiser–Bessel gridding, on numpy or cupy.

    The interface of :class:`~nanorecon.refine._nufft.NufftPlan`: type 2 evaluates
    ``f_j = Σ_k c_k exp(isign · i k·x_j)`` at the points ``x_j`` for modes ``c_k`` on `shape`;
    type 1 computes ``c_k = Σ_j f_j exp(isign · i k·x_j)``. The type-1 plan with ``isign = +1``
    is the exact adjoint (conjugate transpose) of the type-2 plan with ``isign = −1`` on the same
    points, to floating-point rounding. Samples are processed in chunks (consecutive points, i.e.
    batches of orientations for a projector) so memory stays at the padded grid plus one chunk.

    Parameters
    ----------
    nufft_type : {1, 2}
        1: non-uniform points → uniform modes; 2: uniform modes → non-uniform points.
    shape : tuple of int
        Mode grid ``(n0, n1, n2)``; mode ``k`` of an axis of length ``n`` sits at ``k + n // 2``.
    points : tuple of 3 arrays of shape (M,)
        Angular coordinates of the points along the axes of `shape` [rad], in (−π, π); numpy or
        cupy, which selects the array module.
    isign : {-1, 1}
        Sign of the exponent.
    dtype : complex64 or complex128
        Precision of the transform.
    eps : float, optional
        Requested relative tolerance, raised to the smallest the precision supports (1e-6 for
        complex64, 1e-14 for complex128); sets the kernel width (:func:`gridding_width`) unless
        `width` is given.
    width : int, optional
        Kaiser–Bessel kernel width ``W`` [grid points].
    oversampling : float, optional
        Ratio ``σ ≥ 2`` of the zero-padded FFT grid to the mode grid (rounded up to even sizes).
    chunk_points : int, optional
        Points gathered or scattered per pass; by default ``2²² / W²``.

    References
    ----------
    .. [1] P. J. Beatty, D. G. Nishimura, J. M. Pauly, "Rapid gridding reconstruction with a
       minimal oversampling ratio", IEEE Trans. Med. Imaging 24, 799–808 (2005),
       :doi:`10.1109/TMI.2005.848376`.
    """

    library = "gridding"

    def __init__(
        self,
        nufft_type: int,
        shape: tuple[int, int, int],
        points: tuple[Any, Any, Any],
        *,
        isign: int,
        dtype: Any,
        eps: float = 1e-6,
        width: int | None = None,
        oversampling: float = 2.0,
        chunk_points: int | None = None,
    ) -> None:
        if nufft_type not in (1, 2):
            raise ValueError(f"nufft_type must be 1 or 2, got {nufft_type}")
        if isign not in (-1, 1):
            raise ValueError(f"isign must be -1 or 1, got {isign}")
        if oversampling < 2:
            raise ValueError(f"oversampling must be at least 2, got {oversampling}")
        dtype = np.dtype(dtype)
        if dtype not in (np.complex64, np.complex128):
            raise ValueError(f"dtype must be complex64 or complex128, got {dtype}")
        if len(points) != 3 or len(shape) != 3:
            raise ValueError("shape and points need three axes")
        xp = get_array_module(points[0])
        self.xp = xp
        self.nufft_type = nufft_type
        self.dtype = dtype
        self.real_dtype = np.dtype(np.float32 if dtype == np.complex64 else np.float64)
        self.shape = tuple(int(n) for n in shape)
        eps = max(float(eps), _MIN_EPS[dtype])
        self.width = int(gridding_width(eps) if width is None else width)
        self.oversampling = float(oversampling)
        self.beta = kaiser_bessel_beta(self.width, self.oversampling)
        # Even grids: the map sits at offset G/2 − n//2, so its centre is at G/2 and the FFT of the
        # padded grid is the centred spectrum times (−1)^k on each axis (folded into the weights).
        self.grid = tuple(2 * math.ceil(self.oversampling * n / 2) for n in self.shape)
        self._offsets = tuple(g // 2 - n // 2 for g, n in zip(self.grid, self.shape, strict=True))
        deapodisation = [
            _deapodisation(n, g, self.width, self.beta)
            for n, g in zip(self.shape, self.grid, strict=True)
        ]
        self._deapodisation = xp.asarray(
            deapodisation[0][:, None, None]
            * deapodisation[1][None, :, None]
            * deapodisation[2][None, None, :],
            dtype=self.real_dtype,
        )
        # Grid coordinates κ: type 2 evaluates exp(−2πi k·κ/G), type 1 spreads with exp(+2πi k·κ/G);
        # the other sign mirrors the points.
        sign = -isign if nufft_type == 2 else isign
        self._kappa = tuple(
            xp.asarray(p, dtype=self.real_dtype) * (sign * g / (2 * np.pi))
            for p, g in zip(points, self.grid, strict=True)
        )
        sizes = {int(k.size) for k in self._kappa}
        if len(sizes) != 1 or any(k.ndim != 1 for k in self._kappa):
            raise ValueError("points must be three 1D arrays of one length")
        self.n_points = sizes.pop()
        default_chunk = max(1, _CHUNK_ELEMENTS // self.width**2)
        self.chunk_points = int(default_chunk if chunk_points is None else chunk_points)
        self._i0_beta = float(np.i0(self.beta))

    def execute(self, data: Any, *, out: Any = None) -> Any:
        """Run the transform on modes (type 2) or point strengths (type 1), into `out` if given."""
        data = self.xp.asarray(data)
        result = self._type2(data) if self.nufft_type == 2 else self._type1(data)
        if out is None:
            return result
        out[...] = result.reshape(out.shape)
        return out

    def _axis(self, kappa: Any, grid: int) -> tuple[Any, Any]:
        """Grid indices and kernel weights × (−1)^k of the W neighbours along one axis, (m, W)."""
        xp = self.xp
        k = xp.ceil(kappa - self.width / 2)[:, None] + xp.arange(self.width, dtype=kappa.dtype)
        distance = (kappa[:, None] - k) * (2.0 / self.width)
        argument = xp.sqrt(xp.maximum(1 - distance * distance, 0))
        weights = (xp.i0(self.beta * argument) / self._i0_beta).astype(self.real_dtype, copy=False)
        k = k.astype(xp.int64)
        weights *= (1 - 2 * (k & 1)).astype(self.real_dtype)
        return k % grid, weights

    def _chunks(self):
        """Neighbour indices and weights, chunk by chunk: (slice, iz, wz, iyx, wyx)."""
        gy, gx = self.grid[1], self.grid[2]
        for start in range(0, self.n_points, self.chunk_points):
            chunk = slice(start, min(start + self.chunk_points, self.n_points))
            iz, wz = self._axis(self._kappa[0][chunk], self.grid[0])
            iy, wy = self._axis(self._kappa[1][chunk], gy)
            ix, wx = self._axis(self._kappa[2][chunk], gx)
            iyx = iy[:, :, None] * gx + ix[:, None, :]
            wyx = wy[:, :, None] * wx[:, None, :]
            yield chunk, iz * (gy * gx), wz, iyx, wyx

    def _type2(self, modes: Any) -> Any:
        xp = self.xp
        if tuple(modes.shape) != self.shape:
            raise ValueError(f"modes must have shape {self.shape}, got {tuple(modes.shape)}")
        padded = xp.zeros(self.grid, dtype=self.dtype)
        (z, y, x), (nz, ny, nx) = self._offsets, self.shape
        padded[z : z + nz, y : y + ny, x : x + nx] = modes * self._deapodisation
        flat = xp.fft.fftn(padded).ravel()
        del padded
        values = xp.empty(self.n_points, dtype=self.dtype)
        for chunk, iz, wz, iyx, wyx in self._chunks():
            total = xp.zeros(iyx.shape[0], dtype=self.dtype)
            for a in range(self.width):
                gathered = flat[iz[:, a, None, None] + iyx] * wyx
                total += wz[:, a] * gathered.reshape(len(total), -1).sum(axis=1)
            values[chunk] = total
        return values

    def _type1(self, strengths: Any) -> Any:
        xp = self.xp
        strengths = strengths.reshape(-1).astype(self.dtype, copy=False)
        if strengths.size != self.n_points:
            raise ValueError(f"expected {self.n_points} point strengths, got {strengths.size}")
        grid = xp.zeros(self.grid, dtype=self.dtype)
        # Real and imaginary parts are scattered into a real view: float atomics on every device.
        target = grid.reshape(-1).view(self.real_dtype)
        for chunk, iz, wz, iyx, wyx in self._chunks():
            real, imag = strengths[chunk].real, strengths[chunk].imag
            for a in range(self.width):
                index = 2 * (iz[:, a, None, None] + iyx).reshape(-1)
                spread = wz[:, a, None, None] * wyx
                # ufunc.at: numpy, and cupy >= 12.1 (whose cupyx.scatter_add is deprecated)
                xp.add.at(target, index, (real[:, None, None] * spread).reshape(-1))
                xp.add.at(target, index + 1, (imag[:, None, None] * spread).reshape(-1))
        # The adjoint of the unnormalised forward FFT is the unnormalised inverse FFT.
        grid = xp.fft.ifftn(grid, norm="forward")
        (z, y, x), (nz, ny, nx) = self._offsets, self.shape
        return grid[z : z + nz, y : y + ny, x : x + nx] * self._deapodisation
