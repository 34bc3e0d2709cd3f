"""Ground-truth particles for the refine tests: Gaussian "atoms" rendered on a grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def _render_gaussians(positions_A, size, voxel_size_A, sigma_A):
    """Map (z, y, x) of unit-height 3D Gaussians at (x, y, z) positions [Å], centre at N // 2."""
    axis = (np.arange(size) - size // 2) * voxel_size_A
    volume = np.zeros((size,) * 3)
    for x, y, z in positions_A:
        gz = np.exp(-((axis - z) ** 2) / (2 * sigma_A**2))
        gy = np.exp(-((axis - y) ** 2) / (2 * sigma_A**2))
        gx = np.exp(-((axis - x) ** 2) / (2 * sigma_A**2))
        volume += gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return volume


def _real_space_projection(volume, matrix, *, order=3):
    """Reference line-integral projector: rotate by interpolation, then sum along microscope z."""
    size = volume.shape[0]
    flip = np.eye(3)[::-1]  # (x, y, z) <-> (z, y, x)
    # Output voxel at microscope r reads the map at Rᵀ r (map = R⁻¹ · microscope).
    matrix_zyx = flip @ matrix.T @ flip
    centre = np.full(3, size // 2, dtype=float)
    rotated = ndimage.affine_transform(
        volume, matrix_zyx, offset=centre - matrix_zyx @ centre, order=order, mode="constant"
    )
    return rotated.sum(axis=0)


@pytest.fixture(scope="session")
def fcc_particle():
    """79 fcc atoms (a = 3.92 Å, radius 6.5 Å, jitter 0.05 Å, σ 0.4 Å) on a 48³ grid of 0.4 Å."""
    rng = np.random.default_rng(7)
    cells = np.arange(-3, 4)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    grid = np.stack(np.meshgrid(cells, cells, cells, indexing="ij"), -1).reshape(-1, 1, 3)
    positions = ((grid + basis).reshape(-1, 3)) * 3.92
    positions = positions[np.linalg.norm(positions, axis=1) < 6.5]
    positions = positions + rng.normal(0, 0.05, positions.shape)
    size, voxel_size_A, sigma_A = 48, 0.4, 0.4
    volume = _render_gaussians(positions, size, voxel_size_A, sigma_A).astype(np.float32)
    return {
        "positions_A": positions,
        "volume": volume,
        "voxel_size_A": voxel_size_A,
        "sigma_A": sigma_A,
    }


@pytest.fixture(scope="session")
def render_gaussians():
    return _render_gaussians


@pytest.fixture(scope="session")
def real_space_projection():
    return _real_space_projection
