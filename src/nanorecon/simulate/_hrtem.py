"""HRTEM image formation: electron optics, projected potentials, weak-phase contrast transfer.

Projected potentials
--------------------
The electron scattering factor of each element is the five-Gaussian fit of Peng et al. (1996),
Table 1 (0 ≤ s ≤ 2 Å⁻¹): ``f(s) = Σ a_i exp(-b_i s²)`` [Å], ``s = k / 2``. Its 2D inverse Fourier
transform gives the projected potential as a sum of 2D Gaussians,

``V_z(r) = Σ_i 47.878 · a_i · (4π / b_i) · exp(-4π² r² / b_i)`` [V·Å],

i.e. Gaussian i has integrated weight ``47.878 · a_i`` [V·Å³] (``h² / (2π m0 e)`` = 47.878 V·Å²) and
standard deviation ``√(b_i / 8π²)`` [Å]; thermal vibration adds ``σ_th²`` to each variance.

Contrast
--------
Phase ``φ = σ(V) · V_z`` with the relativistic interaction constant σ. Weak-phase image
``I = 1 - 2 · φ ⊛ F⁻¹[sin χ(k) · E(k) · MTF(k)]`` with
``χ(k) = π λ Δf k² - ½ π Cs λ³ k⁴`` (Δf > 0 underfocus, CTFFIND/RELION), temporal envelope
``exp(-½ π² λ² Δ² k⁴)`` (focal spread Δ) and spatial envelope
``exp(-(π α / λ)² (Δf λ k - Cs λ³ k³)²)`` (illumination semi-angle α).

References
----------
L.-M. Peng, G. Ren, S. L. Dudarev, M. J. Whelan, Acta Cryst. A52, 257-276 (1996),
doi:10.1107/S0108767395014371.
E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 3rd ed. (2020),
doi:10.1007/978-3-030-33260-0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from nanorecon.backend import get_array_module

from ._render import project_gaussians

# Physical constants (CODATA 2018).
_H = 6.62607015e-34  # J s
_M0 = 9.1093837015e-31  # kg
_E = 1.602176634e-19  # C
_C = 299792458.0  # m/s
_MC2_EV = _M0 * _C**2 / _E  # rest energy [eV]

#: h² / (2π m0 e) [V·Å²]: ∫ V d³r = this · f(0).
POTENTIAL_PREFACTOR_VA2 = 47.878

#: Peng et al. (1996), Table 1: (a_1..a_5 [Å], b_1..b_5 [Å²]).
PENG_1996: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "H": ((0.0349, 0.1201, 0.1970, 0.0573, 0.1195), (0.5347, 3.5867, 12.3471, 18.9525, 38.6269)),
    "C": ((0.0893, 0.2563, 0.7570, 1.0487, 0.3575), (0.2465, 1.7100, 6.4094, 18.6113, 50.2523)),
    "O": ((0.0974, 0.2921, 0.6910, 0.6990, 0.2039), (0.2067, 1.3815, 4.6943, 12.7105, 32.4726)),
    "Fe": ((0.3946, 1.2725, 1.7031, 2.3140, 1.4795), (0.2717, 2.0443, 7.6007, 29.9714, 86.2265)),
    "Co": ((0.4118, 1.3161, 1.6493, 2.1930, 1.2830), (0.2742, 2.0372, 7.7205, 29.9680, 84.9383)),
    "Ni": ((0.3860, 1.1765, 1.5451, 2.0730, 1.3814), (0.2478, 1.7660, 6.3107, 25.2204, 74.3146)),
    "Cu": ((0.4314, 1.3208, 1.5236, 1.4671, 0.8562), (0.2694, 1.9223, 7.3474, 28.9892, 90.6246)),
    "Ru": ((0.6735, 1.4934, 3.0966, 2.7254, 1.5597), (0.2773, 1.9716, 7.3249, 26.6891, 90.5581)),
    "Rh": ((0.6413, 1.3690, 2.9854, 2.6952, 1.5433), (0.2580, 1.7721, 6.3854, 23.2549, 85.1517)),
    "Pd": ((0.5904, 1.1775, 2.6519, 2.2875, 0.8689), (0.2324, 1.5019, 5.1591, 15.5428, 46.8213)),
    "Ag": ((0.6377, 1.3790, 2.8294, 2.3631, 1.4553), (0.2466, 1.6974, 5.7656, 20.0943, 76.7372)),
    "Ir": ((1.0194, 2.0645, 3.4425, 3.4914, 1.6976), (0.2554, 1.6475, 6.5966, 23.2269, 70.0272)),
    "Pt": ((0.9148, 1.8096, 3.2134, 3.2953, 1.5754), (0.2263, 1.3813, 5.3243, 17.5987, 60.0171)),
    "Au": ((0.9674, 1.8916, 3.3993, 3.0524, 1.2607), (0.2358, 1.4712, 5.6758, 18.7119, 61.5286)),
}


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic electron wavelength ``h / √(2 m0 e V (1 + e V / 2 m0 c²))`` [Å].

    Examples
    --------
    >>> round(electron_wavelength_A(300.0), 5)
    0.01969
    """
    v = voltage_kV * 1e3
    return float(_H / np.sqrt(2 * _M0 * _E * v * (1 + _E * v / (2 * _M0 * _C**2))) * 1e10)


