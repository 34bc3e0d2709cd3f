"""Accuracy, run time and seed agreement of Brownian ab initio orientation determination (CPU).

Usage: ``python benchmarks/bench_abinitio.py [--frames 300] [--size 48] [--seeds 5] [--noise 0.5]``.

A 2.5 nm Pt particle (an fcc crystal cut to a triaxial ellipsoid with one facet, so that it has
no symmetry) tumbles by Brownian rotation (5° RMS per frame at 400 fps); each frame is its
projected potential (``nanorecon.simulate.project_potential``, atoms bright) at 0.7 Å/px,
scaled to unit standard deviation, plus white Gaussian noise. Printed: for the rotational-
diffusion prior on and off, the median and 90th percentile orientation error after global
alignment to the truth (hand allowed), the estimated diffusion constant relative to the truth
and the run time; then, with the prior on, the same for one start per seed and the agreement
between seeds (median angle between their orientation sets after global alignment, and the
correlation of their maps after moving one onto the other).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from nanorecon.brownian import ab_initio_orientations, align_orientations
from nanorecon.simulate import brownian_rotations, make_particle, project_potential

FRAME_RATE_HZ = 400.0
PIXEL_SIZE_A = 0.7


def simulate(n_frames: int, size: int, noise: float, step_deg: float, seed: int):
    rng = np.random.default_rng(seed)
    diameter_nm = 2.5
    crystal = make_particle(shape="sphere", diameter_nm=1.3 * diameter_nm, rng=rng)
    positions = crystal.positions_A
    radius_A = 5.0 * diameter_nm
    keep = ((positions / (np.array([1.15, 0.95, 0.75]) * radius_A)) ** 2).sum(axis=1) <= 1
    facet = np.array([0.3, -0.5, 0.81]) / np.linalg.norm([0.3, -0.5, 0.81])
    keep &= positions @ facet < 0.5 * radius_A
    positions = positions[keep] - positions[keep].mean(axis=0)
    diffusion = np.radians(step_deg) ** 2 * FRAME_RATE_HZ / 6
    rotations = brownian_rotations(
        n_frames, rotational_diffusion_rad2_per_s=diffusion, frame_rate_hz=FRAME_RATE_HZ, rng=rng
    )
    images = np.stack(
        [
            project_potential(
                r.apply(positions),
                crystal.elements[keep],
                shape=(size, size),
                pixel_size_A=PIXEL_SIZE_A,
                dtype=np.float32,
            )
            for r in rotations
        ]
    ).astype(np.float32)
    images /= images.std()
    images += rng.normal(0, noise, images.shape).astype(np.float32)
    return images, rotations, diffusion, len(positions)


def run(images, truth, diffusion, **options):
    start = time.perf_counter()
    result = ab_initio_orientations(
        images, pixel_size_A=PIXEL_SIZE_A, frame_rate_hz=FRAME_RATE_HZ, **options
    )
    seconds = time.perf_counter() - start
    errors = align_orientations(result.rotations, truth).errors_deg
    return result, {
        "median_deg": float(np.median(errors)),
        "p90_deg": float(np.percentile(errors, 90)),
        "D_ratio": result.rotational_diffusion_rad2_per_s / diffusion,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--step-deg", type=float, default=5.0)
    args = parser.parse_args()

    images, truth, diffusion, n_atoms = simulate(
        args.frames, args.size, args.noise, args.step_deg, seed=1
    )
    print(
        f"{n_atoms} Pt atoms, {args.frames} frames of {args.size}² px at {PIXEL_SIZE_A} Å, "
        f"{args.step_deg}°/frame, noise σ {args.noise} (signal std 1)"
    )
    print(f"{'run':<26}{'median°':>9}{'p90°':>8}{'D/D_true':>10}{'time s':>9}")
    for use_prior in (True, False):
        _, row = run(images, truth, diffusion, use_prior=use_prior, n_starts=args.starts)
        name = f"prior {'on' if use_prior else 'off'}, {args.starts} starts"
        print(
            f"{name:<26}{row['median_deg']:>9.2f}{row['p90_deg']:>8.2f}"
            f"{row['D_ratio']:>10.3f}{row['seconds']:>9.1f}"
        )

    results = []
    for seed in range(args.seeds):
        result, row = run(images, truth, diffusion, use_prior=True, n_starts=1, seed=100 + seed)
        results.append(result)
        name = f"prior on, seed {100 + seed}"
        print(
            f"{name:<26}{row['median_deg']:>9.2f}{row['p90_deg']:>8.2f}"
            f"{row['D_ratio']:>10.3f}{row['seconds']:>9.1f}"
        )
    print(f"{'seed pair':<12}{'median angle°':>15}{'map correlation':>17}")
    for a, b in itertools.combinations(range(args.seeds), 2):
        alignment = align_orientations(results[a].rotations, results[b].rotations)
        moved = alignment.apply_to_map(results[a].volume)
        correlation = np.corrcoef(moved.ravel(), results[b].volume.ravel())[0, 1]
        print(f"{a}-{b:<10}{np.median(alignment.errors_deg):>15.2f}{correlation:>17.3f}")


if __name__ == "__main__":
    main()
