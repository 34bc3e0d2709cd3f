"""Batched least-squares fit of 3D Gaussians, elongated along z, to all peaks at once.

Parameters per peak: ``(A, pz, py, px, s_z, s_yx, b)``: amplitude, position relative to the
integer centre [voxel], widths along z and in the (y, x) plane [voxel], constant background.
"""

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


def _scaled_r2(rel, params):
    """Squared distance in units of the widths: (dz/s_z)² + (dy² + dx²)/s_yx²."""
    return rel[..., 0] ** 2 / params[:, None, 4] ** 2 + (rel[..., 1] ** 2 + rel[..., 2] ** 2) / (
        params[:, None, 5] ** 2
    )


def render(shape, centres, params, offsets, xp=np):
    """Sum of the fitted Gaussians (no background) on the grid, each over ``offsets`` around it."""
    pos = centres[:, None, :] + offsets[None, :, :]
    rel = offsets[None, :, :] - params[:, None, 1:4]
    g = params[:, None, 0] * xp.exp(-0.5 * _scaled_r2(rel, params))
    inside = xp.all((pos >= 0) & (pos < xp.asarray(shape)), axis=2)
    flat = (pos[..., 0] * shape[1] + pos[..., 1]) * shape[2] + pos[..., 2]
    total = xp.bincount(flat[inside], weights=g[inside], minlength=int(np.prod(shape)))
    return total.reshape(shape)


def own_model(params, offsets):
    """Each atom's own Gaussian (no background) on its offsets, shape (N, K)."""
    xp = get_array_module(params)
    rel = offsets[None, :, :] - params[:, None, 1:4]
    return params[:, None, 0] * xp.exp(-0.5 * _scaled_r2(rel, params))


def fit_gaussians(
    data,
    offsets,
    params,
    *,
    n_iterations: int = 30,
    max_shift: float = 1.5,
    fit_widths: bool = True,
):
    """Levenberg–Marquardt fit of ``A exp(−(o_z − p_z)²/2s_z² − |o_yx − p_yx|²/2s_yx²) + b`` to
    every row of ``data``.

    Parameters
    ----------
    data : array of shape (N, K)
        Values at ``offsets`` (K, 3) [voxel] around each peak's integer centre.
    params : array of shape (N, 7)
        Start values ``(A, pz, py, px, s_z, s_yx, b)``; p is relative to the integer centre,
        s_z and s_yx the widths [voxel].
    max_shift : float
        Position changes beyond this many voxels from the start are clipped.
    fit_widths : bool
        Fit the widths too; False keeps the start widths (a template shape), which is far more
        stable for weak peaks in voxel-scale noise.

    Returns
    -------
    params : (N, 7); residual_rms : (N,); covariance : (N, 7, 7) (scaled by the residual variance).
    """
    xp = get_array_module(data)
    o = offsets.astype(data.dtype)
    p = params.copy()
    start = p[:, 1:4].copy()
    lam = xp.full(len(p), 1e-3, dtype=data.dtype)
    eye = xp.eye(7, dtype=data.dtype)
    free = xp.ones(7, dtype=data.dtype)
    if not fit_widths:
        free[4:6] = 0.0
    fixed = eye * (1.0 - free)

    def model_and_jacobian(q):
        rel = o[None, :, :] - q[:, None, 1:4]
        sz, syx = q[:, None, 4], q[:, None, 5]
        rz2 = rel[..., 0] ** 2
        ryx2 = rel[..., 1] ** 2 + rel[..., 2] ** 2
        g = xp.exp(-0.5 * (rz2 / sz**2 + ryx2 / syx**2))
        ag = q[:, None, 0] * g
        jac = xp.stack(
            [
                g,
                ag * rel[..., 0] / sz**2,
                ag * rel[..., 1] / syx**2,
                ag * rel[..., 2] / syx**2,
                ag * rz2 / sz**3,
                ag * ryx2 / syx**3,
                xp.ones_like(g),
            ],
            axis=2,
        )
        return ag + q[:, None, 6], jac * free

    model, jac = model_and_jacobian(p)
    res = model - data
    cost = xp.sum(res**2, axis=1)
    for _ in range(n_iterations):
        jtj = xp.einsum("nki,nkj->nij", jac, jac)
        jtr = xp.einsum("nki,nk->ni", jac, res)
        diag = xp.einsum("nii->ni", jtj)[:, :, None] * eye
        step = xp.linalg.solve(
            jtj + lam[:, None, None] * (diag + 1e-12 * eye) + fixed, -jtr[..., None]
        )
        trial = p + step[..., 0]
        trial[:, 4:6] = xp.clip(trial[:, 4:6], 0.2, 10.0)
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
    variance = cost / max(k - 7, 1)
    jtj = xp.einsum("nki,nkj->nij", jac, jac) + 1e-12 * eye + fixed
    covariance = xp.linalg.inv(jtj) * variance[:, None, None] * free[:, None] * free[None, :]
    return p, xp.sqrt(cost / k), covariance