def interaction_constant(voltage_kV: float) -> float:
    """Interaction constant ``σ = 2π / (λ V) · (m0c² + eV) / (2 m0c² + eV)`` [rad/(V·Å)].

    Examples
    --------
    >>> round(interaction_constant(300.0) * 1e4, 3)
    6.526
    """
    v = voltage_kV * 1e3
    lam = electron_wavelength_A(voltage_kV)
    return float(2 * np.pi / (lam * v) * (_MC2_EV + v) / (2 * _MC2_EV + v))


def potential_gaussians(
    elements: ArrayLike, *, thermal_sigma_A: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Projected-potential Gaussians per atom (Peng et al. 1996).

    Returns
    -------
    weights_VA3 : ndarray of shape (N, 5)
        Integrated projected potential of each Gaussian [V·Å³].
    sigmas_A : ndarray of shape (N, 5)
        Standard deviations including thermal blur [Å].
    """
    symbols = np.asarray(elements).ravel()
    unique, inverse = np.unique(symbols, return_inverse=True)
    missing = [s for s in unique if s not in PENG_1996]
    if missing:
        raise ValueError(
            f"no projected-potential parameters for {missing}; available: {sorted(PENG_1996)}"
        )
    a = np.array([PENG_1996[s][0] for s in unique])
    b = np.array([PENG_1996[s][1] for s in unique])
    weights = POTENTIAL_PREFACTOR_VA2 * a
    sigmas = np.sqrt(b / (8 * np.pi**2) + thermal_sigma_A**2)
    return weights[inverse], sigmas[inverse]


def project_potential(
    positions_A: Any,
    elements: ArrayLike,
    *,
    shape: Sequence[int],
    pixel_size_A: float,
    thermal_sigma_A: float = 0.0,
    origin_A: Sequence[float] = (0.0, 0.0),
    dtype: Any = np.float64,
) -> Any:
    """Pixel-averaged projected potential ``V_z`` [V·Å] of atoms (x, y[, z]) [Å].

    Pixel ``(ny // 2, nx // 2)`` is centred on `origin_A` (x, y) [Å]; `dtype` sets the working
    precision (float32 is ~5× faster and ample for noisy images).
    """
    xp = get_array_module(positions_A)
    weights, sigmas = potential_gaussians(elements, thermal_sigma_A=thermal_sigma_A)
    positions = xp.repeat(
        xp.asarray(positions_A, dtype=np.float64)[:, :2], weights.shape[1], axis=0
    )
    image = project_gaussians(
        positions,
        xp.asarray(weights.ravel()),
        shape=shape,
        pixel_size_A=pixel_size_A,
        sigma_A=xp.asarray(sigmas.ravel()),
        origin_A=origin_A,
        dtype=dtype,
    )
    return image / pixel_size_A**2


def frequency_grid(shape: Sequence[int], pixel_size_A: float, *, xp: Any = np) -> Any:
    """|k| on the ``rfft2`` grid of an image (ny, nx) [1/Å]."""
    ky = xp.fft.fftfreq(int(shape[0]), d=pixel_size_A)[:, None]
    kx = xp.fft.rfftfreq(int(shape[1]), d=pixel_size_A)[None, :]
    return xp.sqrt(kx**2 + ky**2)


def aberration_phase(k: Any, *, voltage_kV: float, defocus_A: float, cs_mm: float) -> Any:
    """``χ(k) = π λ Δf k² - ½ π Cs λ³ k⁴`` [rad], Δf > 0 underfocus, `k` [1/Å]."""
    lam = electron_wavelength_A(voltage_kV)
    cs_A = cs_mm * 1e7
    return np.pi * lam * defocus_A * k**2 - 0.5 * np.pi * cs_A * lam**3 * k**4


def contrast_transfer(
    shape: Sequence[int],
    pixel_size_A: float,
    *,
    voltage_kV: float,
    defocus_A: float,
    cs_mm: float,
    focal_spread_A: float = 0.0,
    convergence_mrad: float = 0.0,
    detector_blur_px: float = 0.0,
    xp: Any = np,
) -> Any:
    """``sin χ(k) · E_t(k) · E_s(k) · MTF(k)`` on the ``rfft2`` grid (see the module notes).

    Examples
    --------
    >>> t = contrast_transfer((8, 8), 0.5, voltage_kV=300, defocus_A=100, cs_mm=0.001)
    >>> t.shape, float(t[0, 0])
    ((8, 5), 0.0)
    """
    k = frequency_grid(shape, pixel_size_A, xp=xp)
    lam = electron_wavelength_A(voltage_kV)
    cs_A = cs_mm * 1e7
    chi = aberration_phase(k, voltage_kV=voltage_kV, defocus_A=defocus_A, cs_mm=cs_mm)
    temporal = xp.exp(-0.5 * (np.pi * lam * focal_spread_A) ** 2 * k**4)
    alpha = convergence_mrad * 1e-3
    spatial = xp.exp(
        -((np.pi * alpha / lam) ** 2) * (defocus_A * lam * k - cs_A * lam**3 * k**3) ** 2
    )
    mtf = xp.exp(-2 * (np.pi * detector_blur_px * pixel_size_A) ** 2 * k**2)
    return xp.sin(chi) * temporal * spatial * mtf


def weak_phase_image(phase_rad: Any, transfer: Any) -> Any:
    """``I = 1 - 2 · φ ⊛ F⁻¹[transfer]`` (intensity relative to the incident beam)."""
    xp = get_array_module(phase_rad)
    filtered = xp.fft.irfft2(xp.fft.rfft2(phase_rad) * transfer, s=phase_rad.shape)
    return 1.0 - 2.0 * filtered


def graphene_positions_A(
    extent_A: Sequence[float],
    *,
    lattice_A: float = 2.46,
    layers: int = 2,
    rng: np.random.Generator,
) -> np.ndarray:
    """Carbon positions (x, y) [Å] of stacked graphene layers covering ``[0, ex) × [0, ey)``.

    Each layer is a honeycomb lattice (lattice constant `lattice_A`) with a random in-plane rotation
    and a random offset.
    """
    ex, ey = (float(v) for v in extent_A)
    a1 = lattice_A * np.array([1.0, 0.0])
    a2 = lattice_A * np.array([0.5, np.sqrt(3) / 2])
    basis = np.array([[0.0, 0.0], (a1 + a2) / 3])
    half = np.hypot(ex, ey) / 2
    n = int(np.ceil(2 * half / lattice_A / (np.sqrt(3) / 2))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    cells = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    lattice = (cells[:, None, :] + basis[None]).reshape(-1, 2)
    out = []
    for _ in range(layers):
        rot = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True).as_matrix()[:2, :2]
        pts = lattice @ rot.T + rng.uniform(0, lattice_A, 2) + np.array([ex / 2, ey / 2])
        keep = (pts[:, 0] >= -2) & (pts[:, 0] < ex + 2) & (pts[:, 1] >= -2) & (pts[:, 1] < ey + 2)
        out.append(pts[keep])
    return np.concatenate(out) if out else np.zeros((0, 2))


def water_potential_spectrum(k: Any) -> Any:
    """Fourier transform of one water molecule's projected potential [V·Å³] at `k` [1/Å].

    O and two H at one point (the H–O distance, 0.96 Å, matters only beyond ~0.5 Å⁻¹).
    """
    xp = get_array_module(k)
    s2 = (k / 2) ** 2
    total = 0
    for symbol, count in (("O", 1), ("H", 2)):
        a, b = PENG_1996[symbol]
        total = total + count * sum(ai * xp.exp(-bi * s2) for ai, bi in zip(a, b, strict=True))
    return POTENTIAL_PREFACTOR_VA2 * total
