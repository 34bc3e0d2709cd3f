"""``nanorecon lattice ATOMS_PARQUET OUT_DIR``: lattice fit, displacement and strain per atom."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from nanorecon.cli import UserError
from nanorecon.io import read_atoms_parquet, write_particle_outputs
from nanorecon.lattice import analyse_lattice, radial_distance_profile

log = logging.getLogger("nanorecon.lattice")

STRAIN_DEFINITION = (
    "least-squares deformation gradient F mapping ideal-lattice bonds to measured bonds, "
    "neighbours weighted by exp(-|bond|^2 / (2 strain_sigma_A^2)) up to 2.5 strain_sigma_A, "
    "eps = (F + F^T)/2 - I; tensor (not engineering) shear components"
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``lattice`` verb."""
    parser = subparsers.add_parser(
        "lattice",
        help="fit the lattice of traced atoms; displacement and strain per atom",
        description=(
            "Read traced atoms (ATOMS_PARQUET from `nanorecon trace`), identify the local "
            "structure and twin planes, fit the global lattice to the particle's core and "
            "compute per-atom lattice sites, displacements, coordination and strain. Writes "
            "OUT_DIR/atoms.parquet and atoms.csv (all columns), lattice.json, "
            "radial_profile.csv and model.xyz/.cif/.pdb, all or nothing."
        ),
    )
    parser.add_argument("atoms", metavar="ATOMS_PARQUET", help="traced atoms table")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (may exist)")
    parser.add_argument(
        "--structure",
        choices=("fcc", "bcc", "sc"),
        default="fcc",
        help="lattice to fit (default: %(default)s)",
    )
    parser.add_argument(
        "--strain-sigma-A",
        type=float,
        metavar="SIGMA",
        help=(
            "smoothing length σ of the Gaussian-weighted strain fit in Å "
            "(default: one fitted lattice parameter)"
        ),
    )
    parser.add_argument(
        "--strain-frame",
        choices=("map", "crystal"),
        default="map",
        help="axes of the strain components (default: %(default)s)",
    )
    parser.add_argument(
        "--reference-lattice-parameter-A",
        type=float,
        metavar="A",
        help="strain-free reference lattice parameter in Å (default: the fitted one)",
    )
    parser.add_argument(
        "--core-depth-A",
        type=float,
        metavar="D",
        help="fit the lattice to atoms at least D Å below the surface (default: 0.8 a)",
    )
    parser.add_argument(
        "--fit-surface",
        action="store_true",
        help="fit the lattice to all atoms, not the core",
    )
    parser.add_argument(
        "--profile-bin-A",
        type=float,
        default=1.0,
        metavar="W",
        help="radial bin width of radial_profile.csv in Å (default: %(default)s)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Analyse one particle's lattice; errors propagate to :func:`nanorecon.cli.main`."""
    for name in ("strain_sigma_A", "reference_lattice_parameter_A", "profile_bin_A"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, not {value}")
    if args.core_depth_A is not None and args.core_depth_A < 0:
        raise UserError(f"--core-depth-A must not be negative, not {args.core_depth_A}")
    traced, metadata = read_atoms_parquet(args.atoms)
    if len(traced) < 8:
        raise UserError(f"{args.atoms} holds {len(traced)} atoms; a lattice fit needs 8 or more")
    if "element" not in traced.columns:
        raise UserError(f"{args.atoms} has no element column; trace it with `nanorecon trace`")
    log.info("%s: %d atoms", args.atoms, len(traced))
    per_atom, summary = analyse_lattice(
        traced,
        structure=args.structure,
        strain_sigma_A=args.strain_sigma_A,
        strain_frame=args.strain_frame,
        reference_lattice_parameter_A=args.reference_lattice_parameter_A,
        fit_surface=args.fit_surface,
        core_depth_A=args.core_depth_A,
    )
    # Lattice columns replace same-named ones of an already analysed input.
    atoms = pd.concat([traced.drop(columns=per_atom.columns, errors="ignore"), per_atom], axis=1)
    positions = atoms[["x_A", "y_A", "z_A"]].to_numpy(dtype=float)
    profile = radial_distance_profile(positions, bin_width_A=args.profile_bin_A)
    log.info(
        "%s lattice a = %.4f Å (%+.2f %% from bulk), fitted on %d %s atoms, RMS %.1f pm; %s",
        summary["structure"],
        summary["lattice_parameter_A"],
        summary["deviation_from_bulk_percent"],
        summary["n_fitted"],
        summary["lattice_fit_atoms"],
        100.0 * summary["rms_residual_A"],
        summary["twinning"].replace("_", " "),
    )
    strain = {
        "strain_definition": STRAIN_DEFINITION,
        "strain_sigma_A": summary["strain_sigma_A"],
        "strain_frame": summary["strain_frame"],
        "reference_lattice_parameter_A": summary["reference_lattice_parameter_A"],
    }
    table_metadata = {
        **{k: v for k, v in metadata.items() if k != "units"},
        "stage": "lattice",
        "source_atoms": str(args.atoms),
        **strain,
        "lattice_fit_atoms": summary["lattice_fit_atoms"],
        "core_depth_A": summary["core_depth_A"],
    }
    lattice = {**summary, **strain, "source_atoms": str(args.atoms)}
    written = write_particle_outputs(
        args.out_dir,
        atoms,
        atoms_metadata=table_metadata,
        atoms_csv=True,
        lattice=lattice,
        radial_profile=profile,
        models=("xyz", "cif", "pdb"),
    )
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return 0
