"""Iterative reconstruction of a map from projections (RESIRE-class gradient descent)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ..backend import asnumpy, get_array_module, supported_float_type
from ._projector import FourierSliceProjector

__all__ = ["ReconstructionResult", "reconstruct"]


@dataclass(frozen=True)
class ReconstructionResult:
    """Outcome of :func:`reconstruct`.

    Attributes
    ----------
    volume : ndarray of shape (N, N, N)
        The last iterate (z, y, x), same array module as the images.
    errors : ndarray of shape (n_iterations,)
        Relative projection error ``R = Σ|P x − b| / Σ|b|`` after each iteration (a diagnostic:
        the descent minimises the weighted least-squares objective, which R need not follow).
    """

    volume: Any
    errors: np.ndarray


def reconstruct(
    images: Any,
    rotations: Rotation | ArrayLike,
    *,
    shifts_A: ArrayLike | None = None,
    voxel_size_A: float = 1.0,
    n_iterations: int = 100,
    step: float = 1.0,
    density_compensation: bool = True,
    regularization: float = 1e-2,
    support: Any = None,
    positivity: bool = True,
    initial: Any = None,
    eps: float = 1e-4,
    n_threads: int | None = None,
    transfer: Callable[[np.ndarray], np.ndarray] | None = None,
    wiener_constant: float = 0.0,
    callback: Callable[[int, float], None] | None = None,
) -> ReconstructionResult:
    """Reconstruct a map by gradient descent on the projection error (RESIRE class).

    Minimises the projection error over maps ``x`` (``P``: Fourier-slice projector, ``b``:
    images) by ``x ← C(x − α Pᵀ W (P x − b))``, where ``C`` imposes positivity and the support in
    real space and ``α = step / ‖PᵀWP‖`` (power iteration). Plain RESIRE has ``W = 1``
    (objective ``½‖P x − b‖²``). With `density_compensation`, ``W`` weights every Fourier sample
    of every image by the inverse of the local density of all samples, measured for the actual
    orientations (a ramp filter for a tilt series, but right for any set: multi-axis, random,
    missing wedges); the objective becomes ``½‖W^½ (P x − b)‖²``, which has the same minimiser for
    consistent data and converges many times faster at high resolution. Frequencies no image
    samples (a missing wedge) receive no gradient; only the real-space constraints fill them. With
    ``step ≤ 1`` every step lowers the objective (projected gradient descent onto the convex set
    of the constraints), so the last iterate is returned. It is not chosen by the R factor: for
    noisy frames (a movie's, SNR ≪ 1) R of the empty map can be the lowest, although the
    objective, and the map, improve at every step.

    With `transfer` the images are modelled as the projections filtered by a known isotropic
    transfer ``H(|k|)`` (for phase-flipped images ``|sin χ|``, the microscope's CTF after phase
    flipping), and the objective becomes ``½‖W^½ (H P x − b)‖²``. Each frequency is then fitted
    in proportion to how much of it the microscope transferred: the map is the particle's
    potential, not its CTF-filtered image, and frequencies the microscope hardly passed (the
    lowest, in weak-phase contrast) are left to the real-space constraints instead of being
    pulled towards the images' near-zero values there (which, with positivity, hollows a
    particle's interior). Without a regulariser those frequencies keep fitting noise, amplified
    by ``1 / H``, the longer the descent runs; `wiener_constant` bounds them (see below).

    Parameters
    ----------
    images : ndarray of shape (n, N, N)
        Projections (y, x), numpy or cupy, line sums in voxel units (see :func:`project`).
    rotations : Rotation or array_like of shape (n, 3, 3)
        Map frame → microscope frame, one per image.
    shifts_A : array_like of shape (n, 2), optional
        ``(shift_x_A, shift_y_A)`` of each image [Å].
    voxel_size_A : float, optional
        Voxel edge [Å].
    n_iterations : int, optional
        Number of gradient steps.
    step : float, optional
        Step relative to ``1 / ‖PᵀWP‖``; 1 is safe, up to 2 converges for exact norms.
    density_compensation : bool, optional
        Weight the Fourier samples by their inverse density (see above); otherwise plain RESIRE.
    regularization : float, optional
        Floor of the sample density relative to its maximum, so that no weight exceeds
        ``1 / (regularization · max density)``.
    support : ndarray of bool of shape (N, N, N), optional
        Voxels allowed to be non-zero.
    positivity : bool, optional
        Clip negative densities after each step.
    initial : ndarray of shape (N, N, N), optional
        Starting map (zeros when None).
    eps : float, optional
        Relative NUFFT tolerance; the default lies far below the noise of measured images and
        lets finufft use its small (1.25×) fine grid, ~3× faster than ``eps < 2e-5`` in float32.
    n_threads : int, optional
        CPU threads for finufft (all cores when None).
    transfer : callable, optional
        ``H(k)``: the images' amplitude transfer at spatial frequency ``k`` [1/Å] (a numpy array
        in, finite non-negative values of the same shape out), the same for every image; None:
        ``H = 1``. The error history is then that of the filtered model, ``H P x``.
    wiener_constant : float, optional
        ``λ`` of a Tikhonov term ``½ λ ‖PᵀWP‖ ‖x‖²``, relative to the best-transferred
        frequency: the fixed point takes each frequency to ``H b / (H² + λ)`` (a Wiener filter
        with ``1 / SSNR = λ``), whatever the number of iterations. 0: none.
    callback : callable, optional
        Called as ``callback(iteration, error)`` after each iteration (for progress bars).

    Returns
    -------
    ReconstructionResult
        Best map and the error history.

    References
    ----------
    .. [1] Pham, M. et al. Accurate real space iterative reconstruction (RESIRE) algorithm for
       tomography. Sci. Rep. 13, 5624 (2023). :doi:`10.1038/s41598-023-31124-5`
    """
    xp = get_array_module(images)
    images = xp.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, N, N), got {tuple(images.shape)}")
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be at least 1, got {n_iterations}")
    if not 0 < step <= 2:
        raise ValueError(f"step must lie in (0, 2], got {step}")
    if regularization <= 0:
        raise ValueError(f"regularization must be positive, got {regularization}")
    if not wiener_constant >= 0:
        raise ValueError(f"wiener_constant must be non-negative, got {wiener_constant}")
    dtype = supported_float_type(images.dtype)
    images = images.astype(dtype, copy=False)
    size = images.shape[1]
    projector = FourierSliceProjector(
        rotations,
        size,
        shifts_A=shifts_A,
        voxel_size_A=voxel_size_A,
        dtype=dtype,
        device="cpu" if xp is np else "gpu",
        eps=eps,
        n_threads=n_threads,
    )
    if projector.n_images != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {projector.n_images} rotations")
    mask = None
    if support is not None:
        mask = xp.asarray(support, dtype=bool)
        if mask.shape != (size,) * 3:
            raise ValueError(f"support must have shape {(size,) * 3}, got {tuple(mask.shape)}")
        outside = ~mask

    def constrain(x: Any) -> Any:
        # In place: `x` is always a fresh array here.
        if positivity:
            xp.maximum(x, 0, out=x)
        if mask is not None:
            x[outside] = 0
        return x

    sample_weights = None
    if density_compensation:
        density = projector.sample_density()
        sample_weights = 1 / xp.maximum(density, regularization * float(density.max()))
    gain = None
    if transfer is not None:
        frequencies = asnumpy(projector.sample_frequencies(voxel_size_A)[:1])
        values = np.asarray(transfer(frequencies), dtype=float)
        if values.shape != frequencies.shape or not np.all(np.isfinite(values)):
            raise ValueError("transfer must return one finite value per frequency")
        if values.min() < 0:
            raise ValueError("transfer must be non-negative (an amplitude, e.g. |sin χ|)")
        gain = xp.broadcast_to(xp.asarray(values.astype(dtype)), (projector.n_images, values.size))
        # The gradient Pᵀ W H (H P x − b): the residual is formed from H P x, and H joins W.
        sample_weights = gain if sample_weights is None else sample_weights * gain
    gram = _gram_norm(projector, sample_weights, gain)
    # Tikhonov term λ‖x‖², λ relative to the best-transferred frequency: at the fixed point each
    # frequency is H b / (H² + λ), a Wiener filter.
    damping = dtype.type(wiener_constant * gram)
    rate = dtype.type(step / (gram + damping))

    if initial is None:
        x = xp.zeros((size,) * 3, dtype)
    else:
        x = constrain(xp.array(initial, dtype=dtype, copy=True))
    norm = float(xp.abs(images).sum())
    if norm == 0:
        raise ValueError("images are all zero")
    residual = projector.forward(x, sample_weights=gain)
    residual -= images
    errors = np.empty(n_iterations)
    for iteration in range(n_iterations):
        step_map = projector.adjoint(residual, sample_weights=sample_weights)
        if damping:
            step_map += damping * x
        step_map *= -rate
        step_map += x
        x = constrain(step_map)
        residual = projector.forward(x, sample_weights=gain)
        residual -= images
        errors[iteration] = float(xp.abs(residual).sum()) / norm
        if callback is not None:
            callback(iteration, float(errors[iteration]))
    return ReconstructionResult(volume=x, errors=errors)


def _gram_norm(
    projector: FourierSliceProjector,
    sample_weights: Any,
    gain: Any = None,
    *,
    n_iterations: int = 12,
) -> float:
    """``‖PᵀWP‖`` by power iteration (a slight underestimate, so steps up to 1 stay stable).

    `sample_weights` are applied on the way back and `gain` on the way forward (with a transfer
    ``H`` the operator is ``Pᵀ W H · H P``).
    """
    xp = projector.xp
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal(projector.shape).astype(projector.dtype))
    norm = 1.0
    for _ in range(n_iterations):
        x /= norm
        x = projector.adjoint(
            projector.forward(x, sample_weights=gain), sample_weights=sample_weights
        )
        norm = float(xp.linalg.norm(x))
    return norm
