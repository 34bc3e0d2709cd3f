"""Scoring a tilt-series alignment and map against simulated ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import asnumpy
from ..refine import as_rotation_matrices
from ..simulate import atoms_to_volume

__all__ = ["TruthMap", "alignment_errors", "render_truth_map"]


def alignment_errors(
    rotations: Rotation | ArrayLike,
    shifts_A: ArrayLike,
    true_rotations: Rotation | ArrayLike,
    true_shifts_A: ArrayLike,
    *,
    pixel_size_A: float,
) -> pd.DataFrame:
    """Per-image orientation and shift errors, free of what projections cannot determine.

    Projections fix the map frame only up to a global rotation ``G`` and translation ``t``: the
    geometry ``(R_k G, s_k + (R_k t)_xy)`` explains the data as well as ``(R_k, s_k)``. So the
    common rotation (the mean of ``R_kᵀ R'_k``) is removed before measuring angles, and a
    least-squares global 3D translation plus a common in-plane shift (a fixed crop offset) are
    removed before measuring shifts.

    Parameters
    ----------
    rotations, true_rotations : Rotation or array_like of shape (n, 3, 3)
        Estimated and true orientations (map frame → microscope frame).
    shifts_A, true_shifts_A : array_like of shape (n, 2)
        Estimated and true ``(shift_x_A, shift_y_A)`` [Å] in the same image frame.
    pixel_size_A : float
        [Å].

    Returns
    -------
    DataFrame
        One row per image: ``image``, ``angle_error_deg``, ``shift_error_x_px``,
        ``shift_error_y_px``, ``shift_error_px``; the frame's ``attrs`` hold the removed
        ``global_rotation`` (Rotation) and ``global_translation_A`` ((x, y, z) [Å]).

    Examples
    --------
    >>> from nanorecon.geometry import tilt_series_rotations
    >>> r = tilt_series_rotations([-30.0, 0.0, 30.0])
    >>> g = Rotation.from_euler("x", 5, degrees=True)
    >>> table = alignment_errors(r * g, np.ones((3, 2)), r, np.zeros((3, 2)), pixel_size_A=0.5)
    >>> bool(table["angle_error_deg"].max() < 1e-9 and table["shift_error_px"].max() < 1e-9)
    True
    """
    estimated = Rotation.from_matrix(as_rotation_matrices(rotations))
    truth = Rotation.from_matrix(as_rotation_matrices(true_rotations))
    shifts, true_shifts = np.asarray(shifts_A, float), np.asarray(true_shifts_A, float)
    n = len(truth)
    if len(estimated) != n or shifts.shape != (n, 2) or true_shifts.shape != (n, 2):
        raise ValueError("rotations, shifts and their truths must describe the same images")
    relative = truth.inv() * estimated
    gauge = relative.mean()
    angles = np.degrees((gauge.inv() * relative).magnitude())
    # s' - s = (R_k t)_xy + c: a global translation t (3) and a common image offset c (2).
    design = np.concatenate(
        [truth.as_matrix()[:, :2, :], np.broadcast_to(np.eye(2), (n, 2, 2))], axis=2
    ).reshape(2 * n, 5)
    difference = (shifts - true_shifts).reshape(-1)
    solution = np.linalg.lstsq(design, difference, rcond=None)[0]
    residual = (difference - design @ solution).reshape(n, 2) / pixel_size_A
    table = pd.DataFrame(
        {
            "image": np.arange(n),
            "angle_error_deg": angles,
            "shift_error_x_px": residual[:, 0],
            "shift_error_y_px": residual[:, 1],
            "shift_error_px": np.linalg.norm(residual, axis=1),
        }
    )
    table.attrs["global_rotation"] = gauge
    table.attrs["global_translation_A"] = solution[:3]
    return table


@dataclass(frozen=True)
class TruthMap:
    """Outcome of :func:`render_truth_map`.

    Attributes
    ----------
    volume : ndarray of shape (N, N, N)
        The true atoms rendered in the reconstruction's frame (numpy).
    positions_A : ndarray of shape (M, 3)
        The true atoms' ``(x, y, z)`` in that frame [Å].
    translation_A : ndarray of shape (3,)
        Translation found by cross-correlation [Å].
    correlation : float
        Normalised cross-correlation of the rendered truth with the map.
    """

    volume: np.ndarray
    positions_A: np.ndarray
    translation_A: np.ndarray
    correlation: float


def render_truth_map(
    volume: Any,
    positions_A: ArrayLike,
    weights: ArrayLike,
    *,
    voxel_size_A: float,
    sigma_A: float,
    global_rotation: Rotation | None = None,
) -> TruthMap:
    """Render true atoms in a reconstruction's frame, aligned to it by cross-correlation.

    The reconstruction's frame is the truth's particle frame turned by the global rotation
    ``G`` that projection data leave free (from :func:`alignment_errors`: ``r_map = Gᵀ r``) and
    moved by an unknown translation. The atoms are turned by ``Gᵀ``, rendered, the translation
    is taken from the peak of the 3D cross-correlation with `volume` (integer peak refined by a
    parabola per axis), and the atoms are rendered again at the moved positions, so the final
    truth map is exact, not interpolated.

    Parameters
    ----------
    volume : ndarray of shape (N, N, N)
        Reconstructed map (z, y, x), numpy or cupy.
    positions_A : array_like of shape (M, 3)
        True atoms ``(x, y, z)`` in the particle frame [Å].
    weights : array_like of shape (M,)
        Relative scattering weight per atom (e.g. ``Z^1.7``).
    voxel_size_A : float
        [Å].
    sigma_A : float
        Gaussian width of the rendered atoms [Å] (probe ⊕ thermal blur of the data).
    global_rotation : Rotation, optional
        ``G``; identity when None.

    Returns
    -------
    TruthMap
    """
    volume = asnumpy(volume).astype(np.float64)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D, got shape {volume.shape}")
    positions = np.array(positions_A, dtype=float)  # a copy: pandas hands out read-only views
    if global_rotation is not None:
        positions = global_rotation.inv().apply(positions)
    weights = np.asarray(weights, dtype=float)
    rendered = atoms_to_volume(positions, weights, volume.shape, voxel_size_A, sigma_A)
    spectrum = np.fft.fftn(volume) * np.fft.fftn(rendered).conj()
    correlation = np.fft.ifftn(spectrum).real
    peak = np.array(np.unravel_index(np.argmax(correlation), correlation.shape))
    shift = np.zeros(3)
    for axis in range(3):
        values = [
            correlation[tuple(np.where(np.arange(3) == axis, (peak + d) % volume.shape, peak))]
            for d in (-1, 0, 1)
        ]
        curvature = values[0] - 2 * values[1] + values[2]
        vertex = 0.5 * (values[0] - values[2]) / curvature if curvature < 0 else 0.0
        wrapped = peak[axis] - volume.shape[axis] * (peak[axis] > volume.shape[axis] // 2)
        shift[axis] = wrapped + float(np.clip(vertex, -1, 1))
    translation = shift[::-1] * voxel_size_A  # (z, y, x) voxels → (x, y, z) Å
    positions = positions + translation
    rendered = atoms_to_volume(positions, weights, volume.shape, voxel_size_A, sigma_A)
    a, b = volume - volume.mean(), rendered - rendered.mean()
    score = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    return TruthMap(
        volume=rendered.astype(np.float32),
        positions_A=positions,
        translation_A=translation,
        correlation=score,
    )
