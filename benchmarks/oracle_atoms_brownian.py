"""Atom-level upper bounds for a Brownian run: its stacks mapped and traced with true geometry.

Usage::

    python benchmarks/oracle_atoms_brownian.py results/demo_brownian \\
        resources/simulated/demo_brownian/truth [--particles p003]

For each refined particle (``particles/pNNN/{stack.zarr, orientations.parquet, refined.json}``),
the final maps are reconstructed as ``nanorecon refine-particles`` reconstructs them (same
frames, half sets, transfer and Wiener term), then traced as ``nanorecon trace`` traces a
``map.zarr`` (half maps included) and scored against the true atoms as ``nanorecon validate``
scores them. Every geometry's support is the sphere of ``particle_radius_A``: the pipeline's
final maps past 2 Å use the particle's own mask grown by 1 Å, which lies in the pipeline's map
frame, so row 1 can differ a little from ``map.zarr`` (the printed correlation shows how much).
Four geometries:

1. the pipeline's rotations and centres (its own map again; the correlation with ``map.zarr``
   is printed as a check);
2. the true rotations with the pipeline's centring errors;
3. the pipeline's rotations with the true centres;
4. the true rotations and centres.

The pipeline's map frame differs from the truth's by a rotation and a 3D offset ``t``, which
moves every image centre by the projection of ``t``; that part (and a constant 2D offset) is
fitted by least squares and removed before the centring errors are measured and swapped in.
So row 2 against row 4 is what the centres cost, row 3 against row 4 what the rotations cost,
and row 4 what the data, the reconstruction and the tracing allow. The fit assumes one rotation
takes the pipeline's frame to the truth's for every frame; for a particle with point-group
symmetry, frames on symmetry-equivalent orientations break that, and row 2 is then pessimistic
(the demo's octahedron p002: 77 % recall there, against 99 % with the pipeline's own geometry).

Each row also prints the largest Fourier gap of its rotations
(:func:`nanorecon.geometry.largest_fourier_gap_deg`). A short movie views a particle from a
cone of directions, so even the true rotations can leave a missing cone, and row 4 is then
not an upper bound for a symmetric particle: the pipeline may put frames on symmetry-equivalent
orientations, which fills the cone as symmetry averaging would. The demo's octahedron p002:
its true views leave a 64° gap and trace at 93.5 % recall and 27 pm (the error lies along one
direction: 25 pm against 6–7 pm in the other two), its pipeline rotations a 33° gap and 99 % at
17 pm. Every frame used twice, at its true rotation and at one equivalent ``R g``: with a ``g``
that leaves a 58° gap, 98.6 % and 19 pm; with one that leaves 24°, 100 % and 8.4 pm (both
average the map over two of its symmetry operations; the coverage makes the difference).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy.spatial.transform import Rotation

from bench_abinitio import load_particle
from nanorecon.atoms import trace_atoms
from nanorecon.brownian._abinitio import _outside_median, _sphere
from nanorecon.brownian._ctf import phase_flipped_transfer, reconstruction_transfer
from nanorecon.geometry import largest_fourier_gap_deg
from nanorecon.io import read_orientations, write_map_zarr
from nanorecon.refine import half_set_reconstruction
from nanorecon.validate import score_model


def centring(
    table: pd.DataFrame, rotations: Rotation, frames: pd.DataFrame, particle: int
) -> tuple[np.ndarray, np.ndarray]:
    """The true particle's centres in the pipeline's shift convention, and the pipeline's
    centring error per frame [Å] (its map's 3D offset and a constant removed)."""
    truth = frames[frames.particle == particle].set_index("frame").loc[table.frame.values]
    # An image's shift is where the map's origin lands in it: the true centre minus the box's.
    true_shifts = truth[["x_A", "y_A"]].to_numpy() - table[["x_A", "y_A"]].to_numpy()
    true_shifts -= np.median(true_shifts, axis=0)
    shifts = table[["shift_x_A", "shift_y_A"]].to_numpy()
    used = table["used"].to_numpy(bool)
    # shifts = true shifts + c + (R t)_xy + error, R the pipeline's rotations
    design = np.zeros((2 * len(table), 5))
    design[0::2, 0] = 1
    design[1::2, 1] = 1
    design[:, 2:] = rotations.as_matrix()[:, :2, :].reshape(-1, 3)
    residual = (shifts - true_shifts).reshape(-1)
    rows = np.repeat(used, 2)
    fit, *_ = np.linalg.lstsq(design[rows], residual[rows], rcond=None)
    return true_shifts, (residual - design @ fit).reshape(-1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", type=Path, help="results/{dataset} of a Brownian run")
    parser.add_argument("truth_dir", type=Path, help="simulator truth folder")
    parser.add_argument("--particles", nargs="*", help="particle ids (default: all refined)")
    parser.add_argument(
        "--save-maps",
        type=Path,
        help="write each geometry's map and half maps to DIR/pNNN/GEOMETRY/map.zarr",
    )
    args = parser.parse_args()

    root = args.dataset_dir / "particles"
    ids = args.particles or sorted(p.name for p in root.iterdir() if (p / "refined.json").exists())
    frames = pd.read_csv(args.truth_dir / "frames.csv")
    atoms = pd.read_csv(args.truth_dir / "atoms.csv")
    for pid in ids:
        folder = root / pid
        settings = json.loads((folder / "refined.json").read_text())["settings"]
        images, ctf, particle, true_rotations = load_particle(folder, args.truth_dir)
        table, rotations = read_orientations(folder / "orientations.parquet")
        pixel = float(ctf["pixel_size_A"])
        true_shifts, errors = centring(table, rotations, frames, particle)
        used = table["used"].to_numpy(bool) & (table["weight"].to_numpy() > 0)
        index = np.flatnonzero(used)
        radius_px = settings["particle_radius_A"] / pixel
        stack = -np.asarray(images[index], dtype=np.float32)  # phase-flipped: atoms dark
        stack -= _outside_median(stack, radius_px)
        halves = table["half_set"].to_numpy()[index]
        transfer = phase_flipped_transfer(ctf) if ctf.get("phase_flipped") else None
        truth = atoms[atoms.particle == particle]
        elements = sorted(truth["element"].unique()) if "element" in truth else ["Pt"]
        saved = np.asarray(zarr.open_group(folder / "map.zarr", mode="r")["map"]["0"])
        pipeline_shifts = table[["shift_x_A", "shift_y_A"]].to_numpy()
        support = _sphere(images.shape[1], radius_px, np)
        distance = np.hypot(*errors[index].T)
        print(
            f"{pid} (true particle {particle}, {index.size} frames): centring error median "
            f"{np.median(distance):.2f} Å, p90 {np.percentile(distance, 90):.2f} Å",
            flush=True,
        )
        geometries = {
            "pipeline rotations and centres": (rotations, pipeline_shifts),
            "true rotations, pipeline centring errors": (true_rotations, true_shifts + errors),
            "pipeline rotations, true centres": (rotations, pipeline_shifts - errors),
            "true rotations and centres": (true_rotations, true_shifts),
        }
        for label, (geometry, shifts) in geometries.items():
            start = time.perf_counter()
            result = half_set_reconstruction(
                stack,
                geometry[index],
                voxel_size_A=pixel,
                shifts_A=shifts[index],
                half_sets=halves - halves.min(),
                full_map=True,
                n_iterations=2 * settings["n_iterations"],
                support=support,
                **reconstruction_transfer(transfer),
            )
            traced = trace_atoms(
                result.volume, pixel, elements=elements, half_maps=result.half_maps
            )
            score = score_model(traced, truth)
            if args.save_maps is not None:
                write_map_zarr(
                    args.save_maps / pid / label.replace(",", "").replace(" ", "_") / "map.zarr",
                    {
                        "map": np.asarray(result.volume),
                        "half1": np.asarray(result.half_maps[0]),
                        "half2": np.asarray(result.half_maps[1]),
                    },
                    voxel_size_A=pixel,
                    attrs={"resolution_fsc0143_A": result.resolution_A, "modality": "brownian"},
                )
            check = ""
            if geometry is rotations and shifts is pipeline_shifts:
                similarity = np.corrcoef(saved.ravel(), np.asarray(result.volume).ravel())[0, 1]
                check = f", correlation with map.zarr {similarity:.3f}"
            print(
                f"  {label:<42} gap {largest_fourier_gap_deg(geometry[index]):.0f}°, "
                f"FSC {result.resolution_A:.2f} Å, {len(traced)} atoms: recall "
                f"{score['recall']:.1%}, precision {score['precision']:.1%}, RMS error "
                f"{score['rms_error_pm']:.1f} pm, lattice parameter "
                f"{score['lattice_parameter_error_percent']:+.2f} %, radial shift "
                f"{score['radial_shift_surface_pm']:+.1f} pm (surface), "
                f"{score['radial_shift_interior_pm']:+.1f} pm (interior) "
                f"({time.perf_counter() - start:.0f} s{check})",
                flush=True,
            )


if __name__ == "__main__":
    main()
