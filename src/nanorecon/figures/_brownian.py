"""Brownian (liquid-cell) figures: particle tracks over a frame and orientation coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from ._style import add_scale_bar, image_panel, new_figure

__all__ = ["orientation_coverage", "plot_orientation_coverage", "plot_tracks"]


def plot_tracks(
    tracks: pd.DataFrame,
    *,
    image: np.ndarray | None = None,
    pixel_size_A: float | None = None,
    frame: int | None = None,
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """Particle tracks drawn over one movie frame.

    Parameters
    ----------
    tracks : DataFrame
        ``frame, track, x_A, y_A``: the particle centre per frame, in Å from the image centre
        (pixel N//2, as in :mod:`nanorecon.geometry`).
    image : ndarray of shape (Y, X), optional
        The frame drawn underneath (needs `pixel_size_A`).
    pixel_size_A : float, optional
        [Å].
    frame : int, optional
        Frame number of `image`; each track's position in it is circled.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    missing = [c for c in ("frame", "track", "x_A", "y_A") if c not in tracks.columns]
    if missing:
        raise ValueError(f"tracks table lacks columns {missing}")
    fig = new_figure("tracks", figsize_in)
    ax = fig.add_subplot()
    title = f"{tracks['track'].nunique()} tracks"
    if image is not None:
        if pixel_size_A is None:
            raise ValueError("give pixel_size_A with image")
        image_panel(ax, np.asarray(image), pixel_size_A, title=title)
    else:
        ax.set_title(title)
        ax.set_xlabel("x [Å]")
        ax.set_ylabel("y [Å]")
        ax.set_aspect("equal")
    for track, rows in tracks.sort_values("frame").groupby("track", sort=True):
        (line,) = ax.plot(rows["x_A"], rows["y_A"], "-", linewidth=1.2, label=f"track {track}")
        if frame is not None:
            now = rows[rows["frame"] == frame]
            ax.plot(now["x_A"], now["y_A"], "o", mfc="none", ms=14, color=line.get_color())
    if image is None:
        span = np.ptp(tracks[["x_A", "y_A"]].to_numpy(), axis=0).max()
        add_scale_bar(ax, float(max(span, 1.0)), color="black")
    if tracks["track"].nunique() <= 12:
        ax.legend(fontsize="small", loc="upper right")
    return fig


def _fibonacci_sphere(n: int) -> np.ndarray:
    index = np.arange(n) + 0.5
    z = 1.0 - 2.0 * index / n
    phi = np.pi * (1.0 + 5.0**0.5) * index
    r = np.sqrt(1.0 - z**2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def orientation_coverage(
    directions: ArrayLike,
    *,
    within_deg: float = 15.0,
    antipodal: bool = True,
    n_reference: int = 2000,
) -> float:
    """Fraction of the sphere of view directions that has a view within `within_deg`.

    Parameters
    ----------
    directions : array_like of shape (N, 3)
        View directions (x, y, z), any length (normalised here).
    within_deg : float, optional
        Angular radius counted as covered [deg].
    antipodal : bool, optional
        Count ``-d`` as seen when ``d`` is (a projection and its reverse hold the same
        information).
    n_reference : int, optional
        Evenly spread directions (Fibonacci sphere) at which coverage is tested.

    Returns
    -------
    float
        Covered fraction of the sphere, 0 to 1.
    """
    views = np.asarray(directions, dtype=float)
    if views.ndim != 2 or views.shape[1] != 3 or len(views) == 0:
        raise ValueError(f"directions must have shape (N>0, 3), not {views.shape}")
    norms = np.linalg.norm(views, axis=1)
    if not np.all(norms > 0):
        raise ValueError("directions must be non-zero")
    views = views / norms[:, None]
    if antipodal:
        views = np.vstack([views, -views])
    chord = 2.0 * np.sin(np.deg2rad(within_deg) / 2.0)
    distance, _ = cKDTree(views).query(_fibonacci_sphere(n_reference))
    return float(np.mean(distance <= chord))


def plot_orientation_coverage(
    directions: ArrayLike,
    *,
    within_deg: float = 15.0,
    antipodal: bool = True,
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """View directions on the sphere (Mollweide projection), with the covered fraction.

    Parameters
    ----------
    directions : array_like of shape (N, 3)
        View directions (x, y, z) in the particle's map frame.
    within_deg, antipodal : optional
        As in :func:`orientation_coverage`.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    coverage = orientation_coverage(directions, within_deg=within_deg, antipodal=antipodal)
    views = np.asarray(directions, dtype=float)
    views = views / np.linalg.norm(views, axis=1)[:, None]
    longitude = np.arctan2(views[:, 1], views[:, 0])
    latitude = np.arcsin(np.clip(views[:, 2], -1.0, 1.0))
    fig = new_figure("orientation_coverage", figsize_in)
    ax = fig.add_subplot(projection="mollweide")
    ax.scatter(longitude, latitude, s=6, alpha=0.6, label=f"{len(views)} views")
    if antipodal:
        ax.scatter(
            np.arctan2(-views[:, 1], -views[:, 0]),
            -latitude,
            s=6,
            alpha=0.3,
            color="tab:gray",
            label="antipodes",
        )
    ax.grid(True)
    ax.set_xlabel("azimuth [deg]")
    ax.set_ylabel("elevation [deg]")
    ax.set_title(f"view directions: {100 * coverage:.0f} % of the sphere within {within_deg:g}°")
    ax.legend(loc="lower right", fontsize="small")
    return fig
