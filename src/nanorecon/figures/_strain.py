"""Strain maps of consecutive atomic layers along a zone axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from ._maps import zone_axis_frame
from ._model import STRAIN_COMPONENTS, _check_atoms, strain_limit
from ._style import new_figure

__all__ = ["atomic_layers", "plot_strain_layers"]


def atomic_layers(
    atoms: pd.DataFrame, zone: ArrayLike = (0, 0, 1), *, n_layers: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Layer index of every atom along a zone axis, and the `n_layers` central consecutive layers.

    The layer of an atom is ``[uvw] · (h, k, l)`` of its lattice site (``h, k, l`` in units of
    a/2); the chosen layers are the `n_layers` consecutive occupied values whose atom count is
    largest (the middle of the particle).

    Parameters
    ----------
    atoms : DataFrame
        Columns ``h, k, l`` (integers, ``atoms.parquet``).
    zone : array_like of int, shape (3,)
        Zone axis ``[uvw]`` in crystal coordinates.
    n_layers : int, optional
        Number of consecutive layers.

    Returns
    -------
    layer : ndarray of shape (N,), int
        Layer index of every atom.
    chosen : ndarray of shape (n_layers,), int
        The chosen layer indices, in increasing order.
    """
    _check_atoms(atoms, ("h", "k", "l"))
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, not {n_layers}")
    hkl = atoms[["h", "k", "l"]].to_numpy()
    if not np.all(np.isfinite(hkl)):
        raise ValueError("h, k, l must be finite (atoms without a lattice site?)")
    layer = hkl.astype(np.int64) @ np.asarray(zone, dtype=np.int64)
    values = np.unique(layer)
    if len(values) < n_layers:
        raise ValueError(f"only {len(values)} layers along {list(zone)}, {n_layers} asked")
    counts = np.array([(layer == v).sum() for v in values])
    windows = np.convolve(counts, np.ones(n_layers, dtype=int), mode="valid")
    start = int(np.argmax(windows))
    return layer, values[start : start + n_layers]


def plot_strain_layers(
    atoms: pd.DataFrame,
    *,
    orientation_matrix: ArrayLike,
    zone: tuple[int, int, int] = (0, 0, 1),
    n_layers: int = 3,
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """All six strain components of consecutive atomic layers along a zone axis.

    One row per layer, one column per component (map-frame tensor components, in %); the atoms
    are drawn at their measured positions in the layer plane; one symmetric colour scale for all.

    Parameters
    ----------
    atoms : DataFrame
        ``x_A, y_A, z_A, h, k, l`` and :data:`STRAIN_COMPONENTS` (``atoms.parquet``).
    orientation_matrix : array_like of shape (3, 3)
        Crystal frame → map frame (``lattice.json``), for the in-plane axes.
    zone : tuple of int, optional
        Zone axis ``[uvw]`` normal to the layers.
    n_layers : int, optional
        Number of consecutive layers.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    _check_atoms(atoms, ("x_A", "y_A", "z_A", *STRAIN_COMPONENTS))
    layer, chosen = atomic_layers(atoms, zone, n_layers=n_layers)
    frame = zone_axis_frame(orientation_matrix, zone)
    in_plane = atoms[["x_A", "y_A", "z_A"]].to_numpy(dtype=float) @ frame[:, :2]
    strain = 100.0 * atoms[list(STRAIN_COMPONENTS)].to_numpy(dtype=float)
    selected = np.isin(layer, chosen)
    limit = 100.0 * strain_limit(strain[selected] / 100.0)
    norm = TwoSlopeNorm(0.0, -limit, limit)
    span = np.abs(in_plane[selected]).max() * 1.15 + 1.0
    fig = new_figure("strain_layers", figsize_in)
    axes = fig.subplots(len(chosen), len(STRAIN_COMPONENTS), squeeze=False)
    zone_name = "[" + "".join(str(v) for v in zone) + "]"
    for row, value in enumerate(chosen):
        members = layer == value
        for column, component in enumerate(STRAIN_COMPONENTS):
            ax = axes[row, column]
            scatter = ax.scatter(
                in_plane[members, 0],
                in_plane[members, 1],
                c=strain[members, column],
                cmap="RdBu_r",
                norm=norm,
                s=60,
                edgecolors="k",
                linewidths=0.3,
            )
            ax.set_aspect("equal")
            ax.set_xlim(-span, span)
            ax.set_ylim(-span, span)
            ax.set_title(f"{component}, layer {value} ({int(members.sum())} atoms)", fontsize=9)
            ax.set_xlabel("u [Å]")
            ax.set_ylabel("v [Å]")
    fig.colorbar(scatter, ax=axes, shrink=0.8, label="strain [%]")
    fig.suptitle(f"strain of {len(chosen)} consecutive layers along {zone_name}")
    return fig
