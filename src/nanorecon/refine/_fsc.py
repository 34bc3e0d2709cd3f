"""Fourier shell correlation, resolution estimates and gold-standard half-set reconstructions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module
from ._projector import as_rotation_matrices
from ._reconstruct import reconstruct

__all__ = ["HalfSetResult", "fsc", "half_set_reconstruction", "resolution_at"]


def fsc(map1: Any, map2: Any, voxel_size_A: float) -> pd.DataFrame:
    """Fourier shell correlation between two maps.

    Shells are one Fourier voxel ``1 / (N · voxel_size_A)`` wide (``N``: the largest edge), from
    the origin to Nyquist.

    Parameters
    ----------
    map1, map2 : ndarray of shape (Z, Y, X)
        Maps on the same grid, numpy or cupy.
    voxel_size_A : float
        Voxel edge [Å].

    Returns
    -------
    DataFrame
        One row per shell: ``spatial_frequency_1_per_A`` (shell centre [1/Å]), ``resolution_A``
        ([Å], inf at the origin), ``fsc`` and ``n_voxels`` (Fourier voxels in the shell).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = rng.standard_normal((16, 16, 16))
    >>> bool(np.allclose(fsc(m, m, 0.5)["fsc"], 1.0))
    True
    """
    xp = get_array_module(map1)
    map1, map2 = xp.asarray(map1), xp.asarray(map2)
    if map1.shape != map2.shape or map1.ndim != 3:
        raise ValueError(f"maps must be 3D with equal shapes, got {map1.shape} and {map2.shape}")
    if voxel_size_A <= 0:
        raise ValueError(f"voxel_size_A must be positive, got {voxel_size_A}")
    size = max(map1.shape)
    f1, f2 = xp.fft.rfftn(map1), xp.fft.rfftn(map2)
    # Frequencies in units of 1 / (size · voxel) so that non-cubic grids share one shell width.
    freqs = [xp.fft.fftfreq(n) * size for n in map1.shape[:2]] + [
        xp.fft.rfftfreq(map1.shape[2]) * size
    ]
    kz, ky, kx = xp.meshgrid(*freqs, indexing="ij")
    shell = xp.rint(xp.sqrt(kz**2 + ky**2 + kx**2)).astype(xp.int64).ravel()
    # rfft keeps half the spectrum: columns standing for two Hermitian partners count twice.
    twice = xp.ones(map1.shape[2] // 2 + 1)
    twice[1 : (map1.shape[2] + 1) // 2] = 2
    weight = xp.broadcast_to(twice, f1.shape).ravel()
    n_shells = size // 2 + 1
    keep = shell < n_shells
    shell, weight = shell[keep], weight[keep]

    def shell_sum(values: Any) -> np.ndarray:
        return asnumpy(
            xp.bincount(shell, weights=values.ravel()[keep] * weight, minlength=n_shells)
        )

    cross = shell_sum((f1 * f2.conj()).real)
    power1, power2 = shell_sum(xp.abs(f1) ** 2), shell_sum(xp.abs(f2) ** 2)
    n_voxels = asnumpy(xp.bincount(shell, weights=weight, minlength=n_shells)).round().astype(int)
    denominator = np.sqrt(power1 * power2)
    correlation = np.divide(cross, denominator, out=np.zeros(n_shells), where=denominator > 0)
    frequency = np.arange(n_shells) / (size * voxel_size_A)
    with np.errstate(divide="ignore"):
        resolution = 1.0 / frequency
    return pd.DataFrame(
        {
            "spatial_frequency_1_per_A": frequency,
            "resolution_A": resolution,
            "fsc": correlation,
            "n_voxels": n_voxels,
        }
    )


def resolution_at(fsc_table: pd.DataFrame, threshold: float = 0.143) -> float:
    """Resolution where the FSC first falls below a threshold.

    The crossing between the last shell at or above `threshold` and the first below it is
    interpolated linearly in spatial frequency; the origin shell is never taken as a crossing.

    Parameters
    ----------
    fsc_table : DataFrame
        Output of :func:`fsc`.
    threshold : float, optional
        0.143 for half maps (gold standard), 0.5 against a reference or the truth.

    Returns
    -------
    float
        Resolution [Å]; the Nyquist resolution of the table when the FSC never falls below the
        threshold, inf when it is below it from the first shell on.

    Examples
    --------
    >>> table = pd.DataFrame({"spatial_frequency_1_per_A": [0.0, 0.1, 0.2, 0.3],
    ...                       "fsc": [1.0, 0.9, 0.3, 0.1]})
    >>> round(resolution_at(table, 0.5), 6)  # crossing at 0.1 + 0.1 · 0.4 / 0.6 [1/Å]
    6.0
    """
    frequency = fsc_table["spatial_frequency_1_per_A"].to_numpy(dtype=float)
    correlation = fsc_table["fsc"].to_numpy(dtype=float)
    # The origin shell holds one real coefficient per map (its FSC is ±1): skip it.
    below = np.flatnonzero((correlation < threshold) & (frequency > 0))
    if below.size == 0:
        return float(1.0 / frequency[-1])
    first = int(below[0])
    if first == 0 or correlation[first - 1] < threshold:
        return float("inf")
    f0, f1 = frequency[first - 1], frequency[first]
    c0, c1 = correlation[first - 1], correlation[first]
    crossing = f0 + (f1 - f0) * (c0 - threshold) / (c0 - c1)
    return float(1.0 / crossing)


@dataclass(frozen=True)
class HalfSetResult:
    """Outcome of :func:`half_set_reconstruction`.

    Attributes
    ----------
    volume : ndarray of shape (N, N, N)
        Map from all images (or the mean of the half maps).
    half_maps : tuple of two ndarrays of shape (N, N, N)
        Maps of the two halves.
    fsc : DataFrame
        FSC between the half maps (see :func:`fsc`).
    resolution_A : float
        Gold-standard resolution (FSC = 0.143) [Å].
    errors : tuple of ndarrays
        Projection-error histories of the half maps and, when computed, the full map.
    """

    volume: Any
    half_maps: tuple[Any, Any]
    fsc: pd.DataFrame
    resolution_A: float
    errors: tuple[np.ndarray, ...]


def half_set_reconstruction(
    images: Any,
    rotations: Rotation | ArrayLike,
    *,
    voxel_size_A: float,
    shifts_A: ArrayLike | None = None,
    half_sets: ArrayLike | None = None,
    full_map: bool = True,
    threshold: float = 0.143,
    **options: Any,
) -> HalfSetResult:
    """Reconstruct two independent half maps and measure their Fourier shell correlation.

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Projections (y, x), numpy or cupy.
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image.
    voxel_size_A : float
        Voxel edge [Å].
    shifts_A : array_like of shape (n, 2), optional
        ``(shift_x_A, shift_y_A)`` of each image [Å].
    half_sets : array_like of shape (n,), optional
        Half (0 or 1) of each image; even and odd image indices when None (interleaved halves
        keep the angular coverage of both halves alike).
    full_map : bool, optional
        Also reconstruct from all images; otherwise the full map is the mean of the halves.
    threshold : float, optional
        FSC threshold for `resolution_A`.
    **options
        Passed on to :func:`reconstruct` (``n_iterations``, ``support``, ``callback``, ...).

    Returns
    -------
    HalfSetResult
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    matrices = as_rotation_matrices(rotations)
    n = images.shape[0]
    if len(matrices) != n:
        raise ValueError(f"{n} images but {len(matrices)} rotations")
    halves = np.arange(n) % 2 if half_sets is None else np.asarray(half_sets, dtype=int)
    if halves.shape != (n,) or not np.all((halves == 0) | (halves == 1)):
        raise ValueError("half_sets must hold 0 or 1 for every image")
    for half in (0, 1):
        if not np.any(halves == half):
            raise ValueError(f"half set {half} holds no image")
    shifts = None if shifts_A is None else np.asarray(shifts_A, dtype=float)
    maps, errors = [], []
    for half in (0, 1):
        chosen = np.flatnonzero(halves == half)
        result = reconstruct(
            images[xp.asarray(chosen)],
            matrices[chosen],
            shifts_A=None if shifts is None else shifts[chosen],
            voxel_size_A=voxel_size_A,
            **options,
        )
        maps.append(result.volume)
        errors.append(result.errors)
    if full_map:
        result = reconstruct(
            images, matrices, shifts_A=shifts, voxel_size_A=voxel_size_A, **options
        )
        volume = result.volume
        errors.append(result.errors)
    else:
        volume = (maps[0] + maps[1]) / 2
    table = fsc(maps[0], maps[1], voxel_size_A)
    return HalfSetResult(
        volume=volume,
        half_maps=(maps[0], maps[1]),
        fsc=table,
        resolution_A=resolution_at(table, threshold),
        errors=tuple(errors),
    )
