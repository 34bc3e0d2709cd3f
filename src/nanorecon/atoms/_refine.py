"""Atomic position refinement against the measured projections.

Each atom is a Gaussian blob; its projection into image ``k`` is a pixel-integrated 2D Gaussian
centred where the projector of :mod:`nanorecon.refine` puts the atom: at pixel
``(N // 2, N // 2) + ((R_k x)_{x,y} + shift_k) / pixel`` (columns x, rows y; see
:mod:`nanorecon.geometry`). Only a small window around each projected atom is rendered, so a
model image costs O(atoms × window) and all derivatives are analytic.

Model of image ``k``::

    M_k(u) = b_k + s_k · Σ_i A_{e(i)} · G(u − c_ik; σ_{e(i)})

with per-species integrated intensity ``A_e`` and width ``σ_e``, per-image scale ``s_k`` (mean 1)
and offset ``b_k``. The least-squares fit alternates three blocks: (s_k, b_k) in closed form,
(A_e, σ_e) by damped Gauss–Newton, and all atom positions together by damped Gauss–Newton whose
normal equations are solved by conjugate gradients (matrix-free, block-Jacobi preconditioned).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module

__all__ = ["PositionRefinement", "project_atoms", "refine_positions"]

# Window pixels (atoms × images × w²) per chunk: bounds the work arrays to ~30 MB each.
_CHUNK_ELEMENTS = 4_000_000
# Starting widths scanned when none is given [px].
_WIDTH_SCAN_PX = np.geomspace(0.6, 3.0, 9)


@dataclass(frozen=True)
class PositionRefinement:
    """Result of :func:`refine_positions`.

    Attributes
    ----------
    positions_A : ndarray of shape (N, 3)
        Refined (x, y, z) in the map frame [Å].
    displacement_A : ndarray of shape (N, 3)
        Refined minus starting positions [Å].
    sigma_A : ndarray of shape (N, 3)
        Position uncertainty per coordinate (x, y, z) [Å]: the square root of the diagonal of
        each atom's inverse 3 × 3 (weighted) Gauss–Newton block times the reduced χ². Correlations with
        overlapping neighbours are ignored, so it is a lower bound.
    species : tuple
        The distinct species labels, in the order of `amplitudes` and `widths_A`.
    amplitudes : ndarray of shape (S,)
        Integrated intensity of one atom of each species in one image [image units · px²].
    widths_A : ndarray of shape (S,)
        Gaussian σ of each species' projected atom [Å] (probe, thermal motion and residual blur).
    scales : ndarray of shape (n,)
        Per-image scale ``s_k`` (mean 1).
    offsets : ndarray of shape (n,)
        Per-image offset ``b_k`` [image units].
    rms_history : ndarray of shape (iterations + 1,)
        RMS residual per pixel after the start and after each iteration [image units]
        (unweighted: with the Poisson noise model the weighted cost falls at every iteration,
        this need not).
    n_iterations : int
        Iterations run.
    converged : bool
        Whether the relative cost decrease of the last iteration fell below the tolerance.
    """

    positions_A: np.ndarray
    displacement_A: np.ndarray
    sigma_A: np.ndarray
    species: tuple
    amplitudes: np.ndarray
    widths_A: np.ndarray
    scales: np.ndarray
    offsets: np.ndarray
    rms_history: np.ndarray
    n_iterations: int
    converged: bool


def _erf(xp: Any) -> Callable:
    if xp is np:
        from scipy.special import erf

        return erf
    from cupyx.scipy.special import erf  # pragma: no cover - GPU only

    return erf  # pragma: no cover - GPU only


class _Geometry:
    """Projection of atoms into the images and the windows they cover."""

    def __init__(self, xp: Any, matrices: np.ndarray, shifts_A: np.ndarray, shape, pixel_size_A):
        self.xp = xp
        self.n_images = len(matrices)
        self.ny, self.nx = (int(s) for s in shape)
        self.pixel_size_A = float(pixel_size_A)
        # Rows 0 and 1 of R: microscope x and y of a map vector.
        self.rows = xp.asarray(matrices[:, :2, :] / self.pixel_size_A)  # (K, 2, 3) [px/Å]
        centre = np.array([self.nx // 2, self.ny // 2], dtype=np.float64)
        self.origin = xp.asarray(centre + shifts_A / self.pixel_size_A)  # (K, 2) [px]
        self.n_pixels = self.n_images * self.ny * self.nx

    def centres(self, positions_A: Any) -> Any:
        """(N, K, 2) projected centres (column, row) [px]."""
        return self.xp.einsum("kcj,nj->nkc", self.rows, positions_A) + self.origin[None]


class _Windows:
    """Pixel-integrated 1D Gaussian factors of every atom in every image, on a w × w window."""

    def __init__(self, geometry: _Geometry, positions_A: Any, sigma_px: Any, half_width: int):
        xp = geometry.xp
        erf = _erf(xp)
        g = geometry
        w = 2 * half_width + 1
        if w > min(g.ny, g.nx):
            raise ValueError(
                f"atom windows of {w} px do not fit the {g.ny} × {g.nx} images; the widths "
                "are too large for the images"
            )
        self.geometry, self.w = g, w
        c = g.centres(positions_A)  # (N, K, 2)
        start = xp.rint(c) - half_width
        start_x = xp.clip(start[..., 0], 0, g.nx - w).astype(xp.int64)
        start_y = xp.clip(start[..., 1], 0, g.ny - w).astype(xp.int64)
        k = xp.arange(g.n_images, dtype=xp.int64)[None, :]
        self.base = (k * g.ny + start_y) * g.nx + start_x  # (N, K)
        offsets = xp.arange(w, dtype=xp.int64)
        self.offsets = offsets[:, None] * g.nx + offsets[None, :]  # (w, w)
        sigma = xp.asarray(sigma_px, dtype=xp.float64)[:, None, None]
        factors = []
        for axis, first in ((0, start_x), (1, start_y)):
            # Pixel edges relative to the centre; pixel j spans [j - ½, j + ½].
            edges = first[..., None] + xp.arange(w + 1, dtype=xp.float64) - 0.5 - c[..., axis, None]
            cdf = 0.5 * erf(edges / (math.sqrt(2.0) * sigma))
            pdf = xp.exp(-0.5 * (edges / sigma) ** 2) / (math.sqrt(2.0 * math.pi) * sigma)
            value = cdf[..., 1:] - cdf[..., :-1]
            d_centre = pdf[..., :-1] - pdf[..., 1:]
            # d/dσ Φ(t/σ) = -t φ(t/σ) / σ².
            tp = edges * pdf / sigma
            d_sigma = tp[..., :-1] - tp[..., 1:]
            factors.append((value, d_centre, d_sigma))
        (self.gx, self.dgx, self.sgx), (self.gy, self.dgy, self.sgy) = factors
        self.n_atoms = self.base.shape[0]
        per_atom = max(1, g.n_images * w * w)
        self.chunk = max(1, _CHUNK_ELEMENTS // per_atom)

    def slices(self):
        for start in range(0, self.n_atoms, self.chunk):
            yield slice(start, min(start + self.chunk, self.n_atoms))

    def index(self, sl: slice) -> Any:
        return self.base[sl, :, None, None] + self.offsets

    def scatter(self, values: Callable[[slice], Any]) -> Any:
        """Sum window values ``values(sl)`` of shape (n, K, w, w) into flat images."""
        xp = self.geometry.xp
        out = xp.zeros(self.geometry.n_pixels, dtype=xp.float64)
        for sl in self.slices():
            out += xp.bincount(
                self.index(sl).ravel(), weights=values(sl).ravel(), minlength=out.size
            )
        return out

    def gather(self, flat: Any, sl: slice) -> Any:
        """Windows (n, K, w, w) of the flat images for the atoms of `sl`."""
        return flat[self.index(sl)]


def _check_geometry(n: int, rotations, shifts_A) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrices (n, 3, 3) and shifts (n, 2) [Å], checked."""
    if isinstance(rotations, Rotation):
        matrices = rotations.as_matrix().reshape(-1, 3, 3)
    else:
        matrices = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    if n >= 0 and len(matrices) != n:
        raise ValueError(f"rotations must hold one rotation per image ({n}), got {len(matrices)}")
    if not np.allclose(matrices @ matrices.transpose(0, 2, 1), np.eye(3), atol=1e-6):
        raise ValueError("rotations must be orthonormal 3x3 matrices")
    n = len(matrices)
    shifts = np.zeros((n, 2)) if shifts_A is None else np.asarray(shifts_A, dtype=np.float64)
    if shifts.shape != (n, 2):
        raise ValueError(f"shifts_A must have shape ({n}, 2), got {shifts.shape}")
    if not np.isfinite(shifts).all():
        raise ValueError("shifts_A contain NaN or infinite values")
    return matrices, shifts


