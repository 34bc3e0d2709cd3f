"""Upper bounds for Brownian orientations: what the extracted stacks allow given the true map.

Usage::

    python benchmarks/oracle_brownian.py results/demo_brownian \\
        resources/simulated/demo_brownian/truth [--particles p002] [--frames 150] [--grid 30000]

Separates the three things the ab initio step has to get right, using the simulator's truth:

1. **Centring.** The stacks are cut around the tracked positions; printed is the error of those
   centres against the true particle centres (a constant offset removed: it only moves the map).
2. **Information per frame.** With the true map (Gaussian atoms at the true positions) and the
   true orientations: the median correlation of each band-passed frame (|CTF|-weighted, as the
   ab initio search scores) with its projection, and the share of frames whose true orientation
   beats the same orientation turned by 4° and by 8° about a random axis. Once with the stacks as
   cut, once re-centred on the true centres.
3. **Orientation search with the true map.** The ab initio search's own grid chain (every
   rotation of a ``--grid`` SO(3) grid scored, linked by the diffusion prior, posterior means)
   at the 2.5 Å band, then four local rounds (3 × 3 × 3 moves, Viterbi under the prior) at 2 Å.
   The orientation errors (median and 90th percentile, modulo the particle's point group) are
   the best the search can do with a perfect map; the pipeline's own orientations
   (``orientations.parquet``) are printed beside them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from bench_abinitio import errors, load_particle
from nanorecon.brownian._abinitio import (
    _grid_neighbours,
    _grid_posterior_mean,
    _log_likelihood,
    _outside_median,
    _Stage,
    so3_grid,
)
from nanorecon.brownian._prior import brownian_log_prior, smooth_orientations
from nanorecon.simulate import atoms_to_volume
from nanorecon.validate import point_group

STEP_DEG = 5.0  # prior's RMS step per frame [deg] (the demo movie's 3-6°)


def centring_errors(particle_dir: Path, truth_dir: Path, particle: int) -> np.ndarray:
    """(n, 2) error [Å] of the stack's box centres against the true centres, offset removed."""
    table = pd.read_parquet(particle_dir / "orientations.parquet")
    frames = pd.read_csv(truth_dir / "frames.csv")
    true = frames[frames.particle == particle].set_index("frame").loc[table.frame.values]
    error = np.stack([true.x_A.values - table.x_A.values, true.y_A.values - table.y_A.values], 1)
    return error - np.median(error, axis=0)


def recentre(images: np.ndarray, error_A: np.ndarray, pixel_size_A: float) -> np.ndarray:
    """Move every image by its centring error (Fourier phase ramp)."""
    n = images.shape[1]
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.rfftfreq(n)[None, :]
    sx, sy = (error_A[:, i, None, None] / pixel_size_A for i in (0, 1))
    ramp = np.exp(2j * np.pi * (kx * sx + ky * sy))
    return np.fft.irfft2(np.fft.rfft2(images) * ramp, s=(n, n)).astype(images.dtype)


def grid_chain(stage: _Stage, volume, grid: Rotation) -> Rotation:
    """Posterior-mean orientations of the grid chain under the diffusion prior."""
    crop = stage._crop_volume(volume)
    correlation = np.concatenate(
        [
            np.asarray(stage.data @ stage.prepare(stage.project(crop, grid[i : i + 5000])).T)
            for i in range(0, len(grid), 5000)
        ],
        axis=1,
    ).astype(np.float64)
    spacing = np.degrees((6 * np.pi / len(grid)) ** (1 / 3))
    chain_step = np.hypot(STEP_DEG, np.sqrt(2) * 0.8 * spacing)
    neighbours, angles = _grid_neighbours(grid.as_quat(), np.radians(3 * chain_step))
    log_prior = brownian_log_prior(
        angles, rotational_diffusion_rad2_per_s=np.radians(chain_step) ** 2 / 6
    )
    ll = _log_likelihood(correlation, stage.n_eff)
    return _grid_posterior_mean(ll, neighbours, log_prior, grid.as_quat())[1]


