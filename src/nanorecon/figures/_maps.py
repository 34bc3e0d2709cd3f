"""Central slices and projections of a map along its axes and along crystal zone axes."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from nanorecon.backend import asnumpy, get_array_module, get_ndimage_module

from ._style import image_panel, new_figure

__all__ = [
    "ZONE_AXES",
    "plot_map_views",
    "plot_zone_axis_views",
    "zone_axis_frame",
    "zone_axis_volume",
]

#: zone axes drawn by :func:`plot_zone_axis_views`, with two in-plane crystal directions each
ZONE_AXES: dict[tuple[int, int, int], tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    (1, 0, 0): ((0, 1, 0), (0, 0, 1)),
    (1, 1, 0): ((-1, 1, 0), (0, 0, 1)),
    (1, 1, 1): ((1, -1, 0), (1, 1, -2)),
}

# axes of a (z, y, x) map: (name of the viewing axis, image rows, image columns) per array axis
_AXIS_VIEWS = ((0, "z", "y", "x"), (1, "y", "z", "x"), (2, "x", "z", "y"))


def zone_axis_frame(orientation_matrix: ArrayLike, zone: ArrayLike) -> np.ndarray:
    """Orthonormal view frame whose third axis is a crystal zone axis, in map coordinates.

    Parameters
    ----------
    orientation_matrix : array_like of shape (3, 3)
        Crystal frame → map frame (``lattice.json`` ``orientation_matrix``; a lattice site at cell
        coordinates ``s`` lies at ``origin + a · R s``).
    zone : array_like of int, shape (3,)
        Zone axis ``[uvw]``; one of :data:`ZONE_AXES` or any other direction.

    Returns
    -------
    ndarray of shape (3, 3)
        Columns: the view's x, y and z (viewing direction) axes in map (x, y, z) coordinates.
    """
    rotation = np.asarray(orientation_matrix, dtype=float)
    if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
        raise ValueError("orientation_matrix must be a 3×3 rotation matrix")
    w = np.asarray(zone, dtype=float)
    if w.shape != (3,) or not np.any(w):
        raise ValueError(f"zone must be a non-zero [uvw], not {zone}")
    key = tuple(int(v) for v in np.asarray(zone))
    if key in ZONE_AXES:
        u = np.asarray(ZONE_AXES[key][0], dtype=float)
    else:
        # any direction perpendicular to the zone axis will do
        u = np.cross(w, [0.0, 0.0, 1.0] if abs(w[2]) < 0.9 * np.linalg.norm(w) else [1.0, 0, 0])
    w = w / np.linalg.norm(w)
    u = u - (u @ w) * w
    u /= np.linalg.norm(u)
    basis = np.column_stack([u, np.cross(w, u), w])
    return rotation @ basis


def zone_axis_volume(
    volume: Any, orientation_matrix: ArrayLike, zone: ArrayLike, *, order: int = 1
) -> Any:
    """Resample a map into the view frame of a zone axis (viewing direction = array axis 0).

    The output voxel at view position ``p`` (x, y, z) [voxels from the centre N//2] holds the map
    at ``F p``, with ``F`` from :func:`zone_axis_frame`; summing over axis 0 then projects the map
    along the zone axis, with image rows along the view's y and columns along its x.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
        Map, numpy or cupy.
    orientation_matrix : array_like of shape (3, 3)
        Crystal frame → map frame.
    zone : array_like of int, shape (3,)
        Zone axis ``[uvw]``.
    order : int, optional
        Spline order of the interpolation.

    Returns
    -------
    ndarray of shape (Z, Y, X)
        Same array module as `volume`; zero outside the map.
    """
    xp, ndi = get_array_module(volume), get_ndimage_module(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), not shape {volume.shape}")
    frame = zone_axis_frame(orientation_matrix, zone)
    # (x, y, z) positions ↔ (z, y, x) indices: reverse both sides of the frame
    matrix = frame[::-1, ::-1]
    centre = np.array([n // 2 for n in volume.shape], dtype=float)
    offset = centre - matrix @ centre
    out = ndi.affine_transform(
        volume.astype(xp.float32, copy=False),
        xp.asarray(matrix),
        offset=tuple(offset),
        order=order,
        mode="constant",
        cval=0.0,
    )
    return out


def plot_map_views(
    volume: Any, voxel_size_A: float, *, figsize_in: tuple[float, float] | None = None
) -> Figure:
    """Central slices (top row) and projections (bottom row) along the map's z, y and x axes.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
        Map, numpy or cupy.
    voxel_size_A : float
        Voxel edge length [Å].
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    volume = asnumpy(volume).astype(np.float32, copy=False)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), not shape {volume.shape}")
    fig = new_figure("map_axes", figsize_in)
    axes = fig.subplots(2, 3)
    for column, (axis, name, rows, cols) in enumerate(_AXIS_VIEWS):
        central = np.take(volume, volume.shape[axis] // 2, axis=axis)
        projection = volume.sum(axis=axis) * voxel_size_A
        labels = {"xlabel": f"{cols} [Å]", "ylabel": f"{rows} [Å]"}
        artist = image_panel(
            axes[0, column], central, voxel_size_A, title=f"central slice ⊥ {name}", **labels
        )
        fig.colorbar(artist, ax=axes[0, column], shrink=0.8, label="density [map units]")
        artist = image_panel(
            axes[1, column], projection, voxel_size_A, title=f"projection along {name}", **labels
        )
        fig.colorbar(artist, ax=axes[1, column], shrink=0.8, label="projected density [· Å]")
    return fig


def plot_zone_axis_views(
    volume: Any,
    voxel_size_A: float,
    *,
    orientation_matrix: ArrayLike,
    zones: tuple[tuple[int, int, int], ...] = tuple(ZONE_AXES),
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """Central slices and projections of the map along the particle's own zone axes.

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
        Map, numpy or cupy.
    voxel_size_A : float
        Voxel edge length [Å].
    orientation_matrix : array_like of shape (3, 3)
        Crystal frame → map frame (``lattice.json``).
    zones : tuple of [uvw], optional
        Zone axes, by default [100], [110] and [111].
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    fig = new_figure("map_zone_axes", figsize_in)
    axes = fig.subplots(2, len(zones), squeeze=False)
    for column, zone in enumerate(zones):
        view = asnumpy(zone_axis_volume(volume, orientation_matrix, zone))
        name = "[" + "".join(str(v) if v >= 0 else f"-{-v}" for v in zone) + "]"
        image_panel(
            axes[0, column],
            view[view.shape[0] // 2],
            voxel_size_A,
            title=f"central slice ⊥ {name}",
            xlabel="u [Å]",
            ylabel="v [Å]",
        )
        artist = image_panel(
            axes[1, column],
            view.sum(axis=0) * voxel_size_A,
            voxel_size_A,
            title=f"projection along {name}",
            xlabel="u [Å]",
            ylabel="v [Å]",
        )
        fig.colorbar(artist, ax=axes[1, column], shrink=0.8, label="projected density [· Å]")
    return fig
