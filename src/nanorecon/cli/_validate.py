"""``nanorecon validate ATOMS_PARQUET TRUTH_ATOMS_CSV OUT_CSV``: score a model against the truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from nanorecon.cli import UserError
from nanorecon.io import read_atoms_parquet, read_truth_atoms, write_table_csv
from nanorecon.validate import score_model

log = logging.getLogger("nanorecon.validate")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``validate`` verb."""
    parser = subparsers.add_parser(
        "validate",
        help="score a traced atomic model against the simulator's ground truth",
        description=(
            "Align the traced atoms (ATOMS_PARQUET) to the true atoms of one particle "
            "(TRUTH_ATOMS_CSV, columns particle, x_A, y_A, z_A, element) allowing rotation, "
            "translation and mirror, match them one-to-one and write a one-row table OUT_CSV: "
            "recall, precision, RMS position error [pm], species accuracy, lattice-parameter "
            "error [%%] and per-component strain RMSE (both models analysed alike)."
        ),
    )
    parser.add_argument("atoms", metavar="ATOMS_PARQUET", help="traced atoms table")
    parser.add_argument("truth", metavar="TRUTH_ATOMS_CSV", help="true atoms (simulator)")
    parser.add_argument("out", metavar="OUT_CSV", help="output table")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--particle", help="particle id in the truth table (needed when it holds several)"
    )
    which.add_argument(
        "--matched",
        type=Path,
        metavar="CSV",
        help=(
            "a Brownian particle's orientation_validation.csv (from `nanorecon refine-particles "
            "--truth`): score against the true particle its track was matched to"
        ),
    )
    parser.add_argument(
        "--structure",
        choices=("fcc", "bcc", "sc", "none"),
        default="fcc",
        help="lattice for the lattice and strain comparison; none skips it (default: fcc)",
    )
    parser.add_argument(
        "--match-distance-A",
        type=float,
        default=0.8,
        metavar="D",
        help="largest distance of a matched atom pair in Å (default: %(default)s)",
    )
    parser.set_defaults(run=run)
    return parser


def _matched_particle(path: Path) -> str:
    """The true particle id recorded for a Brownian track by `nanorecon refine-particles`."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; run `nanorecon refine-particles --truth` first")
    table = pd.read_csv(path)
    if "true_particle" not in table.columns or len(table) != 1:
        raise UserError(f"{path} must hold one row with a true_particle column")
    return str(table["true_particle"].iloc[0])


def run(args: argparse.Namespace) -> int:
    """Score one particle; errors propagate to :func:`nanorecon.cli.main`."""
    if not args.match_distance_A > 0:
        raise UserError(f"--match-distance-A must be positive, not {args.match_distance_A}")
    particle = args.particle if args.matched is None else _matched_particle(args.matched)
    traced, metadata = read_atoms_parquet(args.atoms)
    truth = read_truth_atoms(args.truth, particle=particle)
    if len(traced) < 3 or len(truth) < 3:
        raise UserError(
            f"too few atoms to align: {len(traced)} traced in {args.atoms}, "
            f"{len(truth)} true in {args.truth}"
        )
    structure = None if args.structure == "none" else args.structure
    # score the strain as the lattice step defined it (smoothing length, frame) on both models
    lattice_options = {
        key: metadata[key]
        for key in ("strain_sigma_A", "strain_frame")
        if metadata.get(key) is not None
    }
    result = score_model(
        traced,
        truth,
        match_distance_A=args.match_distance_A,
        structure=structure,
        lattice_options=lattice_options,
    )
    log.info(
        "recall %.4f, precision %.4f, RMS %.1f pm, species accuracy %.4f, radial shift %.1f pm "
        "(surface) and %.1f pm (interior)",
        result["recall"],
        result["precision"],
        result["rms_error_pm"],
        result["species_accuracy"],
        result["radial_shift_surface_pm"],
        result["radial_shift_interior_pm"],
    )
    row = {
        "particle": particle if particle is not None else "",
        **result,
        "strain_sigma_A": lattice_options.get("strain_sigma_A", float("nan")),
    }
    write_table_csv(args.out, pd.DataFrame([row]))
    log.info("wrote %s", args.out)
    return 0
