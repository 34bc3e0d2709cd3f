"""Batched least-squares fit of isotropic 3D Gaussians to all peaks at once."""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module


def sphere_offsets(radius_vox: float, xp=np):
    """Integer (z, y, x) offsets within a sphere of ``radius_vox`` voxels, shape (K, 3)."""
    h = int(np.ceil(radius_vox))
    grid = np.stack(np.meshgrid(*(np.arange(-h, h + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)
    return xp.asarray(grid[np.sum(grid**2, axis=1) <= radius_vox**2 + 1e-9])


def gather(volume, centres, offsets):
    """Values of ``volume`` at ``centres[:, None] + offsets`` (zero outside), shape (N, K)."""
    xp = get_array_module(volume)
    idx = centres[:, None, :] + offsets[None, :, :]
    shape = xp.asarray(volume.shape)
    inside = xp.all((idx >= 0) & (idx < shape), axis=2)
    idx = xp.clip(idx, 0, shape - 1)
    values = volume[idx[..., 0], idx[..., 1], idx[..., 2]]
    return xp.where(inside, values, 0.0)


def render(shape, centres, params, offsets, xp=np):
    """Sum of the fitted Gaussians (no background) on the grid, each over ``offsets`` around it."""
    pos = centres[:, None, :] + offsets[None, :, :]
    rel = offsets[None, :, :] - params[:, None, 1:4]
    g = params[:, None, 0] * xp.exp(-xp.sum(rel**2, axis=2) / (2.0 * params[:, None, 4] ** 2))
    inside = xp.all((pos >= 0) & (pos < xp.asarray(shape)), axis=2)
    flat = (pos[..., 0] * shape[1] + pos[..., 1]) * shape[2] + pos[..., 2]
    total = xp.bincount(flat[inside], weights=g[inside], minlength=int(np.prod(shape)))
    return total.reshape(shape)


def own_model(params, offsets):
    """Each atom's own Gaussian (no background) on its offsets, shape (N, K)."""
    xp = get_array_module(params)
    rel = offsets[None, :, :] - params[:, None, 1:4]
    return params[:, None, 0] * xp.exp(-xp.sum(rel**2, axis=2) / (2.0 * params[:, None, 4] ** 2))


def fit_gaussians(data, offsets, params, *, n_iterations: int = 30, max_shift: float = 1.5):
    """Levenberg–Marquardt fit of ``A exp(−|o − p|² / 2s²) + b`` to every row of ``data``.

    Parameters
    ----------
    data : array of shape (N, K)
        Values at ``offsets`` (K, 3) [voxel] around each peak's integer centre.
    params : array of shape (N, 6)
        Start values ``(A, pz, py, px, s, b)``; p is relative to the integer centre,
        s the width [voxel].
    max_shift : float
        Position changes beyond this many voxels from the start are clipped.

    Returns
    -------
    params : (N, 6); residual_rms : (N,); covariance : (N, 6, 6) (scaled by the residual variance).
    """
    xp = get_array_module(data)
    o = offsets.astype(data.dtype)
    p = params.copy()
    start = p[:, 1:4].copy()
    lam = xp.full(len(p), 1e-3, dtype=data.dtype)
    eye = xp.eye(6, dtype=data.dtype)

    def model_and_jacobian(q):
        rel = o[None, :, :] - q[:, None, 1:4]
        r2 = xp.sum(rel**2, axis=2)
        s = q[:, None, 4]
        g = xp.exp(-r2 / (2.0 * s**2))
        ag = q[:, None, 0] * g
        jac = xp.stack(
            [
                g,
                ag * rel[..., 0] / s**2,
                ag * rel[..., 1] / s**2,
                ag * rel[..., 2] / s**2,
                ag * r2 / s**3,
                xp.ones_like(g),
            ],
            axis=2,
        )
        return ag + q[:, None, 5], jac

    model, jac = model_and_jacobian(p)
    res = model - data
    cost = xp.sum(res**2, axis=1)
    for _ in range(n_iterations):
        jtj = xp.einsum("nki,nkj->nij", jac, jac)
        jtr = xp.einsum("nki,nk->ni", jac, res)
        diag = xp.einsum("nii->ni", jtj)[:, :, None] * eye
        step = xp.linalg.solve(jtj + lam[:, None, None] * (diag + 1e-12 * eye), -jtr[..., None])
        trial = p + step[..., 0]
        trial[:, 4] = xp.clip(trial[:, 4], 0.2, 10.0)
        trial[:, 1:4] = xp.clip(trial[:, 1:4], start - max_shift, start + max_shift)
        t_model, t_jac = model_and_jacobian(trial)
        t_res = t_model - data
        t_cost = xp.sum(t_res**2, axis=1)
        better = t_cost < cost
        p = xp.where(better[:, None], trial, p)
        res = xp.where(better[:, None], t_res, res)
        jac = xp.where(better[:, None, None], t_jac, jac)
        cost = xp.where(better, t_cost, cost)
        lam = xp.where(better, lam * 0.3, lam * 10.0)
        lam = xp.clip(lam, 1e-9, 1e9)
    k = data.shape[1]
    variance = cost / max(k - 6, 1)
    jtj = xp.einsum("nki,nkj->nij", jac, jac) + 1e-12 * eye
    covariance = xp.linalg.inv(jtj) * variance[:, None, None]
    return p, xp.sqrt(cost / k), covariance
