"""Projection geometry: orientations, Euler-angle conventions and tilt-series geometry.

Conventions (written down once, used everywhere)
------------------------------------------------
* Positions are (x, y, z) in Å; arrays are indexed (z, y, x); the centre of an axis of length N is at
  index ``N // 2`` (the FFT centre), so a position of 0 Å lies on that voxel/pixel.
* An orientation is a rotation ``R`` (``scipy.spatial.transform.Rotation``) that maps the particle's map
  frame to the microscope frame: ``r_mic = R @ r_map``. The beam runs along microscope z and an image is the
  line integral along z: ``image(x, y) = ∫ ρ_map(R⁻¹ (x, y, z)) dz``; image rows are y, columns x.
* In-plane shifts ``(shift_x_A, shift_y_A)`` move the projected particle centre away from the image centre:
  the particle centre appears at ``centre + shift``.
* ZYZ Euler angles ``(rot, tilt, psi)`` in degrees are RELION's: ``R = Rz(psi)·Ry(tilt)·Rz(rot)`` as passive
  (frame) rotations, which is ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv()``.
* Quaternions are stored scalar-last ``(qx, qy, qz, qw)`` as scipy does.
* Tilt series: the map frame has the tilt axis along its y axis and the beam along its z axis at zero tilt.
  Image k is taken at tilt ``θ_k`` (active right-handed rotation of the specimen about +y) and the tilt axis
  appears in the image rotated by ``tilt_axis_deg`` from the image y axis (counter-clockwise, IMOD-style):
  ``R_k = Rz(tilt_axis_deg) · Ry(θ_k)``.
"""

from ._coverage import largest_fourier_gap_deg
from ._rotations import (
    euler_from_rotations,
    quaternions_from_rotations,
    rotations_from_euler,
    rotations_from_quaternions,
    tilt_series_rotations,
)

__all__ = [
    "euler_from_rotations",
    "largest_fourier_gap_deg",
    "quaternions_from_rotations",
    "rotations_from_euler",
    "rotations_from_quaternions",
    "tilt_series_rotations",
]
