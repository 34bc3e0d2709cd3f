"""Fourier-slice projection of a 3D map and its exact adjoint (back-projection), through NUFFTs."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import get_array_module, supported_float_type
from ._gridding import GriddingPlan
from ._nufft import NufftPlan

__all__ = ["FourierSliceProjector", "as_rotation_matrices", "backproject", "project"]


def as_rotation_matrices(rotations: Rotation | ArrayLike) -> np.ndarray:
    """Rotation matrices of shape (n, 3, 3) from a scipy ``Rotation`` or an array of matrices.

    Parameters
    ----------
    rotations : Rotation or array_like of shape (n, 3, 3) or (3, 3)
        Map frame → microscope frame (see :mod:`nanorecon.geometry`).

    Returns
    -------
    ndarray of shape (n, 3, 3)
        float64 matrices acting on (x, y, z) column vectors.
    """
    if isinstance(rotations, Rotation):
        matrices = rotations.as_matrix()
    else:
        matrices = np.asarray(rotations, dtype=np.float64)
    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    if not np.allclose(matrices @ matrices.transpose(0, 2, 1), np.eye(3), atol=1e-6):
        raise ValueError("rotations must be orthonormal 3x3 matrices")
    return matrices


def _shifts_px(shifts_A: ArrayLike | None, n: int, voxel_size_A: float) -> np.ndarray | None:
    if shifts_A is None:
        return None
    shifts = np.asarray(shifts_A, dtype=np.float64)
    if shifts.shape != (n, 2):
        raise ValueError(
            f"shifts_A must have shape ({n}, 2) as (shift_x_A, shift_y_A), got {shifts.shape}"
        )
    return shifts / float(voxel_size_A)


class FourierSliceProjector:
    """Projection ``P`` for fixed orientations and shifts, with its exact adjoint ``Pᵀ``.

    By the Fourier-slice theorem the 2D Fourier transform of the image taken at orientation ``R``
    is the 3D Fourier transform of the map on the central plane spanned by the first two rows of
    ``R`` (the microscope x and y axes in map coordinates). The plane is sampled with a NUFFT of
    type 2 on the image's frequency grid inside the Nyquist disk, shifted by a phase ramp and
    brought back to real space by an inverse 2D FFT. ``adjoint`` runs the same chain backwards
    (forward 2D FFT, conjugate phase, NUFFT of type 1), so ``⟨P x, y⟩ = ⟨x, Pᵀ y⟩`` holds to the
    NUFFT tolerance. Images are line sums along the beam in voxel units (a map of ones of edge
    ``L`` voxels projects to ``L``).

    Parameters
    ----------
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image.
    size : int
        Edge length ``N`` of the cubic map (N, N, N) and of the square images (N, N) [voxels].
    shifts_A : array_like of shape (n, 2), optional
        ``(shift_x_A, shift_y_A)`` per image: the particle centre appears at ``centre + shift`` [Å].
    voxel_size_A : float, optional
        Voxel and pixel edge [Å]; only used to convert the shifts.
    dtype : float32 or float64, optional
        Precision of maps and images (the NUFFT runs in the matching complex type).
    device : {"cpu", "gpu"}, optional
        numpy or cupy arrays.
    eps : float, optional
        Relative NUFFT tolerance.
    n_threads : int, optional
        CPU threads for finufft (all cores when None).
    method : {"auto", "nufft", "gridding"}, optional
        ``"nufft"``: finufft (CPU) or cufinufft (GPU). ``"gridding"``: Kaiser–Bessel gridding with
        array-module operations only (:class:`~nanorecon.refine._gridding.GriddingPlan`), slower
        on the CPU but needing no NUFFT library. ``"auto"``: nufft, except on a GPU without
        cufinufft.
    gridding_options : dict, optional
        Extra keywords of :class:`~nanorecon.refine._gridding.GriddingPlan` (``width``,
        ``oversampling``, ``chunk_points``) when gridding is used.
    """

    def __init__(
        self,
        rotations: Rotation | ArrayLike,
        size: int,
        *,
        shifts_A: ArrayLike | None = None,
        voxel_size_A: float = 1.0,
        dtype: Any = np.float32,
        device: str = "cpu",
        eps: float = 1e-6,
        n_threads: int | None = None,
        method: str = "auto",
        gridding_options: dict[str, Any] | None = None,
    ) -> None:
        xp = get_array_module(device)
        if method not in ("auto", "nufft", "gridding"):
            raise ValueError(f"method must be 'auto', 'nufft' or 'gridding', not {method!r}")
        matrices = as_rotation_matrices(rotations)
        n, size = len(matrices), int(size)
        if size < 2:
            raise ValueError(f"size must be at least 2, got {size}")
        if voxel_size_A <= 0:
            raise ValueError(f"voxel_size_A must be positive, got {voxel_size_A}")
        self.xp = xp
        self.size = size
        self.n_images = n
        self.shape = (size, size, size)
        self.dtype = supported_float_type(dtype)
        self.complex_dtype = np.result_type(self.dtype, np.complex64)
        self._matrices = matrices

        # Image frequencies [cycles/image] on the centred grid, inside the Nyquist disk. The strict
        # inequality keeps the set symmetric under k → -k (even N has no +N/2 partner of -N/2).
        k = np.arange(size) - size // 2
        ky, kx = np.meshgrid(k, k, indexing="ij")
        inside = (kx**2 + ky**2) < (size / 2) ** 2
        kx, ky = kx[inside], ky[inside]
        self.n_points = kx.size
        # Maps and images are real, so their spectra are Hermitian: only the half plane kx > 0 or
        # (kx = 0, ky ≥ 0) is transformed, which halves the NUFFT work.
        half = (kx > 0) | ((kx == 0) & (ky >= 0))
        hx, hy = kx[half], ky[half]
        self.n_half_points = hx.size
        position = np.full((size, size), -1)
        position[ky + size // 2, kx + size // 2] = np.arange(self.n_points)
        half_of = np.full(self.n_points, -1)
        half_of[half] = np.arange(hx.size)
        mirror = position[size // 2 - ky, size // 2 - kx]
        # Each full-set sample maps to itself or to its Hermitian partner in the half set.
        self._full_to_half = xp.asarray(np.where(half, half_of, half_of[mirror]))
        self._half = xp.asarray(np.flatnonzero(half))
        # Positions in the (N, N // 2 + 1) rfft2 layout; the kx = 0 column also needs ky < 0.
        width = size // 2 + 1
        self._rfft_index = xp.asarray((hy % size) * width + hx)
        column = np.flatnonzero((hx == 0) & (hy > 0))
        self._column_source = xp.asarray(column)
        self._column_target = xp.asarray((-hy[column] % size) * width)
        # A half-set sample stands for itself and its partner (the origin only for itself).
        multiplicity = np.where((hx == 0) & (hy == 0), 1.0, 2.0)

        # Central slice q = kx·R[0] + ky·R[1] in map (x, y, z); NUFFT axes are the map (z, y, x).
        real = np.float32 if self.complex_dtype == np.complex64 else np.float64
        points = tuple(
            xp.asarray(
                (
                    (2 * np.pi / size)
                    * (
                        hx[None, :] * matrices[:, None, 0, axis]
                        + hy[None, :] * matrices[:, None, 1, axis]
                    )
                )
                .ravel()
                .astype(real)
            )
            for axis in (2, 1, 0)
        )

        # One phase per sample: the shift and the move of the image centre to index N // 2
        # (which replaces fftshift / ifftshift of the images).
        shifts = _shifts_px(shifts_A, n, voxel_size_A)
        centre = np.zeros((1, 2)) if shifts is None else shifts
        centre = centre + size // 2
        ramp = np.exp(
            -2j * np.pi * (hx[None, :] * centre[:, :1] + hy[None, :] * centre[:, 1:]) / size
        )
        self._phase = xp.asarray(ramp.astype(self.complex_dtype))
        back = ramp.conj() * multiplicity / float(size) ** 2
        self._back_phase = xp.asarray(back.astype(self.complex_dtype))
        self._multiplicity = xp.asarray(multiplicity.astype(self.complex_dtype))

        shape = (size, size, size)
        if method == "auto":
            no_cufinufft = importlib.util.find_spec("cufinufft") is None
            method = "gridding" if device == "gpu" and no_cufinufft else "nufft"
        options: dict[str, Any] = {"dtype": self.complex_dtype, "eps": eps}
        if method == "gridding":
            plan_class = GriddingPlan
            options.update(gridding_options or {})
        else:
            plan_class, options["n_threads"] = NufftPlan, n_threads
        self._forward = plan_class(2, shape, points, isign=-1, **options)
        self._adjoint = plan_class(1, shape, points, isign=1, **options)
        self.library = self._forward.library

    @property
    def points(self) -> tuple[Any, Any, Any]:
        """Angular coordinates (z, y, x) [rad] of all Fourier samples, image after image."""
        size, xp = self.size, self.xp
        k = np.arange(size) - size // 2
        ky, kx = np.meshgrid(k, k, indexing="ij")
        inside = (kx**2 + ky**2) < (size / 2) ** 2
        kx, ky = kx[inside] / size, ky[inside] / size
        m = self._matrices
        q = kx[None, :, None] * m[:, None, 0, :] + ky[None, :, None] * m[:, None, 1, :]
        return tuple(xp.asarray(2 * np.pi * q[..., axis].ravel()) for axis in (2, 1, 0))

    def sample_frequencies(self, voxel_size_A: float = 1.0) -> Any:
        """Spatial frequency of every Fourier sample [1/Å], image after image.

        Returns
        -------
        ndarray of shape (n, M)
            ``|k|`` of each sample (the layout of :meth:`sample_density` and of `sample_weights`).
        """
        size = self.size
        k = np.arange(size) - size // 2
        ky, kx = np.meshgrid(k, k, indexing="ij")
        inside = (kx**2 + ky**2) < (size / 2) ** 2
        radius = np.hypot(kx[inside], ky[inside]) / (size * float(voxel_size_A))
        frequencies = np.broadcast_to(radius.astype(self.dtype), (self.n_images, radius.size))
        return self.xp.asarray(frequencies)

    def sample_density(self, *, width_voxels: float | None = None) -> Any:
        """Density of the Fourier samples of all images around each sample.

        The sample pattern is convolved with a Gaussian of standard deviation
        ``1 / (2π width_voxels)`` cycles per voxel (a real-space window of `width_voxels`,
        ``N / 6`` by default, so the window is negligible at the box edge).

        Returns
        -------
        ndarray of shape (n, M)
            Relative density at each sample (1 for an isolated sample); ``1 / density`` are
            density-compensation weights.
        """
        xp, size = self.xp, self.size
        width = size / 6 if width_voxels is None else float(width_voxels)
        r = xp.arange(size, dtype=self.dtype) - size // 2
        window = xp.exp(-(r**2) / (2 * width**2))
        window = window[:, None, None] * window[None, :, None] * window[None, None, :]
        # The pattern of all samples (both half planes) is real: Re of the half-set sum.
        counts = xp.broadcast_to(self._multiplicity, (self.n_images, self.n_half_points))
        pattern = self._adjoint.execute(counts.ravel()).real
        pattern *= window
        density = self._forward.execute(pattern).real / float(window.sum())
        density = density.reshape(self.n_images, self.n_half_points)[:, self._full_to_half]
        return density.astype(self.dtype, copy=False)

    def forward(self, volume: Any, *, sample_weights: Any = None) -> Any:
        """Project a map.

        Parameters
        ----------
        volume : ndarray of shape (N, N, N)
            Map (z, y, x), same array module as the projector.
        sample_weights : ndarray of shape (n, M), optional
            Real factors on the Fourier samples before the images return to real space (a
            filter, e.g. a transfer function; the layout of :meth:`adjoint`'s).

        Returns
        -------
        ndarray of shape (n, N, N)
            Images (y, x), real, in the projector's dtype.
        """
        xp, n, size = self.xp, self.n_images, self.size
        if tuple(volume.shape) != (size,) * 3:
            raise ValueError(f"volume must have shape {(size,) * 3}, got {tuple(volume.shape)}")
        values = self._forward.execute(volume).reshape(n, self.n_half_points)
        values *= self._phase
        if sample_weights is not None:
            values *= xp.asarray(sample_weights).reshape(n, self.n_points)[:, self._half]
        spectrum = xp.zeros((n, size * (size // 2 + 1)), dtype=self.complex_dtype)
        spectrum[:, self._rfft_index] = values
        spectrum[:, self._column_target] = values[:, self._column_source].conj()
        spectrum = spectrum.reshape(n, size, size // 2 + 1)
        images = xp.fft.irfft2(spectrum, s=(size, size), axes=(-2, -1))
        return images.astype(self.dtype, copy=False)

    def adjoint(
        self, images: Any, *, weights: ArrayLike | None = None, sample_weights: Any = None
    ) -> Any:
        """Back-project images: the exact adjoint of :meth:`forward`.

        Parameters
        ----------
        images : ndarray of shape (n, N, N)
            Images (y, x), same array module as the projector.
        weights : array_like of shape (n,), optional
            Per-image factors applied before back-projection.
        sample_weights : ndarray of shape (n, M), optional
            Non-negative factors on the Fourier samples (e.g. ``1 / sample_density()``); with
            them the result is ``Pᵀ W y`` for the image-space filter ``W`` they define (taken as
            Hermitian: the factor of a sample in the half plane kx > 0 or (kx = 0, ky ≥ 0)
            also applies to its partner at -k).

        Returns
        -------
        ndarray of shape (N, N, N)
            Map (z, y, x), real, in the projector's dtype.
        """
        xp, n, size = self.xp, self.n_images, self.size
        if tuple(images.shape) != (n, size, size):
            raise ValueError(f"images must have shape {(n, size, size)}, got {tuple(images.shape)}")
        data = images.astype(self.dtype, copy=False)
        if weights is not None:
            w = xp.asarray(weights, dtype=self.dtype)
            if w.shape != (n,):
                raise ValueError(f"weights must have shape ({n},), got {tuple(w.shape)}")
            data = data * w[:, None, None]
        spectrum = xp.fft.rfft2(data, axes=(-2, -1)).reshape(n, -1)
        values = spectrum[:, self._rfft_index]
        values *= self._back_phase
        if sample_weights is not None:
            values *= xp.asarray(sample_weights).reshape(n, self.n_points)[:, self._half]
        volume = self._adjoint.execute(values.ravel())
        return volume.real.astype(self.dtype, copy=True)


def project(
    volume: Any,
    rotations: Rotation | ArrayLike,
    *,
    shifts_A: ArrayLike | None = None,
    voxel_size_A: float = 1.0,
    eps: float = 1e-6,
    n_threads: int | None = None,
) -> Any:
    """Project a map along the beam for each orientation (Fourier-slice theorem, NUFFT).

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Map (z, y, x), numpy or cupy; centre at index ``N // 2``.
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image.
    shifts_A : array_like of shape (n, 2), optional
        ``(shift_x_A, shift_y_A)``: the particle centre appears at ``centre + shift`` [Å].
    voxel_size_A : float, optional
        Voxel edge [Å].
    eps : float, optional
        Relative NUFFT tolerance.
    n_threads : int, optional
        CPU threads for finufft (all cores when None).

    Returns
    -------
    images : ndarray of shape (n, N, N)
        Line sums along microscope z in voxel units (y, x), same array module as `volume`.

    Examples
    --------
    >>> from scipy.spatial.transform import Rotation
    >>> volume = np.zeros((16, 16, 16), np.float32)
    >>> volume[8, 8, 11] = 1.0  # x = +3 voxels
    >>> image = project(volume, Rotation.from_euler("z", [90], degrees=True))[0]
    >>> np.unravel_index(np.argmax(image), image.shape)  # rotated onto +y
    (np.int64(11), np.int64(8))
    """
    volume = _check_volume(volume)
    projector = FourierSliceProjector(
        rotations,
        volume.shape[0],
        shifts_A=shifts_A,
        voxel_size_A=voxel_size_A,
        dtype=volume.dtype,
        device=_device(volume),
        eps=eps,
        n_threads=n_threads,
    )
    return projector.forward(volume)


def backproject(
    images: Any,
    rotations: Rotation | ArrayLike,
    *,
    shifts_A: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    voxel_size_A: float = 1.0,
    eps: float = 1e-6,
    n_threads: int | None = None,
) -> Any:
    """Back-project images into a map: the exact adjoint of :func:`project`.

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Images (y, x), numpy or cupy.
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image.
    shifts_A : array_like of shape (n, 2), optional
        ``(shift_x_A, shift_y_A)`` of each image [Å].
    weights : array_like of shape (n,), optional
        Per-image factors.
    voxel_size_A : float, optional
        Voxel edge [Å].
    eps : float, optional
        Relative NUFFT tolerance.
    n_threads : int, optional
        CPU threads for finufft (all cores when None).

    Returns
    -------
    volume : ndarray of shape (N, N, N)
        Map (z, y, x), same array module as `images`.
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, N, N), got {tuple(images.shape)}")
    images = images.astype(supported_float_type(images.dtype), copy=False)
    projector = FourierSliceProjector(
        rotations,
        images.shape[1],
        shifts_A=shifts_A,
        voxel_size_A=voxel_size_A,
        dtype=images.dtype,
        device=_device(images),
        eps=eps,
        n_threads=n_threads,
    )
    return projector.adjoint(images, weights=weights)


def _check_volume(volume: Any) -> Any:
    xp = get_array_module(volume)
    volume = xp.asarray(volume)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"volume must be a cube (N, N, N), got shape {tuple(volume.shape)}")
    return volume.astype(supported_float_type(volume.dtype), copy=False)


def _device(x: Any) -> str:
    return "cpu" if get_array_module(x) is np else "gpu"
