"""Brownian refinement from orientations a known distance off: local search vs least squares.

Usage::

    python benchmarks/bench_refinement.py results/demo_brownian \\
        resources/simulated/demo_brownian/truth [--particles p002] [--frames 150] [--off-deg 5 10]

Takes a refined particle's stack as cut by the front end (phase flipped, centred on the tracked
positions) and starts from the true orientations turned in two ways: each frame by ``--off-deg``
about its own random axis (the size jittered by 30 %: independent errors), and by a slowly
wandering error of median ``--off-deg`` (a smoothed random walk, as ab initio paths err); the
printed start error is the median after global alignment. Each half set is refined on its own
from there, as :func:`nanorecon.brownian.reconstruct_particle` does: by the local search
(:func:`nanorecon.brownian.refine_locally`: orientation ball and shift search under the
rotational-diffusion prior) and by least-squares projection matching
(:func:`nanorecon.refine.refine_orientations`, atomic reference, the back end's defaults).
Printed per particle and starting error: median / 90th-percentile orientation error after
refinement (modulo the particle's point group), the centring error of the boxes before and after
(RMS per axis against the true centres, less a constant offset and, after refinement, less the
3D translation of the map that the refined shifts may carry), and run times. It separates
what the refinement can do from what the ab initio step must deliver.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from bench_abinitio import errors, load_particle
from nanorecon.brownian import refine_locally, time_block_half_sets
from nanorecon.brownian._abinitio import _outside_median, _sphere
from nanorecon.refine import atomic_reference, refine_orientations
from nanorecon.validate import point_group
from oracle_brownian import centring_errors, particle_ids, particle_parser

STEP_DEG = 4.0  # RMS step per frame of the prior [deg] (the demo movie turns 3-6° per frame)
FRAME_RATE_HZ = 400.0


def turned(truth: Rotation, off_deg: float, rng: np.random.Generator) -> Rotation:
    axes = rng.normal(size=(len(truth), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    size = np.radians(off_deg) * np.abs(rng.normal(1.0, 0.3, len(truth)))
    return Rotation.from_rotvec(size[:, None] * axes) * truth


def drifted(truth: Rotation, off_deg: float, rng: np.random.Generator) -> Rotation:
    """Truth turned by a slowly wandering map-frame error (median `off_deg`), as ab initio
    paths err: a 3D random walk smoothed over ~5 frames, centred, scaled to the median."""
    walk = gaussian_filter1d(np.cumsum(rng.normal(size=(len(truth), 3)), axis=0), 5.0, axis=0)
    walk -= walk.mean(axis=0)
    walk *= np.radians(off_deg) / np.median(np.linalg.norm(walk, axis=1))
    return truth * Rotation.from_rotvec(walk)


def refine_halves(method: str, images, start: Rotation, pixel_A: float, ctf: dict):
    """Rotations and shifts [Å] of every frame, each half set refined on its own."""
    n, size = images.shape[0], images.shape[1]
    halves = time_block_half_sets(np.arange(n))
    rotations, shifts = [None] * n, np.zeros((n, 2))
    diffusion = np.radians(STEP_DEG) ** 2 * FRAME_RATE_HZ / 6
    for half in (1, 2):
        members = np.flatnonzero(halves == half)
        if method == "local":
            result = refine_locally(
                images[members],
                start[members],
                pixel_size_A=pixel_A,
                rotational_diffusion_rad2_per_s=diffusion,
                frame_rate_hz=FRAME_RATE_HZ,
                frame_gaps=np.diff(members),
                ctf=ctf,
            )
        else:
            result = refine_orientations(
                images[members],
                start[members],
                None,
                voxel_size_A=pixel_A,
                n_rounds=4,
                n_iterations=20,
                max_shift_A=2.0,
                lowpass_A=2.0,
                final_lowpass_A=1.0,
                reference=lambda volume: atomic_reference(volume, voxel_size_A=pixel_A),
                support=_sphere(size, 0.45 * size, np),
                n_threads=1,
            )
        for k, member in enumerate(members):
            rotations[member] = result.rotations[k]
        shifts[members] = np.asarray(result.shifts_A)
    return Rotation.concatenate(rotations), shifts


def rms_per_axis(error_A: np.ndarray, rotations: Rotation | None = None) -> float:
    """RMS per axis of box-centring errors, less what moving the map would explain.

    A constant offset, and with `rotations` a 3D translation ``t`` of the map (which appears in
    frame ``k`` as ``(R_k t)_xy``), move the map without changing how the frames fit it.
    """
    n = len(error_A)
    design = np.tile(np.eye(2), (n, 1))
    if rotations is not None:
        design = np.hstack([design, rotations.as_matrix()[:, :2, :].reshape(2 * n, 3)])
    fit = np.linalg.lstsq(design, error_A.reshape(-1), rcond=None)[0]
    residual = error_A.reshape(-1) - design @ fit
    return float(np.sqrt((residual**2).mean()))


STARTS = {"random": turned, "drift": drifted}


def main() -> None:
    parser = particle_parser(__doc__.splitlines()[0])
    parser.add_argument("--off-deg", type=float, nargs="+", default=[5.0, 10.0])
    args = parser.parse_args()

    root = args.dataset_dir / "particles"
    ids = particle_ids(args)
    atoms = pd.read_csv(args.truth_dir / "atoms.csv")
    print(
        f"{'particle':<10}{'start':>8}{'°':>7}{'method':>10}{'med°':>7}{'p90°':>7}"
        f"{'centring Å (before → after)':>30}{'s':>6}"
    )
    for pid in ids:
        images, ctf, particle, truth = load_particle(root / pid, args.truth_dir)
        keep = slice(0, min(args.frames, len(images)))
        pixel = float(ctf["pixel_size_A"])
        # phase-flipped frames show atoms dark; the maps want them bright
        stack = -images[keep].astype(np.float32)
        stack = stack - _outside_median(stack, 0.45 * stack.shape[1])
        truth = truth[keep]
        centring = centring_errors(root / pid, args.truth_dir, particle)[keep]
        group = point_group(atoms[atoms.particle == particle][["x_A", "y_A", "z_A"]].to_numpy())
        for (kind, make), off in itertools.product(STARTS.items(), args.off_deg):
            start = make(truth, off, np.random.default_rng(1))
            # median error after the global alignment, as the refined ones are measured
            off = errors(start, truth, group)[0]
            for method in ("local", "matching"):
                begin = time.perf_counter()
                rotations, shifts = refine_halves(method, stack, start, pixel, ctf)
                seconds = time.perf_counter() - begin
                median, p90 = errors(rotations, truth, group)
                # shifts say where the particle lies in the box; the tracking error is the
                # true centre minus the box centre
                after = rms_per_axis(centring - shifts, rotations)
                print(
                    f"{pid:<10}{kind:>8}{off:>7.1f}{method:>10}{median:>7.2f}{p90:>7.2f}"
                    f"{rms_per_axis(centring):>18.2f} → {after:<9.2f}{seconds:>6.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
