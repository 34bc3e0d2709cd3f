"""``nanorecon trace MAP OUT_DIR --elements ...``: a density map → traced atoms."""

from __future__ import annotations

import argparse
import logging
import time

from nanorecon.atoms import trace_atoms
from nanorecon.cli import UserError
from nanorecon.io import read_map, write_particle_outputs
from nanorecon.lattice import atomic_number

log = logging.getLogger("nanorecon.trace")


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
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Trace one map; errors propagate to :func:`nanorecon.cli.main` as one line."""
    elements = parse_elements(args.elements)
    if args.upsample < 1:
        raise UserError(f"--upsample must be at least 1, not {args.upsample}")
    if args.min_neighbours < 0:
        raise UserError(f"--min-neighbours must be at least 0, not {args.min_neighbours}")
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
    metadata = {
        "stage": "trace",
        "source_map": str(args.map),
        "voxel_size_A": voxel_size_A,
        "elements": elements,
        "half_maps": half_maps is not None,
        "frame": "map frame, origin at voxel N//2 of each axis (nanorecon.geometry)",
    }
    written = write_particle_outputs(args.out_dir, atoms, atoms_metadata=metadata)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return 0
