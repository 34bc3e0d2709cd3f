"""Accuracy and run time of the crystal ab initio step on the demo movie's particle stacks (CPU).

Usage::

    python benchmarks/bench_lattice_chain.py results/demo_brownian \\
        resources/simulated/demo_brownian/truth [--particles p002] [--frames 300] \\
        [--starts 3] [--grid 134000] [--band-A 1.8] [--step-deg 4] [--no-prior] [--refine]

Runs :func:`nanorecon.brownian.crystal_orientations` on each particle's stack as
``nanorecon refine-particles --abinitio crystal`` does (phase-flipped frames negated, reference
lattice from bulk Pt, 3.92 Å, with the particle's own fitted to the frames), and with
``--refine`` the pipeline's local refinement of each half set (as in ``bench_refinement.py``).

Printed per particle: the reference's fitted radius and lattice parameter, the per-frame
orientation error after global alignment to the truth (median / 90th percentile, modulo the true
particle's point group and, for a centrosymmetric particle, the half turn about the beam that
images cannot see; the plain median beside it), each start's agreement with the chosen one, and
the times.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench_abinitio import load_particle
from bench_refinement import refine_halves
from nanorecon.brownian import align_orientations, crystal_orientations
from nanorecon.brownian._abinitio import _outside_median
from nanorecon.validate import is_centrosymmetric, point_group
from oracle_brownian import particle_ids, particle_parser

FRAME_RATE_HZ = 400.0


def main() -> None:
    parser = particle_parser(__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="ab initio starts")
    parser.add_argument("--grid", type=int, default=134_000, help="SO(3) grid rotations")
    parser.add_argument("--band-A", type=float, default=1.8, help="band limit [Å]")
    parser.add_argument("--step-deg", type=float, default=4.0, help="prior's RMS step [deg]")
    parser.add_argument("--no-prior", action="store_true", help="no rotational-diffusion prior")
    parser.add_argument("--refine", action="store_true", help="refine each half set locally")
    args = parser.parse_args()

    root = args.dataset_dir / "particles"
    atoms = pd.read_csv(args.truth_dir / "atoms.csv")
    header = f"{'particle':<9}{'R Å':>6}{'a Å':>7}{'stage':>9}{'med°':>7}{'p90°':>7}{'plain°':>8}"
    print(header + f"{'starts agree':>14}{'s':>6}")
    for pid in particle_ids(args):
        images, ctf, particle, truth = load_particle(root / pid, args.truth_dir)
        keep = slice(0, min(args.frames, len(images)))
        pixel, size = float(ctf["pixel_size_A"]), images.shape[1]
        # phase-flipped frames show atoms dark; the maps want them bright
        stack = -images[keep].astype(np.float32)
        stack = stack - _outside_median(stack, 0.45 * size)
        truth = truth[keep]
        mine = atoms[atoms.particle == particle][["x_A", "y_A", "z_A"]].to_numpy()
        group, centrosymmetric = point_group(mine), is_centrosymmetric(mine)
        begin = time.perf_counter()
        found = crystal_orientations(
            stack,
            pixel_size_A=pixel,
            lattice_parameter_A=3.9242,
            frame_rate_hz=FRAME_RATE_HZ,
            use_prior=not args.no_prior,
            n_starts=args.starts,
            n_grid=args.grid,
            lowpass_A=args.band_A,
            step_deg=args.step_deg,
            ctf=ctf,
        )
        chosen = found.history[found.starts.chosen.to_numpy()].iloc[0]
        label = f"{pid:<9}{chosen.radius_A:>6.1f}{chosen.lattice_parameter_A:>7.3f}"
        agree = " ".join(f"{d:.1f}" for d in found.starts.agreement_deg)
        stages = [("chain", found.rotations, begin)]
        if args.refine:
            begin = time.perf_counter()
            refined, _ = refine_halves("local", stack, found.rotations, pixel, ctf)
            stages.append(("refined", refined, begin))
        for stage, rotations, start in stages:
            options = {"symmetry": group}
            errors = align_orientations(rotations, truth, **options, centrosymmetric=True)
            plain = align_orientations(rotations, truth, **options).errors_deg
            shown = errors.errors_deg if centrosymmetric else plain
            print(
                f"{label}{stage:>9}{np.median(shown):>7.2f}{np.percentile(shown, 90):>7.2f}"
                f"{np.median(plain):>8.2f}{agree:>14}{time.perf_counter() - start:>6.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
