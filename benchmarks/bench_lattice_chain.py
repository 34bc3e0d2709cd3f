"""How far an ideal crystal carries a Brownian particle's orientation chain, with no map at all.

Usage::

    python benchmarks/bench_lattice_chain.py results/demo_brownian \\
        resources/simulated/demo_brownian/truth [--particles p002] [--frames 150] \\
        [--radius-A 9 10 11 12 13 14 15] [--lattice-A 3.92 3.88 3.96 4.00] \\
        [--centres atom octahedral tetrahedral] [--band-A 1.8] [--grid 134000] \\
        [--rounds 0] [--refine]

A candidate for the ab initio step, measured before it is built in. The reference is an fcc
sphere: an fcc lattice (bulk Pt by default, not the particle's) about a site of its cell at the
box centre, i.e. only what the frames' power spectra and the element say. Its radius, then
lattice parameter, then centre site are chosen one after the other among `--radius-A`,
`--lattice-A` and `--centres`, each where the reference correlates best with the frames (mean
over frames of the best state's correlation), so the particle's size comes from the data. Its cubic
symmetry (point group O) lets every frame be scored against one fundamental zone of a fine SO(3)
grid only (`--grid` rotations over SO(3), 1/24 of them scored), each at every shift within 1.5 Å
of the box centre (Gaussian centring prior of 0.8 Å), in the band up to `--band-A` under the
|CTF| weighting of :func:`nanorecon.brownian.ab_initio_orientations`. The most probable chain of
fundamental-zone states under a 4° RMS rotational-diffusion step (distances modulo O) is then
unwrapped into a continuous path. With `--rounds`, the map reconstructed from the chain, averaged
over O, becomes the next reference. With `--refine`, the last chain is refined as the pipeline
refines the ab initio orientations (each half set by :func:`nanorecon.brownian.refine_locally`,
as in `bench_refinement.py`).

Printed per particle: median / 90th-percentile orientation error of the chain after global
alignment to the truth (modulo the particle's point group), the median step of the chain, and
the time. The current ab initio step ends 20–30° off on the demo movie; the refinement needs
about 5°, and consistent (`bench_refinement.py`).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy.ndimage import affine_transform
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from bench_abinitio import errors, load_particle
from bench_refinement import refine_halves
from nanorecon.brownian._abinitio import (
    _grid_viterbi,
    _log_likelihood,
    _outside_median,
    _Stage,
    so3_grid,
)
from nanorecon.brownian._local import _disk, _shift_kernel
from nanorecon.validate import point_group
from oracle_brownian import particle_ids, particle_parser

STEP_DEG = 4.0  # RMS rotation per frame of the prior (the demo movie turns 3-6° per frame)
SHIFT_RANGE_A, SHIFT_STEP_A, SHIFT_SIGMA_A = 1.5, 0.375, 0.8
CUBIC = Rotation.create_group("O")
ZYX = np.eye(3)[::-1]  # (x, y, z) ↔ (z, y, x) array axes


#: sites of the fcc cell that the sphere may be centred on (fractions of the lattice parameter);
#: each keeps the full cubic symmetry about the centre
CENTRES = {
    "atom": (0.0, 0.0, 0.0),
    "octahedral": (0.5, 0.0, 0.0),
    "tetrahedral": (0.25, 0.25, 0.25),
}


def fcc_sphere(
    size: int, pixel_A: float, lattice_A: float, radius_A: float, centre: str = "atom"
) -> np.ndarray:
    """Map (z, y, x) of Gaussian atoms (σ 0.45 Å) on an fcc lattice within a sphere about a
    site of the cell (:data:`CENTRES`), the site at the box centre."""
    cells = int(np.ceil(radius_A / lattice_A)) + 1
    ijk = np.stack(np.meshgrid(*[np.arange(-cells, cells + 1)] * 3, indexing="ij"), -1)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    basis = basis - np.asarray(CENTRES[centre])
    atoms = ((ijk.reshape(-1, 1, 3) + basis) * lattice_A).reshape(-1, 3)
    atoms = atoms[np.linalg.norm(atoms, axis=1) <= radius_A]
    axis = (np.arange(size) - size // 2) * pixel_A
    volume = np.zeros((size,) * 3, np.float32)
    for x, y, z in atoms:
        gx, gy, gz = (np.exp(-((axis - c) ** 2) / (2 * 0.45**2)) for c in (x, y, z))
        volume += gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return volume


def cubic_average(volume: np.ndarray) -> np.ndarray:
    """Mean of the map over the 24 rotations of O about the box centre."""
    centre = np.full(3, volume.shape[0] // 2, dtype=float)
    total = np.zeros_like(volume)
    for matrix in CUBIC.as_matrix():
        m = ZYX @ matrix @ ZYX
        total += affine_transform(volume, m, offset=centre - m @ centre, order=1)
    return total / len(CUBIC)


def fundamental_zone(grid: Rotation) -> Rotation:
    """Grid rotations closer to the identity than any of their cubic equivalents."""
    closeness = np.stack([np.abs((grid * s).as_quat()[:, 3]) for s in CUBIC], axis=1)
    return grid[np.argmax(closeness, axis=1) == int(np.argmin(CUBIC.magnitude()))]


def log_likelihoods(
    stage: _Stage, reference: np.ndarray, zone: Rotation
) -> tuple[np.ndarray, float]:
    """(frames, zone) log-likelihood at each rotation's best shift, centring prior included,
    and the mean over frames of the best correlation."""
    m, n = stage.size, stage.n_images
    offsets = _disk(SHIFT_RANGE_A, SHIFT_STEP_A)
    kernel = _shift_kernel(m, stage.pixel_size_A, offsets)
    data_hat = np.fft.rfft2(stage.data.reshape(n, m, m)).reshape(n, -1)
    prior = -(offsets**2).sum(axis=1) / (2 * SHIFT_SIGMA_A**2)
    out = np.empty((n, len(zone)))
    best = np.full(n, -np.inf)
    for first in range(0, len(zone), 150):
        batch = zone[first : first + 150]
        refs = np.fft.rfft2(stage.prepare(stage.project(reference, batch)).reshape(-1, m, m))
        products = data_hat[:, None, :] * np.conj(refs.reshape(len(batch), -1))[None]
        correlation = np.real(products @ kernel)
        ll = _log_likelihood(correlation.reshape(n, -1), stage.n_eff).reshape(correlation.shape)
        out[:, first : first + len(batch)] = (ll + prior).max(axis=2)
        best = np.maximum(best, correlation.max(axis=(1, 2)))
    return out, float(best.mean())


def cubic_chain(ll: np.ndarray, zone: Rotation, grid_size: int) -> Rotation:
    """Most probable continuous path through the zone states under the diffusion prior."""
    copies = np.concatenate([(zone * s).as_quat() for s in CUBIC])
    copies = np.concatenate([copies, -copies])
    radius = np.radians(3 * STEP_DEG)
    pairs = cKDTree(copies).query_ball_point(zone.as_quat(), 2 * np.sin(radius / 4))
    width = max(len(p) for p in pairs)
    neighbours = np.full((len(zone), width), -1)
    angles = np.full((len(zone), width), np.inf)
    for i, hits in enumerate(pairs):
        hits = np.asarray(hits)
        angle = 2 * np.arccos(np.clip(np.abs(copies[hits] @ zone[i].as_quat()), 0, 1))
        order = np.argsort(angle)
        states, first = np.unique(hits[order] % len(zone), return_index=True)
        neighbours[i, : len(states)] = states
        angles[i, : len(states)] = angle[order][first]
    # each state snaps its rotation to the grid: 0.8 spacings each, in quadrature
    spacing = np.degrees((6 * np.pi / grid_size) ** (1 / 3))
    step = np.radians(np.hypot(STEP_DEG, 0.8 * spacing * np.sqrt(2)))
    path = _grid_viterbi(
        ll, neighbours, np.where(neighbours >= 0, -1.5 * angles**2 / step**2, -np.inf)
    )
    cubic = CUBIC.as_matrix()
    rotations = [zone[path[0]]]
    for state in path[1:]:
        equivalents = Rotation.from_matrix(zone[state].as_matrix()[None] @ cubic)
        rotations.append(
            equivalents[int(np.argmin((equivalents * rotations[-1].inv()).magnitude()))]
        )
    return Rotation.concatenate(rotations)


def main() -> None:
    parser = particle_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--lattice-A",
        type=float,
        nargs="+",
        default=[3.92],
        help="fcc lattice parameters to try after the radius, the first used for the radius [Å]",
    )
    parser.add_argument(
        "--centres",
        nargs="+",
        choices=sorted(CENTRES),
        default=["atom"],
        help="cell sites to centre the sphere on, tried last",
    )
    parser.add_argument(
        "--radius-A",
        type=float,
        nargs="+",
        default=[9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
        help="reference sphere radii to try [Å]",
    )
    parser.add_argument("--band-A", type=float, default=1.8, help="band limit [Å]")
    parser.add_argument("--grid", type=int, default=134000, help="SO(3) grid rotations")
    parser.add_argument("--rounds", type=int, default=0, help="rounds with the O-averaged map")
    parser.add_argument("--refine", action="store_true", help="refine the chain locally")
    args = parser.parse_args()

    root = args.dataset_dir / "particles"
    ids = particle_ids(args)
    atoms = pd.read_csv(args.truth_dir / "atoms.csv")
    zone = fundamental_zone(so3_grid(args.grid))
    print(
        f"{'particle':<10}{'R/a Å/centre':>16}{'round':>8}{'med°':>7}{'p90°':>7}{'step°':>7}{'s':>6}"
    )
    for pid in ids:
        images, ctf, particle, truth = load_particle(root / pid, args.truth_dir)
        keep = slice(0, min(args.frames, len(images)))
        pixel, size = float(ctf["pixel_size_A"]), images.shape[1]
        # phase-flipped frames show atoms dark; the maps want them bright
        stack = -images[keep].astype(np.float32)
        stack = stack - _outside_median(stack, 0.45 * size)
        truth = truth[keep]
        group = point_group(atoms[atoms.particle == particle][["x_A", "y_A", "z_A"]].to_numpy())
        stage = _Stage(stack, pixel, args.band_A, 0.45 * size * pixel, 1, ctf)
        begin = time.perf_counter()
        # one parameter at a time, each kept where the reference correlates best with the frames
        best = {"radius": args.radius_A[0], "lattice": args.lattice_A[0], "centre": args.centres[0]}
        for name, values in (
            ("radius", args.radius_A),
            ("lattice", args.lattice_A),
            ("centre", args.centres),
        ):
            fits = {}
            for value in values:
                trial = {**best, name: value}
                sphere = fcc_sphere(size, pixel, trial["lattice"], trial["radius"], trial["centre"])
                fits[value] = log_likelihoods(stage, stage._crop_volume(sphere), zone)
            best[name] = max(fits, key=lambda v: fits[v][1])
            if len(values) > 1:
                print(
                    f"  {pid}: mean best correlation by {name} "
                    + ", ".join(f"{v} {fit[1]:.3f}" for v, fit in fits.items())
                )
            chosen = fits[best[name]]
        radius = best["radius"]
        ll = chosen[0]
        for round_index in range(args.rounds + 1):
            chain = cubic_chain(ll, zone, args.grid)
            label = f"{radius:g}/{best['lattice']:g}/{best['centre'][:3]}"
            report(pid, label, str(round_index), chain, truth, group, begin)
            if round_index < args.rounds:
                begin = time.perf_counter()
                volume = stage.reconstruct(chain, positivity=True, n_iterations=10)
                ll = log_likelihoods(stage, cubic_average(np.asarray(volume)), zone)[0]
        if args.refine:
            begin = time.perf_counter()
            refined, _ = refine_halves("local", stack, chain, pixel, ctf)
            report(pid, label, "refined", refined, truth, group, begin)


def report(pid, radius, stage, rotations, truth, group, begin) -> None:
    median, p90 = errors(rotations, truth, group)
    step = np.median(np.degrees((rotations[1:] * rotations[:-1].inv()).magnitude()))
    print(
        f"{pid:<10}{radius:>16}{stage:>8}{median:>7.2f}{p90:>7.2f}{step:>7.2f}"
        f"{time.perf_counter() - begin:>6.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
