"""Test helpers: ase particles with surface relaxation and noise, rendered as Gaussian-atom maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
from ase.cluster import Octahedron
from ase.data import atomic_numbers
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def pt_particle(
    *,
    length: int = 7,
    cutoff: int = 2,
    a_A: float = 3.924,
    relaxation_A: float = -0.04,
    jitter_A: float = 0.03,
    seed: int = 0,
    element: str = "Pt",
) -> pd.DataFrame:
    """Truncated-octahedron particle centred at 0: outermost atoms (coordination < 12) move radially
    by ``relaxation_A``, the next layer by half that; every atom then gets Gaussian jitter."""
    atoms = Octahedron(element, length, cutoff, latticeconstant=a_A)
    pos = atoms.positions - atoms.positions.mean(axis=0)
    count = cKDTree(pos).query_ball_point(pos, 1.2 * a_A / np.sqrt(2.0), return_length=True) - 1
    surface = count < 12
    below = ~surface & (cKDTree(pos[surface]).query(pos)[0] < 1.1 * a_A / np.sqrt(2.0))
    radial = pos / np.maximum(np.linalg.norm(pos, axis=1, keepdims=True), 1e-9)
    pos = pos + radial * (relaxation_A * surface + 0.5 * relaxation_A * below)[:, None]
    pos = pos + np.random.default_rng(seed).normal(0.0, jitter_A, pos.shape)
    return pd.DataFrame({"x_A": pos[:, 0], "y_A": pos[:, 1], "z_A": pos[:, 2], "element": element})


def render_map(
    atoms: pd.DataFrame,
    *,
    voxel_size_A: float = 0.35,
    resolution_A: float = 0.7,
    box: int | None = None,
    noise: float = 0.0,
    z_exponent: float = 1.7,
    seed: int = 0,
) -> np.ndarray:
    """Sum of 3D Gaussians (FWHM = ``resolution_A``), peak height ∝ Z ** z_exponent normalised to
    Pt = 1, separable over z, y, x; index N//2 is 0 Å. Gaussian noise of standard deviation
    ``noise``."""
    pos = atoms[["x_A", "y_A", "z_A"]].to_numpy()
    if box is None:
        box = int(2 * np.ceil((np.abs(pos).max() + 4.0) / voxel_size_A))
    sigma = resolution_A / FWHM_PER_SIGMA
    axis = (np.arange(box) - box // 2) * voxel_size_A
    z = np.array([atomic_numbers[e] for e in atoms["element"]], float)
    weight = (z / 78.0) ** z_exponent
    gx = np.exp(-((axis[None, :] - pos[:, 0:1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((axis[None, :] - pos[:, 1:2]) ** 2) / (2 * sigma**2))
    gz = np.exp(-((axis[None, :] - pos[:, 2:3]) ** 2) / (2 * sigma**2))
    volume = np.einsum("n,nz,ny,nx->zyx", weight, gz, gy, gx, optimize=True)
    if noise:
        volume = volume + np.random.default_rng(seed).normal(0.0, noise, volume.shape)
    return volume.astype(np.float32)


def fcc_sphere(
    radius_A: float,
    *,
    euler_zyz_deg: tuple[float, float, float],
    shift_A: tuple[float, float, float],
    a_A: float = 3.92,
) -> np.ndarray:
    """Sites of an ideal fcc sphere about a site, turned (ZYZ Euler angles) and shifted off the
    axes: (N, 3) positions [Å]."""
    h = np.arange(-8, 9)
    hkl = np.stack(np.meshgrid(h, h, h, indexing="ij"), axis=-1).reshape(-1, 3)
    sites = hkl[hkl.sum(axis=1) % 2 == 0] * a_A / 2
    sites = sites[np.linalg.norm(sites, axis=1) <= radius_A]
    return Rotation.from_euler("zyz", euler_zyz_deg, degrees=True).apply(sites) + np.asarray(
        shift_A
    )