def _check_positions(positions_A) -> np.ndarray:
    positions = np.asarray(positions_A, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
        raise ValueError(f"positions_A must have shape (N, 3) with N >= 1, got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions_A contain NaN or infinite values")
    return positions


def _check_inputs(images, rotations, shifts_A, positions_A, species, pixel_size_A):
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, ny, nx), got {tuple(images.shape)}")
    if not bool(xp.isfinite(images).all()):
        raise ValueError("images contain NaN or infinite values")
    matrices, shifts = _check_geometry(images.shape[0], rotations, shifts_A)
    positions = _check_positions(positions_A)
    labels = np.asarray(species)
    if labels.shape != (len(positions),):
        raise ValueError(
            f"species must hold one label per atom ({len(positions)}), got shape {labels.shape}"
        )
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    return xp, images, matrices, shifts, positions, labels


def project_atoms(
    positions_A: ArrayLike,
    weights: ArrayLike,
    rotations: Rotation | ArrayLike,
    shifts_A: ArrayLike | None = None,
    *,
    shape: Sequence[int],
    pixel_size_A: float,
    width_A: float | ArrayLike,
    window_sigmas: float = 4.5,
    device: str = "cpu",
) -> Any:
    """Project Gaussian atoms into images with the geometry of the Fourier-slice projector.

    Atom ``i`` appears in image ``k`` as a pixel-integrated 2D Gaussian of integral
    ``weights[i]`` centred at pixel ``(nx // 2, ny // 2) + ((R_k x_i)_{x,y} + shift_k) / pixel``
    (column, row), the place where :class:`nanorecon.refine.FourierSliceProjector` projects a map
    voxel at ``x_i`` (origin on voxel N // 2). Only ``window_sigmas`` σ around each atom are
    rendered.

    Parameters
    ----------
    positions_A : array_like of shape (N, 3)
        (x, y, z) in the map frame [Å].
    weights : array_like of shape (N,)
        Integrated intensity of each atom [image units · px²].
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image.
    shifts_A : array_like of shape (n, 2), optional
        ``(shift_x_A, shift_y_A)``: the map origin appears at the image centre plus this [Å].
    shape : (int, int)
        (ny, nx) [px].
    pixel_size_A : float
        Pixel edge [Å].
    width_A : float or array_like of shape (N,)
        Gaussian σ [Å].
    window_sigmas : float, optional
        Half-width of the rendered window [σ].
    device : {"cpu", "gpu"}, optional
        numpy or cupy.

    Returns
    -------
    ndarray of shape (n, ny, nx)
        float64 images, numpy or cupy.

    Examples
    --------
    >>> from scipy.spatial.transform import Rotation
    >>> img = project_atoms([[1.0, 0.0, 0.0]], [1.0], Rotation.from_euler("z", [90], degrees=True),
    ...                     shape=(16, 16), pixel_size_A=0.5, width_A=0.5)[0]
    >>> [int(i) for i in np.unravel_index(img.argmax(), img.shape)], round(float(img.sum()), 6)
    ([10, 8], 1.0)
    """
    xp = get_array_module(device)
    ny, nx = (int(s) for s in shape)
    matrices, shifts = _check_geometry(-1, rotations, shifts_A)
    positions = _check_positions(positions_A)
    if not pixel_size_A > 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (len(positions),))
    sigma = np.broadcast_to(np.asarray(width_A, dtype=np.float64), (len(positions),))
    if not (sigma > 0).all():
        raise ValueError("width_A must be positive")
    geometry = _Geometry(xp, matrices, shifts, (ny, nx), pixel_size_A)
    sigma_px = sigma / float(pixel_size_A)
    half = int(math.ceil(window_sigmas * float(sigma_px.max())))
    windows = _Windows(geometry, xp.asarray(positions), xp.asarray(sigma_px), half)
    wx = xp.asarray(w)
    flat = windows.scatter(
        lambda sl: (
            wx[sl, None, None, None] * windows.gy[sl, :, :, None] * windows.gx[sl, :, None, :]
        )
    )
    return flat.reshape(geometry.n_images, ny, nx)


