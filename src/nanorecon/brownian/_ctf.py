"""CTF phase flipping of particle boxes (CTFFIND/RELION sign: positive defocus = underfocus)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nanorecon.backend import get_array_module, supported_float_type
from nanorecon.simulate import aberration_phase

__all__ = [
    "WIENER_CONSTANT",
    "ctf_sign",
    "phase_flip",
    "phase_flipped_transfer",
    "reconstruction_transfer",
]

#: Default ``λ`` of the Wiener-regularised reconstruction of phase-flipped images: each frequency
#: of the map is ``|sin χ| b / (sin² χ + λ)``, so frequencies transferred under ``√λ`` (the
#: lowest, in phase contrast) are left mostly to the real-space constraints.
WIENER_CONSTANT = 0.3


def ctf_sign(
    shape: tuple[int, int],
    pixel_size_A: float,
    *,
    voltage_kV: float,
    defocus_A: float,
    cs_mm: float,
    xp: Any = np,
) -> Any:
    """Sign of the phase-contrast transfer ``sin χ(k)`` on the ``rfft2`` grid of an image.

    ``χ(k) = π λ Δf k² - ½ π Cs λ³ k⁴`` (:func:`nanorecon.simulate.aberration_phase`, the
    simulator's formula). Envelopes are positive and do not change the sign. The zero frequency
    (and any exact zero of ``sin χ``) keeps sign +1 so that the mean survives flipping.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx) [px].
    pixel_size_A : float
        [Å].
    voltage_kV : float
        Accelerating voltage [kV].
    defocus_A : float
        Defocus, positive = underfocus [Å].
    cs_mm : float
        Spherical aberration [mm].
    xp : module, optional
        numpy or cupy.

    Returns
    -------
    ndarray of shape (ny, nx // 2 + 1)
        ±1 (float32).

    Examples
    --------
    >>> s = ctf_sign((8, 8), 0.36, voltage_kV=300, defocus_A=100, cs_mm=0.001)
    >>> s.shape, float(s[0, 0]), float(s[0, 1])
    ((8, 5), 1.0, 1.0)
    """
    if pixel_size_A <= 0:
        raise ValueError(f"pixel_size_A must be positive, not {pixel_size_A}")
    ky = xp.fft.fftfreq(int(shape[0]), d=pixel_size_A)[:, None]
    kx = xp.fft.rfftfreq(int(shape[1]), d=pixel_size_A)[None, :]
    k = xp.sqrt(kx**2 + ky**2)
    chi = aberration_phase(k, voltage_kV=voltage_kV, defocus_A=defocus_A, cs_mm=cs_mm)
    return xp.where(xp.sin(chi) < 0, -1.0, 1.0).astype(xp.float32)


def phase_flip(
    images: Any,
    pixel_size_A: float,
    *,
    voltage_kV: float,
    defocus_A: float,
    cs_mm: float,
) -> Any:
    """Multiply the Fourier transform of each image by ``sign(sin χ)`` (phase flipping).

    Parameters
    ----------
    images : ndarray of shape (Y, X) or (n, Y, X)
        Images (numpy or cupy).
    pixel_size_A : float
        [Å].
    voltage_kV, defocus_A, cs_mm : float
        Optics [kV], [Å] (positive = underfocus), [mm].

    Returns
    -------
    ndarray
        Phase-flipped images, same shape and array module (float32 or float64).

    References
    ----------
    J. A. Mindell, N. Grigorieff, J. Struct. Biol. 142, 334-347 (2003),
    doi:10.1016/S1047-8477(03)00069-8.
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim not in (2, 3):
        raise ValueError(f"images must have shape (Y, X) or (n, Y, X), not {images.shape}")
    dtype = supported_float_type(images.dtype)
    shape = images.shape[-2:]
    sign = ctf_sign(
        shape, pixel_size_A, voltage_kV=voltage_kV, defocus_A=defocus_A, cs_mm=cs_mm, xp=xp
    )
    out = xp.fft.irfft2(xp.fft.rfft2(images.astype(dtype, copy=False)) * sign, s=shape)
    return out.astype(dtype, copy=False)


def phase_flipped_transfer(ctf: dict[str, float]) -> Callable[[np.ndarray], np.ndarray]:
    """``|sin χ(k)|``: the amplitude each spatial frequency keeps in a phase-flipped image.

    Parameters
    ----------
    ctf : dict
        Optics: ``voltage_kV`` [kV], ``defocus_A`` [Å] (positive = underfocus), ``cs_mm`` [mm].

    Returns
    -------
    callable
        ``transfer(k)`` for spatial frequencies ``k`` [1/Å] (numpy arrays), the `transfer` of
        :func:`nanorecon.refine.reconstruct`.

    Examples
    --------
    >>> transfer = phase_flipped_transfer({"voltage_kV": 300, "defocus_A": 100, "cs_mm": 0.001})
    >>> [round(float(t), 2) for t in transfer(np.array([0.0, 0.1, 0.5]))]
    [0.0, 0.06, 1.0]
    """
    missing = {"voltage_kV", "defocus_A", "cs_mm"} - set(ctf)
    if missing:
        raise ValueError(f"ctf needs voltage_kV, defocus_A and cs_mm; missing {sorted(missing)}")
    optics = {key: float(ctf[key]) for key in ("voltage_kV", "defocus_A", "cs_mm")}

    def transfer(k: np.ndarray) -> np.ndarray:
        return np.abs(np.sin(aberration_phase(np.asarray(k, dtype=float), **optics)))

    return transfer


def reconstruction_transfer(
    transfer: Callable[[np.ndarray], np.ndarray] | None, wiener_constant: float = WIENER_CONSTANT
) -> dict[str, Any]:
    """Keywords of :func:`nanorecon.refine.reconstruct` for images with this transfer (none:
    plain reconstruction)."""
    if transfer is None:
        return {}
    return {"transfer": transfer, "wiener_constant": float(wiener_constant)}
