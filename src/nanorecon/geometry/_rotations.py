"""Converters between rotations, RELION ZYZ Euler angles, quaternions and tilt angles."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation


def rotations_from_euler(angles_deg: ArrayLike) -> Rotation:
    """Rotations from RELION-style ZYZ Euler angles.

    Parameters
    ----------
    angles_deg : array_like of shape (N, 3) or (3,)
        ``(rot, tilt, psi)`` [deg].

    Returns
    -------
    Rotation
        Map frame → microscope frame (see :mod:`nanorecon.geometry`).

    Examples
    --------
    >>> r = rotations_from_euler([0.0, 90.0, 0.0])
    >>> np.round(r.apply([0.0, 0.0, 1.0]), 6)  # the map's z axis lies along -x after a 90° tilt
    array([-1.,  0.,  0.])
    """
    return Rotation.from_euler("ZYZ", np.asarray(angles_deg, dtype=float), degrees=True).inv()


def euler_from_rotations(rotations: Rotation) -> np.ndarray:
    """RELION-style ZYZ Euler angles ``(rot, tilt, psi)`` [deg] of map → microscope rotations."""
    return rotations.inv().as_euler("ZYZ", degrees=True)


def rotations_from_quaternions(quaternions: ArrayLike) -> Rotation:
    """Rotations from scalar-last quaternions ``(qx, qy, qz, qw)``."""
    return Rotation.from_quat(np.asarray(quaternions, dtype=float))


def quaternions_from_rotations(rotations: Rotation) -> np.ndarray:
    """Scalar-last quaternions ``(qx, qy, qz, qw)`` with ``qw >= 0`` (one of the two signs, fixed)."""
    return rotations.as_quat(canonical=True)


def tilt_series_rotations(tilt_angles_deg: ArrayLike, *, tilt_axis_deg: float = 0.0) -> Rotation:
    """Orientations of a single-axis tilt series.

    Parameters
    ----------
    tilt_angles_deg : array_like of shape (N,)
        Specimen tilt per image [deg]; an active right-handed rotation about the map's +y axis.
    tilt_axis_deg : float, optional
        Direction of the tilt axis in the images, counter-clockwise from the image y axis [deg].

    Returns
    -------
    Rotation
        N rotations ``Rz(tilt_axis_deg) · Ry(θ_k)``, map frame → microscope frame.

    Examples
    --------
    >>> r = tilt_series_rotations([0.0, 30.0])
    >>> np.allclose(r[0].as_matrix(), np.eye(3))
    True
    """
    tilts = np.atleast_1d(np.asarray(tilt_angles_deg, dtype=float))
    if tilts.ndim != 1:
        raise ValueError(f"tilt_angles_deg must be one-dimensional, got shape {tilts.shape}")
    in_plane = Rotation.from_euler("z", float(tilt_axis_deg), degrees=True)
    return in_plane * Rotation.from_euler("y", tilts[:, None], degrees=True)