class _Problem:
    """State of the least-squares fit and its blocks."""

    def __init__(self, xp, data, geometry, positions, index, n_species, window_sigmas):
        self.xp, self.data, self.geometry = xp, data, geometry
        self.positions = positions  # (N, 3) xp [Å]
        self.index = index  # (N,) species index, xp
        self.n_species = n_species
        self.window_sigmas = window_sigmas
        self.amplitudes = np.ones(n_species)
        self.sigma_px = np.ones(n_species)
        self.scales = np.ones(geometry.n_images)
        self.offsets = np.zeros(geometry.n_images)
        # Inverse noise variance per pixel (None: uniform).
        self.weights: Any = None

    def weighted(self, x: Any) -> Any:
        return x if self.weights is None else self.weights * x

    def update_weights(self, model: Any) -> tuple[float, float]:
        """Poisson-like noise: variance ``α + β (M − b_k)₊`` fitted to the squared residuals."""
        xp, k = self.xp, self.geometry.n_images
        signal = xp.clip(model.reshape(k, -1) - xp.asarray(self.offsets)[:, None], 0.0, None)
        signal = signal.ravel()
        r2 = (self.data - model) ** 2
        a = xp.stack([xp.ones_like(signal), signal])
        alpha, beta = (float(v) for v in asnumpy(xp.linalg.solve(a @ a.T, a @ r2)))
        mean = float(r2.mean())
        # A variance floor keeps faint pixels from dominating when α is poorly determined.
        alpha, beta = max(alpha, 0.05 * mean), max(beta, 0.0)
        self.weights = mean / (alpha + beta * signal)
        return alpha, beta

    # --- rendering ---------------------------------------------------------------------------
    def update_windows(self, positions=None) -> _Windows:
        xp = self.xp
        positions = self.positions if positions is None else positions
        sigma = xp.asarray(self.sigma_px)[self.index]
        half = max(1, int(math.ceil(self.window_sigmas * float(self.sigma_px.max()))))
        return _Windows(self.geometry, positions, sigma, half)

    def atom_weights(self) -> Any:
        """(N, K) factor s_k A_e(i) of every window."""
        xp = self.xp
        return xp.asarray(self.amplitudes)[self.index][:, None] * xp.asarray(self.scales)[None, :]

    def model(self, windows: _Windows, amplitudes=None, scales=None, offsets=None) -> Any:
        xp, g = self.xp, self.geometry
        a = self.amplitudes if amplitudes is None else amplitudes
        s = self.scales if scales is None else scales
        b = self.offsets if offsets is None else offsets
        weight = xp.asarray(a)[self.index][:, None] * xp.asarray(s)[None, :]
        flat = windows.scatter(
            lambda sl: (
                weight[sl, :, None, None] * windows.gy[sl, :, :, None] * windows.gx[sl, :, None, :]
            )
        )
        flat = flat.reshape(g.n_images, -1) + xp.asarray(b)[:, None]
        return flat.ravel()

    def cost(self, model) -> float:
        r = self.data - model
        return float(r @ self.weighted(r))

    # --- block 1: per-image scale and offset -------------------------------------------------
    def solve_scale_offset(self, windows: _Windows) -> None:
        xp, k = self.xp, self.geometry.n_images
        unit = self.model(windows, scales=np.ones(k), offsets=np.zeros(k)).reshape(k, -1)
        d = self.data.reshape(k, -1)
        w = xp.ones_like(d) if self.weights is None else self.weights.reshape(k, -1)
        m = w.sum(axis=1)
        su, sd = (w * unit).sum(axis=1), (w * d).sum(axis=1)
        suu, sud = (w * unit * unit).sum(axis=1), (w * unit * d).sum(axis=1)
        det = m * suu - su * su
        scales = asnumpy((m * sud - su * sd) / xp.where(det > 0, det, 1.0))
        scales = np.where(asnumpy(det) > 0, scales, 1.0)
        offsets = asnumpy((sd - xp.asarray(scales) * su) / m)
        # The overall scale belongs to the amplitudes: keep mean(s_k) = 1.
        mean = float(np.mean(scales))
        if mean > 0:
            self.amplitudes = self.amplitudes * mean
            scales = scales / mean
        self.scales, self.offsets = scales, offsets

    # --- block 2: species amplitudes and widths ----------------------------------------------
    def species_jacobian(self, windows: _Windows, fit_widths: bool) -> Any:
        """(P, n_pixels) columns ∂M/∂A_e and (with widths) ∂M/∂σ_e."""
        xp = self.xp
        columns = []
        scale = xp.asarray(self.scales)[None, :, None, None]
        for e in range(self.n_species):
            mask = (self.index == e).astype(xp.float64)[:, None, None, None]
            columns.append(
                windows.scatter(
                    lambda sl, mask=mask: (
                        mask[sl] * scale * windows.gy[sl, :, :, None] * windows.gx[sl, :, None, :]
                    )
                )
            )
        if fit_widths:
            for e in range(self.n_species):
                factor = (self.index == e).astype(xp.float64) * float(self.amplitudes[e])
                factor = factor[:, None, None, None]
                columns.append(
                    windows.scatter(
                        lambda sl, factor=factor: (
                            factor[sl]
                            * scale
                            * (
                                windows.sgy[sl, :, :, None] * windows.gx[sl, :, None, :]
                                + windows.gy[sl, :, :, None] * windows.sgx[sl, :, None, :]
                            )
                        )
                    )
                )
        return xp.stack(columns)

    def without_offsets(self, columns: Any) -> Any:
        """Columns minus their (weighted) mean per image: the offsets absorb constants."""
        k = self.geometry.n_images
        c = columns.reshape(len(columns), k, -1)
        if self.weights is None:
            mean = c.mean(axis=2, keepdims=True)
        else:
            w = self.weights.reshape(1, k, -1)
            mean = (w * c).sum(axis=2, keepdims=True) / w.sum(axis=2, keepdims=True)
        return (c - mean).reshape(len(columns), -1)

    def step_species(self, windows, model, fit_widths, lam) -> tuple[_Windows, Any, float, float]:
        jac = self.species_jacobian(windows, fit_widths)
        r = self.data - model
        jc = self.without_offsets(jac)
        wj = self.weighted(jc)
        h = asnumpy(wj @ jc.T)
        g = asnumpy(wj @ r)
        cost = float(r @ self.weighted(r))
        for _ in range(6):
            a = h + lam * np.diag(np.diag(h)) + 1e-12 * np.trace(h) * np.eye(len(h))
            delta = np.linalg.solve(a, g)
            amplitudes = np.maximum(self.amplitudes + delta[: self.n_species], 1e-6)
            sigma = self.sigma_px
            if fit_widths:
                sigma = np.clip(sigma + delta[self.n_species :], 0.5 * sigma, 2.0 * sigma)
                sigma = np.clip(sigma, 0.25, None)
            old = (self.amplitudes, self.sigma_px)
            self.amplitudes, self.sigma_px = amplitudes, sigma
            trial_windows = self.update_windows() if fit_widths else windows
            trial_model = self.model(trial_windows)
            trial = self.cost(trial_model)
            if trial < cost:
                return trial_windows, trial_model, trial, max(lam / 3.0, 1e-6)
            self.amplitudes, self.sigma_px = old
            lam *= 10.0
        return windows, model, cost, lam

    # --- block 3: positions ------------------------------------------------------------------
    def position_operators(self, windows: _Windows):
        """J v, Jᵀ r and the 3 × 3 blocks JᵢᵀJᵢ for the positions."""
        xp, g = self.xp, self.geometry
        weight = self.atom_weights()  # (N, K)
        r0, r1 = g.rows[:, 0, :], g.rows[:, 1, :]  # (K, 3) [px/Å]

        def jv(v: Any) -> Any:
            ax = weight * (v @ r0.T)  # (N, K): ∂c_x along v, times s A
            ay = weight * (v @ r1.T)
            return windows.scatter(
                lambda sl: (
                    ax[sl, :, None, None] * windows.gy[sl, :, :, None] * windows.dgx[sl, :, None, :]
                    + ay[sl, :, None, None]
                    * windows.dgy[sl, :, :, None]
                    * windows.gx[sl, :, None, :]
                )
            )

        def jt(r: Any) -> Any:
            out = xp.zeros((windows.n_atoms, 3), dtype=xp.float64)
            for sl in windows.slices():
                rw = windows.gather(r, sl)
                ex = xp.einsum("nka,nkab,nkb->nk", windows.gy[sl], rw, windows.dgx[sl])
                ey = xp.einsum("nka,nkab,nkb->nk", windows.dgy[sl], rw, windows.gx[sl])
                out[sl] = (weight[sl] * ex) @ r0 + (weight[sl] * ey) @ r1
            return out

        if self.weights is None:
            sxx = (windows.gy**2).sum(-1) * (windows.dgx**2).sum(-1)
            syy = (windows.dgy**2).sum(-1) * (windows.gx**2).sum(-1)
            sxy = (windows.gy * windows.dgy).sum(-1) * (windows.gx * windows.dgx).sum(-1)
        else:
            sxx, syy, sxy = (xp.zeros(weight.shape) for _ in range(3))
            for sl in windows.slices():
                ww = windows.gather(self.weights, sl)
                gy, gx, dgy, dgx = (
                    f[sl] for f in (windows.gy, windows.gx, windows.dgy, windows.dgx)
                )
                sxx[sl] = xp.einsum("nka,nkab,nkb->nk", gy**2, ww, dgx**2)
                syy[sl] = xp.einsum("nka,nkab,nkb->nk", dgy**2, ww, gx**2)
                sxy[sl] = xp.einsum("nka,nkab,nkb->nk", gy * dgy, ww, gx * dgx)
        w2 = weight**2
        blocks = (
            xp.einsum("nk,ki,kj->nij", w2 * sxx, r0, r0)
            + xp.einsum("nk,ki,kj->nij", w2 * syy, r1, r1)
            + xp.einsum("nk,ki,kj->nij", w2 * sxy, r0, r1)
            + xp.einsum("nk,ki,kj->nij", w2 * sxy, r1, r0)
        )
        return jv, jt, blocks

    def step_positions(
        self, windows, model, lam, *, max_step_A, cg_iterations
    ) -> tuple[_Windows, Any, float, float]:
        xp = self.xp
        jv, jt, blocks = self.position_operators(windows)
        r = self.data - model
        cost = float(r @ self.weighted(r))
        grad = jt(self.weighted(r))
        ridge = 1e-9 * xp.trace(blocks, axis1=1, axis2=2)[:, None, None] * xp.eye(3)
        blocks = blocks + ridge
        for _ in range(6):
            damped = blocks * (1.0 + lam)
            precond = xp.linalg.inv(damped)

            def apply(v, lam=lam):
                return jt(self.weighted(jv(v))) + lam * xp.einsum("nij,nj->ni", blocks, v)

            delta = _pcg(apply, grad, precond, cg_iterations, xp)
            norm = xp.linalg.norm(delta, axis=1, keepdims=True)
            delta = delta * xp.minimum(1.0, max_step_A / xp.maximum(norm, 1e-30))
            trial_positions = self.positions + delta
            trial_windows = self.update_windows(trial_positions)
            trial_model = self.model(trial_windows)
            trial = self.cost(trial_model)
            if trial < cost:
                self.positions = trial_positions
                return trial_windows, trial_model, trial, max(lam / 3.0, 1e-6)
            lam *= 10.0
        return windows, model, cost, lam