def local_rounds(stage: _Stage, volume, rotations: Rotation, steps_deg) -> Rotation:
    """3 × 3 × 3 local moves per frame, chosen by Viterbi under the diffusion prior."""
    crop = stage._crop_volume(volume)
    offsets = np.array([-1.0, 0.0, 1.0])
    unit = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3)
    n = len(rotations)
    for step in steps_deg:
        moves = Rotation.from_rotvec(np.radians(step) * unit).as_matrix()
        candidates = Rotation.from_matrix(
            np.einsum("kij,njl->nkil", moves, rotations.as_matrix()).reshape(-1, 3, 3)
        )
        references = stage.prepare(stage.project(crop, candidates)).reshape(n, len(unit), -1)
        scores = (references * stage.data[:, None, :]).sum(axis=2).astype(np.float64)
        quats = candidates.as_quat().reshape(n, len(unit), 4)
        chosen, _ = smooth_orientations(
            _log_likelihood(scores, stage.n_eff),
            quats,
            rotational_diffusion_rad2_per_s=np.radians(max(step, STEP_DEG)) ** 2 / 6,
        )
        rotations = Rotation.from_quat(quats[np.arange(n), chosen])
    return rotations


def particle_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of the Brownian truth benchmarks: results and truth folders, particles, frames."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset_dir", type=Path, help="results/{dataset} of a Brownian run")
    parser.add_argument("truth_dir", type=Path, help="simulator truth folder")
    parser.add_argument("--particles", nargs="*", help="particle ids (default: all refined)")
    parser.add_argument("--frames", type=int, default=150, help="first N frames of each stack")
    return parser


def particle_ids(args: argparse.Namespace) -> list[str]:
    """The particles asked for, or every particle of the run with orientations."""
    root = args.dataset_dir / "particles"
    return args.particles or sorted(
        p.name for p in root.iterdir() if (p / "orientations.parquet").exists()
    )


def main() -> None:
    parser = particle_parser(__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=30000, help="rotations of the SO(3) grid")
    args = parser.parse_args()

    root = args.dataset_dir / "particles"
    ids = particle_ids(args)
    atoms = pd.read_csv(args.truth_dir / "atoms.csv")
    grid = so3_grid(args.grid)
    rng = np.random.default_rng(0)
    for pid in ids:
        images, ctf, particle, truth = load_particle(root / pid, args.truth_dir)
        pixel = float(ctf["pixel_size_A"])
        error_A = centring_errors(root / pid, args.truth_dir, particle)
        distance = np.hypot(*error_A.T)
        print(
            f"{pid} (true particle {particle}, {len(images)} frames): centring error median "
            f"{np.median(distance):.2f} Å, p90 {np.percentile(distance, 90):.2f} Å, "
            f"RMS x / y {np.std(error_A[:, 0]):.2f} / {np.std(error_A[:, 1]):.2f} Å"
        )
        mine = atoms[atoms.particle == particle][["x_A", "y_A", "z_A"]].to_numpy()
        group = point_group(mine)
        size = images.shape[1]
        volume = atoms_to_volume(mine, np.ones(len(mine)), (size,) * 3, pixel, 0.35)
        keep = slice(0, min(args.frames, len(images)))
        truth = truth[keep]
        orientations = pd.read_parquet(root / pid / "orientations.parquet").iloc[keep]
        pipeline = Rotation.from_quat(orientations[["qx", "qy", "qz", "qw"]].to_numpy())
        print(f"  pipeline orientations: median / p90 {errors(pipeline, truth, group)} deg")
        radius_A = 0.45 * size * pixel
        axes = rng.normal(size=(len(truth), 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        turned = {d: Rotation.from_rotvec(np.radians(d) * axes) * truth for d in (4, 8)}
        # Phase-flipped frames show atoms dark; the map's density is positive.
        stacks = {"as cut": -images[keep], "true centres": -recentre(images, error_A, pixel)[keep]}
        for label, stack in stacks.items():
            stack = stack - _outside_median(stack, radius_A / pixel)
            for band in (5.0, 3.5, 2.5, 2.0):
                stage = _Stage(stack, pixel, band, radius_A, 1, ctf)
                at_truth = stage.correlation_at(volume, truth)
                wins = [
                    np.mean(at_truth > stage.correlation_at(volume, r)) for r in turned.values()
                ]
                print(
                    f"  {label:<13}{band:>4.1f} Å band: correlation {np.median(at_truth):.3f}, "
                    f"beats 4° / 8° turns in {wins[0]:.0%} / {wins[1]:.0%} of frames"
                )
            start = time.perf_counter()
            stage = _Stage(stack, pixel, 2.5, radius_A, 1, ctf)
            found = grid_chain(stage, volume, grid)
            coarse = errors(found, truth, group)
            stage.set_band(2.0)
            fine = errors(local_rounds(stage, volume, found, (4.0, 2.0, 1.0, 0.5)), truth, group)
            print(
                f"  {label:<13}true map, grid chain at 2.5 Å: {coarse[0]:.2f} / {coarse[1]:.2f}°; "
                f"then local at 2 Å: {fine[0]:.2f} / {fine[1]:.2f}° (median / p90, "
                f"{time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
