"""Tilt-series figures: alignment corrections per image and a montage of the raw images."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from nanorecon.geometry import rotations_from_quaternions, tilt_series_rotations

from ._style import image_panel, new_figure

__all__ = ["alignment_corrections", "plot_alignment", "plot_tilt_series"]


def alignment_corrections(
    orientations: pd.DataFrame, tilt_angles_deg: ArrayLike, *, tilt_axis_deg: float = 0.0
) -> pd.DataFrame:
    """Per-image corrections of the refined orientations relative to the goniometer's.

    The correction ``ΔR = R_refined · R_nominal⁻¹`` (microscope frame, see
    :mod:`nanorecon.geometry`) is given as a rotation vector along three axes: the tilt axis as it
    lies in the image (``Rz(tilt_axis_deg) ŷ``), the beam (z) and the in-plane axis perpendicular
    to the tilt axis.

    Parameters
    ----------
    orientations : DataFrame
        ``qx, qy, qz, qw, shift_x_A, shift_y_A`` per image (``orientations.parquet``).
    tilt_angles_deg : array_like of shape (N,)
        Nominal tilt of every image [deg].
    tilt_axis_deg : float, optional
        Tilt-axis direction of the nominal orientations [deg].

    Returns
    -------
    DataFrame
        ``tilt_deg, shift_x_A, shift_y_A, tilt_correction_deg, in_plane_correction_deg,
        perpendicular_correction_deg`` per image.
    """
    tilts = np.asarray(tilt_angles_deg, dtype=float)
    if len(orientations) != len(tilts):
        raise ValueError(f"{len(orientations)} orientations but {len(tilts)} tilt angles")
    refined = rotations_from_quaternions(orientations[["qx", "qy", "qz", "qw"]].to_numpy())
    nominal = tilt_series_rotations(tilts, tilt_axis_deg=tilt_axis_deg)
    vectors = np.rad2deg((refined * nominal.inv()).as_rotvec())
    axis_rotation = Rotation.from_euler("z", tilt_axis_deg, degrees=True)
    axes = axis_rotation.apply(np.eye(3))  # columns of the in-image frame
    return pd.DataFrame(
        {
            "tilt_deg": tilts,
            "shift_x_A": orientations["shift_x_A"].to_numpy(dtype=float),
            "shift_y_A": orientations["shift_y_A"].to_numpy(dtype=float),
            "tilt_correction_deg": vectors @ axes[1],
            "in_plane_correction_deg": vectors @ axes[2],
            "perpendicular_correction_deg": vectors @ axes[0],
        }
    )


def plot_alignment(
    orientations: pd.DataFrame,
    tilt_angles_deg: ArrayLike,
    *,
    tilt_axis_deg: float = 0.0,
    reconstruction_log: pd.DataFrame | None = None,
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """Tilt-series alignment: shifts, angle corrections and scores per image; refinement error.

    Parameters
    ----------
    orientations : DataFrame
        ``orientations.parquet`` of the particle.
    tilt_angles_deg : array_like of shape (N,)
        Nominal tilt of every image [deg].
    tilt_axis_deg : float, optional
        Tilt-axis direction of the nominal orientations [deg].
    reconstruction_log : DataFrame, optional
        ``iteration, error`` and optionally ``stage, round`` (``reconstruction_log.csv``): the
        projection error per iteration, one line per stage and round.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    table = alignment_corrections(orientations, tilt_angles_deg, tilt_axis_deg=tilt_axis_deg)
    fig = new_figure("alignment", figsize_in)
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    ax.plot(table.tilt_deg, table.shift_x_A, "o-", label="shift x")
    ax.plot(table.tilt_deg, table.shift_y_A, "s-", label="shift y")
    ax.set_title("image shifts")
    ax.set_ylabel("shift [Å]")
    ax = axes[0, 1]
    ax.plot(table.tilt_deg, table.tilt_correction_deg, "o-", label="about the tilt axis")
    ax.plot(table.tilt_deg, table.in_plane_correction_deg, "s-", label="in plane (about the beam)")
    ax.plot(table.tilt_deg, table.perpendicular_correction_deg, "^-", label="about the ⊥ axis")
    ax.set_title(f"angle corrections (nominal tilt axis {tilt_axis_deg:.2f}°)")
    ax.set_ylabel("correction [deg]")
    ax = axes[1, 0]
    if "score" in orientations and orientations["score"].notna().any():
        used = orientations.get("used", pd.Series(True, index=orientations.index)).to_numpy(bool)
        score = orientations["score"].to_numpy(dtype=float)
        ax.plot(table.tilt_deg[used], score[used], "o-", label="used")
        if (~used).any():
            ax.plot(table.tilt_deg[~used], score[~used], "x", color="r", label="not used")
    ax.set_title("projection-matching score")
    ax.set_ylabel("score [1]")
    for ax in (axes[0, 0], axes[0, 1], axes[1, 0]):
        ax.set_xlabel("nominal tilt [deg]")
        ax.axhline(0.0, color="0.8", linewidth=0.8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    ax = axes[1, 1]
    if reconstruction_log is not None and len(reconstruction_log):
        log = reconstruction_log
        keys = [c for c in ("stage", "round") if c in log.columns]
        for key, rows in log.groupby(keys, sort=False) if keys else [((), log)]:
            parts = key if isinstance(key, tuple) else (key,)
            label = " ".join(
                f"round {v}" if name == "round" and v >= 0 else str(v)
                for name, v in zip(keys, parts, strict=True)
                if not (name == "round" and v < 0)
            )
            ax.plot(rows["iteration"], rows["error"], marker=".", label=label or "error")
        ax.legend(fontsize="small", ncols=2)
    ax.set_title("reconstruction error per iteration")
    ax.set_xlabel("iteration [1]")
    ax.set_ylabel("relative projection error [1]")
    return fig


def plot_tilt_series(
    images: np.ndarray,
    tilt_angles_deg: ArrayLike,
    pixel_size_A: float,
    *,
    n_shown: int = 5,
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """A montage of raw tilt images, evenly spaced in the series, with their tilts.

    Parameters
    ----------
    images : ndarray of shape (N, Y, X)
        The tilt series (e.g. ``raw.zarr`` ``data``).
    tilt_angles_deg : array_like of shape (N,)
        [deg].
    pixel_size_A : float
        [Å].
    n_shown : int, optional
        Number of images shown.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    tilts = np.asarray(tilt_angles_deg, dtype=float)
    if images.ndim != 3 or len(images) != len(tilts):
        raise ValueError(f"need (N, Y, X) images and N tilts, got {images.shape}, {tilts.shape}")
    chosen = np.unique(np.linspace(0, len(tilts) - 1, min(n_shown, len(tilts))).round().astype(int))
    fig = new_figure("tilt_series", figsize_in)
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    for ax, index in zip(axes, chosen, strict=True):
        image_panel(ax, np.asarray(images[index]), pixel_size_A, title=f"{tilts[index]:+.1f}°")
    return fig