def _pcg(apply: Callable, b: Any, precond: Any, n_iterations: int, xp: Any) -> Any:
    """Preconditioned conjugate gradients for the (N, 3) system ``apply(x) = b``."""
    x = xp.zeros_like(b)
    r = b.copy()
    z = xp.einsum("nij,nj->ni", precond, r)
    p = z.copy()
    rz = float(xp.sum(r * z))
    start = rz
    for _ in range(n_iterations):
        ap = apply(p)
        pap = float(xp.sum(p * ap))
        if pap <= 0:
            break
        alpha = rz / pap
        x += alpha * p
        r -= alpha * ap
        z = xp.einsum("nij,nj->ni", precond, r)
        rz_new = float(xp.sum(r * z))
        if rz_new <= 1e-8 * start:
            break
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def refine_positions(
    images: Any,
    rotations: Rotation | ArrayLike,
    shifts_A: ArrayLike | None,
    positions_A: ArrayLike,
    species: ArrayLike,
    *,
    pixel_size_A: float,
    width_A: float | None = None,
    n_iterations: int = 15,
    fit_widths: bool = True,
    max_step_A: float = 0.2,
    cg_iterations: int = 15,
    tolerance: float = 1e-5,
    window_sigmas: float = 4.0,
    noise_model: str = "poisson",
    callback: Callable[[int, float], None] | None = None,
) -> PositionRefinement:
    """Refine atom positions by least squares against the measured projections.

    The traced atoms (positions + species) model every image as Gaussian atoms (module notes):
    per-species integrated intensity and width, per-image scale and offset (background removal
    and normalisation of the tomography front end leave both unknown). Each iteration re-fits
    the noise model (`noise_model`), solves the scale and offset of every image in closed
    form, takes one damped Gauss–Newton step on the species' intensities (and widths) and one
    on all positions together: the normal
    equations ``(JᵀJ + λD) δ = Jᵀr`` are solved by at most `cg_iterations` conjugate-gradient
    steps preconditioned by the atoms' 3 × 3 blocks, and a step that raises the cost is retried
    with 10 × the damping. The images, not a reconstruction, constrain the positions, so the
    missing wedge's elongation of the map along z does not bias them.

    Parameters
    ----------
    images : ndarray of shape (n, ny, nx)
        Measured, aligned projections (numpy or cupy; the fit runs on the same device).
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image (:mod:`nanorecon.geometry`).
    shifts_A : array_like of shape (n, 2) or None
        ``(shift_x_A, shift_y_A)`` per image [Å] (zero when None).
    positions_A : array_like of shape (N, 3)
        Starting (x, y, z) in the map frame, origin on voxel N // 2 [Å].
    species : array_like of shape (N,)
        Species label per atom (e.g. element symbols); atoms of one species share intensity and
        width.
    pixel_size_A : float
        Pixel edge [Å].
    width_A : float, optional
        Starting Gaussian σ of all species [Å]; by default the best of a scan over 0.6–3 px.
    n_iterations : int, optional
        Most iterations.
    fit_widths : bool, optional
        Refine the species' widths as well as their intensities.
    max_step_A : float, optional
        Largest move of one atom in one iteration [Å]: keeps atoms from jumping between sites.
    cg_iterations : int, optional
        Conjugate-gradient steps per Gauss–Newton step.
    tolerance : float, optional
        Stop when an iteration lowers the cost by less than this fraction.
    window_sigmas : float, optional
        Half-width of each atom's rendered window [σ].
    noise_model : {"poisson", "uniform"}, optional
        ``"poisson"``: weighted least squares with the pixel variance ``α + β (M − b_k)₊``
        (counting noise of the signal over a constant floor), α and β fitted to the squared
        residuals at the start of every iteration; faint atoms next to bright ones gain most.
        ``"uniform"``: ordinary least squares.
    callback : callable, optional
        ``callback(iteration, rms)`` after the start (0) and after every iteration.

    Returns
    -------
    PositionRefinement

    Raises
    ------
    ValueError
        On non-finite images, positions or shifts, or mismatched lengths.

    References
    ----------
    Y. Yang et al., "Deciphering chemical order/disorder and material properties at the single-atom
    level", Nature 542, 75 (2017). doi:10.1038/nature21042

    Examples
    --------
    >>> from scipy.spatial.transform import Rotation
    >>> rot = Rotation.from_euler("y", [[-60], [0], [60]], degrees=True)
    >>> truth = np.array([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0]])
    >>> images = 5.0 * project_atoms(truth, [1, 1], rot, shape=(24, 24), pixel_size_A=0.4,
    ...                              width_A=0.4)
    >>> fit = refine_positions(images, rot, None, truth + [0.0, 0.0, 0.1], ["Pt", "Pt"],
    ...                        pixel_size_A=0.4, width_A=0.4)
    >>> bool(np.abs(fit.positions_A - truth).max() < 1e-3)
    True
    """
    xp, data, matrices, shifts, positions, labels = _check_inputs(
        images, rotations, shifts_A, positions_A, species, pixel_size_A
    )
    if n_iterations < 0 or cg_iterations < 1:
        raise ValueError("n_iterations must be >= 0 and cg_iterations >= 1")
    if width_A is not None and not width_A > 0:
        raise ValueError(f"width_A must be positive, got {width_A}")
    if not max_step_A > 0:
        raise ValueError(f"max_step_A must be positive, got {max_step_A}")
    if noise_model not in ("poisson", "uniform"):
        raise ValueError(f"noise_model must be 'poisson' or 'uniform', not {noise_model!r}")
    names, index = np.unique(labels, return_inverse=True)
    geometry = _Geometry(xp, matrices, shifts, data.shape[1:], pixel_size_A)
    problem = _Problem(
        xp,
        data.astype(xp.float64).ravel(),
        geometry,
        xp.asarray(positions),
        xp.asarray(index),
        len(names),
        window_sigmas,
    )

    # Start: width by scan (or given), intensities linear given the width, then scale/offset.
    candidates = _WIDTH_SCAN_PX if width_A is None else [width_A / pixel_size_A]
    best = None
    for sigma in candidates:
        problem.sigma_px = np.full(len(names), float(sigma))
        problem.amplitudes = np.ones(len(names))
        problem.scales, problem.offsets = np.ones(geometry.n_images), np.zeros(geometry.n_images)
        windows = problem.update_windows()
        problem.amplitudes = _linear_amplitudes(problem, windows)
        problem.solve_scale_offset(windows)
        cost = problem.cost(problem.model(windows))
        if best is None or cost < best[0]:
            best = (cost, problem.sigma_px.copy(), problem.amplitudes.copy(), problem.scales.copy())
    problem.sigma_px, problem.amplitudes, problem.scales = best[1], best[2], best[3]
    windows = problem.update_windows()
    problem.solve_scale_offset(windows)
    model = problem.model(windows)
    cost = problem.cost(model)
    n_pixels = data.size
    history = [math.sqrt(cost / n_pixels)]
    if callback is not None:
        callback(0, history[-1])

    lam_species, lam_positions, converged, iteration = 1e-3, 1e-3, False, 0
    for iteration in range(1, n_iterations + 1):
        if noise_model == "poisson":
            problem.update_weights(model)
        problem.solve_scale_offset(windows)
        model = problem.model(windows)
        previous = problem.cost(model)
        windows, model, cost, lam_species = problem.step_species(
            windows, model, fit_widths, lam_species
        )
        windows, model, cost, lam_positions = problem.step_positions(
            windows, model, lam_positions, max_step_A=max_step_A, cg_iterations=cg_iterations
        )
        residual = problem.data - model
        history.append(math.sqrt(float(residual @ residual) / n_pixels))
        if callback is not None:
            callback(iteration, history[-1])
        if previous - cost <= tolerance * previous:
            converged = True
            break

    _, _, blocks = problem.position_operators(windows)
    n_parameters = 3 * len(positions) + 2 * len(names) + 2 * geometry.n_images
    noise = cost / max(n_pixels - n_parameters, 1)
    blocks = asnumpy(blocks)
    ridge = 1e-12 * np.trace(blocks, axis1=1, axis2=2)[:, None, None] * np.eye(3)
    variance = np.einsum("nii->ni", np.linalg.inv(blocks + ridge)) * noise
    refined = asnumpy(problem.positions)
    return PositionRefinement(
        positions_A=refined,
        displacement_A=refined - positions,
        sigma_A=np.sqrt(np.clip(variance, 0.0, None)),
        species=tuple(names.tolist()),
        amplitudes=problem.amplitudes.copy(),
        widths_A=problem.sigma_px * float(pixel_size_A),
        scales=problem.scales.copy(),
        offsets=problem.offsets.copy(),
        rms_history=np.asarray(history),
        n_iterations=iteration,
        converged=converged,
    )


def _linear_amplitudes(problem: _Problem, windows: _Windows) -> np.ndarray:
    """Species intensities by linear least squares with a free offset per image (scale 1)."""
    jc = problem.without_offsets(problem.species_jacobian(windows, fit_widths=False))
    wj = problem.weighted(jc)
    h = asnumpy(wj @ jc.T)
    g = asnumpy(wj @ problem.data)
    amplitudes = np.linalg.solve(h + 1e-12 * np.trace(h) * np.eye(len(h)), g)
    return np.maximum(amplitudes, 1e-6 * max(float(np.abs(amplitudes).max()), 1e-30))
