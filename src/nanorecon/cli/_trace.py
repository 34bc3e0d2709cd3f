"""``nanorecon trace MAP OUT_DIR --elements ...``: a density map → traced atoms, optionally refined
against the particle's projections (``--stack``, ``--orientations``)."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from nanorecon.atoms import refine_positions, trace_atoms
from nanorecon.cli import UserError
from nanorecon.io import (
    read_map,
    read_orientations,
    read_particle_stack,
    write_particle_outputs,
)
from nanorecon.lattice import atomic_number

log = logging.getLogger("nanorecon.trace")

_SIGMA_UNIT = "Å (per-atom Gauss–Newton block of the weighted fit; neighbour correlations ignored)"


def parse_elements(text: str) -> list[str]:
    """``"Fe,Pt"`` → ``["Fe", "Pt"]``, checking every symbol."""
    elements = [e.strip() for e in text.split(",") if e.strip()]
    if not elements:
        raise UserError("--elements must name at least one element, e.g. --elements Pt")
    for element in elements:
        try:
            atomic_number(element)
        except ValueError:
            raise UserError(f"--elements: {element!r} is no element symbol") from None
    return elements


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``trace`` verb."""
    parser = subparsers.add_parser(
        "trace",
        help="trace the atoms of a 3D density map",
        description=(
            "Find the atoms of the density map MAP (an MRC file or a map.zarr group) and write "
            "OUT_DIR/atoms.parquet (positions in Å in the map frame, centred on voxel N//2; "
            "element, intensity, fit quality, position uncertainties) and OUT_DIR/model.xyz. "
            "Half maps (--half-maps, or arrays half1/half2 of a map.zarr) give per-atom "
            "position uncertainties, and only atoms found in both half maps are kept. "
            "With --stack and --orientations (stack.zarr and orientations.parquet of "
            "`nanorecon reconstruct`), the traced positions are then refined by least squares "
            "against the measured projections (Gaussian atoms, per-species intensity and width, "
            "per-image scale and offset), which avoids the map's missing-wedge blur along z; "
            "the map-traced positions are kept as x_map_A, y_map_A, z_map_A. "
            "Nothing is written unless the whole step succeeds."
        ),
    )
    parser.add_argument("map", metavar="MAP", help="density map: MRC file or zarr group")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (may exist)")
    parser.add_argument(
        "--elements", required=True, help="comma-separated element symbols, e.g. Fe,Pt"
    )
    parser.add_argument(
        "--voxel-size-A",
        type=float,
        metavar="A",
        help="voxel size in Å; overrides the file's (required when the file has none)",
    )
    parser.add_argument(
        "--half-maps", nargs=2, metavar=("H1", "H2"), help="two half-set maps (MRC or zarr)"
    )
    parser.add_argument(
        "--upsample", type=int, default=1, metavar="N", help="upsampling factor (default: 1)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="peak threshold on the matched-filtered map, in map units (default: auto)",
    )
    parser.add_argument(
        "--noise-sigmas",
        type=float,
        default=5.0,
        metavar="K",
        help=(
            "automatic threshold: multiple of the filtered map's noise σ, from the half maps "
            "when given (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--half-map-sigmas",
        type=float,
        metavar="K",
        help=(
            "with half maps, keep only atoms at least K noise σ above background in each half "
            "map on its own (default: --noise-sigmas; -inf turns the test off)"
        ),
    )
    parser.add_argument(
        "--min-neighbours",
        type=int,
        default=0,
        metavar="N",
        help=(
            "keep only atoms with at least N neighbours at 0.8–1.2 × the bulk bond length "
            "(e.g. 3 for a close-packed particle; default: %(default)s, off)"
        ),
    )
    parser.add_argument(
        "--min-distance-A",
        type=float,
        metavar="D",
        help="minimum atom separation in Å (default: 0.7 × smallest bulk bond length)",
    )
    parser.add_argument(
        "--z-exponent",
        type=float,
        default=1.7,
        metavar="E",
        help="Z-contrast exponent, intensity ∝ Z**E (default: %(default)s)",
    )
    refine = parser.add_argument_group("refinement against the projections")
    refine.add_argument(
        "--stack",
        metavar="STACK_ZARR",
        help="particle stack (stack.zarr) the map was reconstructed from; needs --orientations",
    )
    refine.add_argument(
        "--orientations",
        metavar="PARQUET",
        help="orientations.parquet (rotations and shifts) of the stack's images; needs --stack",
    )
    refine.add_argument(
        "--refine-iterations",
        type=int,
        default=15,
        metavar="N",
        help="most refinement iterations (default: %(default)s)",
    )
    refine.add_argument(
        "--refine-max-step-A",
        type=float,
        default=0.2,
        metavar="D",
        help="largest move of one atom per iteration in Å (default: %(default)s)",
    )
    parser.set_defaults(run=run)
    return parser


def _refine(
    atoms: pd.DataFrame, args: argparse.Namespace, voxel_size_A: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Refine the traced positions against the stack; the map-traced ones are kept."""
    images, attrs = read_particle_stack(args.stack)
    table, rotations = read_orientations(args.orientations)
    pixel_size_A = float(attrs["pixel_size_A"])
    if len(table) != len(images):
        raise UserError(
            f"{args.orientations} has {len(table)} rows but {args.stack} holds {len(images)} images"
        )
    if abs(pixel_size_A - voxel_size_A) > 1e-3 * voxel_size_A:
        raise UserError(
            f"{args.stack} has {pixel_size_A:.4g} Å pixels but the map {voxel_size_A:.4g} Å voxels"
        )
    if attrs.get("modality") != "tomography":
        # Gaussian atoms model incoherent (HAADF) images, not phase contrast under a CTF.
        log.warning(
            "%s has modality %r: the refinement assumes HAADF-like images (intensity = sum of "
            "Gaussian atoms)",
            args.stack,
            attrs.get("modality"),
        )
    used = table["used"].to_numpy(dtype=bool)
    if not used.any():
        raise UserError(f"{args.orientations} marks no image as used")
    log.info(
        "refining %d atoms against %d images (%d×%d px) of %s",
        len(atoms),
        int(used.sum()),
        images.shape[1],
        images.shape[2],
        args.stack,
    )
    start = time.perf_counter()
    traced = atoms[["x_A", "y_A", "z_A"]].to_numpy(dtype=float)
    fit = refine_positions(
        images[used],
        rotations[np.flatnonzero(used)],
        table[["shift_x_A", "shift_y_A"]].to_numpy(dtype=float)[used],
        traced,
        atoms["element"].astype(str).to_numpy(),
        pixel_size_A=pixel_size_A,
        n_iterations=args.refine_iterations,
        max_step_A=args.refine_max_step_A,
        callback=lambda i, rms: log.info("refinement iteration %d: RMS residual %.5g", i, rms),
    )
    moved = np.linalg.norm(fit.displacement_A, axis=1)
    log.info(
        "refined in %.1f s (%d iterations, %s): RMS move %.1f pm (x %.1f, y %.1f, z %.1f), "
        "largest %.1f pm; σ %.1f / %.1f / %.1f pm (x / y / z)",
        time.perf_counter() - start,
        fit.n_iterations,
        "converged" if fit.converged else "not converged",
        100.0 * float(np.sqrt(np.mean(moved**2))),
        *(100.0 * np.sqrt(np.mean(fit.displacement_A**2, axis=0))),
        100.0 * float(moved.max()),
        *(100.0 * np.sqrt(np.mean(fit.sigma_A**2, axis=0))),
    )
    out = atoms.copy()
    for axis, name in enumerate("xyz"):
        out[f"{name}_map_A"] = traced[:, axis]
        out[f"{name}_A"] = fit.positions_A[:, axis]
    out["refine_shift_A"] = moved
    for axis, name in enumerate("xyz"):
        out[f"sigma_proj_{name}_A"] = fit.sigma_A[:, axis]
    metadata = {
        "positions": "refined against the projections (nanorecon.atoms.refine_positions)",
        "refinement": {
            "stack": str(args.stack),
            "orientations": str(args.orientations),
            "n_images": int(used.sum()),
            "n_iterations": fit.n_iterations,
            "converged": fit.converged,
            "rms_residual": fit.rms_history.tolist(),
            "species": list(fit.species),
            "amplitudes": fit.amplitudes.tolist(),
            "widths_A": fit.widths_A.tolist(),
            "columns": {
                "x_map_A": "Å (traced from the map, before refinement)",
                "y_map_A": "Å (traced from the map, before refinement)",
                "z_map_A": "Å (traced from the map, before refinement)",
                "refine_shift_A": "Å (|refined − map-traced position|)",
                "sigma_proj_x_A": _SIGMA_UNIT,
                "sigma_proj_y_A": _SIGMA_UNIT,
                "sigma_proj_z_A": _SIGMA_UNIT,
            },
        },
    }
    return out, metadata


def run(args: argparse.Namespace) -> int:
    """Trace one map; errors propagate to :func:`nanorecon.cli.main` as one line."""
    elements = parse_elements(args.elements)
    if args.upsample < 1:
        raise UserError(f"--upsample must be at least 1, not {args.upsample}")
    if args.min_neighbours < 0:
        raise UserError(f"--min-neighbours must be at least 0, not {args.min_neighbours}")
    if (args.stack is None) != (args.orientations is None):
        raise UserError("--stack and --orientations go together: give both or neither")
    if args.refine_iterations < 0:
        raise UserError(f"--refine-iterations must be at least 0, not {args.refine_iterations}")
    if not args.refine_max_step_A > 0:
        raise UserError(f"--refine-max-step-A must be positive, not {args.refine_max_step_A}")
    volume, voxel_size_A, extras = read_map(args.map, voxel_size_A=args.voxel_size_A)
    log.info("%s: map %s, voxel %.4g Å", args.map, "×".join(map(str, volume.shape)), voxel_size_A)
    half_maps = extras.get("half_maps")
    if args.half_maps:
        half_maps = []
        for path in args.half_maps:
            half, size, _ = read_map(path, voxel_size_A=args.voxel_size_A or voxel_size_A)
            if half.shape != volume.shape or abs(size - voxel_size_A) > 1e-3 * voxel_size_A:
                raise UserError(
                    f"half map {path} ({half.shape}, {size:.4g} Å) does not match the map "
                    f"{args.map} ({volume.shape}, {voxel_size_A:.4g} Å)"
                )
            half_maps.append(half)
    start = time.perf_counter()
    atoms = trace_atoms(
        volume,
        voxel_size_A,
        elements=elements,
        upsample=args.upsample,
        threshold=args.threshold,
        noise_sigmas=args.noise_sigmas,
        min_distance_A=args.min_distance_A,
        z_exponent=args.z_exponent,
        half_maps=half_maps,
        half_map_sigmas=args.half_map_sigmas,
        min_neighbours=args.min_neighbours,
    )
    if atoms.empty:
        raise UserError(f"no atoms found in {args.map}; check the map or lower --threshold")
    counts = atoms["element"].value_counts().to_dict()
    log.info(
        "traced %d atoms (%s) in %.1f s",
        len(atoms),
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        time.perf_counter() - start,
    )
    refinement: dict[str, Any] = {"positions": "traced from the map"}
    if args.stack is not None:
        atoms, refinement = _refine(atoms, args, voxel_size_A)
    metadata = {
        "stage": "trace",
        "source_map": str(args.map),
        "voxel_size_A": voxel_size_A,
        "elements": elements,
        "half_maps": half_maps is not None,
        "frame": "map frame, origin at voxel N//2 of each axis (nanorecon.geometry)",
        **refinement,
    }
    written = write_particle_outputs(args.out_dir, atoms, atoms_metadata=metadata)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return 0
