"""``nanorecon summarize OUT_DIR PARTICLE_DIR...``: the per-dataset particles and validation tables."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from nanorecon.cli import UserError
from nanorecon.io import read_atoms_parquet, write_table_csv, write_table_parquet
from nanorecon.summary import PARTICLE_UNITS, particle_row

log = logging.getLogger("nanorecon")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``summarize`` verb."""
    parser = subparsers.add_parser(
        "summarize",
        help="collect per-particle results into particles.csv/.parquet and validation.csv",
        description=(
            "Read each PARTICLE_DIR (atoms.parquet, lattice.json, fsc.csv, validation.csv, any of "
            "which may be missing) and write OUT_DIR/particles.csv and particles.parquet, one row "
            "per particle; with --validation-csv also the particles' validation rows in one table."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="dataset results folder")
    parser.add_argument(
        "particles", metavar="PARTICLE_DIR", type=Path, nargs="+", help="per-particle folders"
    )
    parser.add_argument("--dataset", required=True, help="dataset id written in every row")
    parser.add_argument(
        "--validation-csv",
        type=Path,
        metavar="PATH",
        help="also write the validation rows of all particles here (needs their validation.csv)",
    )
    parser.set_defaults(run=run)
    return parser


def _read_optional_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path} is not a readable CSV table ({err}); rerun the step that made it"
        ) from err


def _read_particle(folder: Path) -> tuple[dict, dict | None]:
    if not folder.is_dir():
        raise UserError(f"particle folder {folder} does not exist; run the particle's steps first")
    atoms = (
        read_atoms_parquet(folder / "atoms.parquet")[0]
        if (folder / "atoms.parquet").is_file()
        else None
    )
    lattice = None
    if (folder / "lattice.json").is_file():
        try:
            lattice = json.loads((folder / "lattice.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(
                f"{folder / 'lattice.json'} is not valid JSON ({err}); rerun lattice"
            ) from err
    fsc_table = _read_optional_csv(folder / "fsc.csv")
    validation_table = _read_optional_csv(folder / "validation.csv")
    validation = validation_table.iloc[0].to_dict() if validation_table is not None else None
    row = particle_row(
        folder.name, atoms=atoms, lattice=lattice, fsc_table=fsc_table, validation=validation
    )
    return row, validation


def run(args: argparse.Namespace) -> int:
    """Write the dataset's particles table (and validation table when there is one)."""
    rows, validations = [], []
    for folder in args.particles:
        row, validation = _read_particle(folder)
        rows.append({"dataset": args.dataset, **row})
        if validation is not None:
            validations.append({"dataset": args.dataset, **validation, "particle": folder.name})
    table = pd.DataFrame(rows)
    write_table_csv(args.out_dir / "particles.csv", table)
    write_table_parquet(args.out_dir / "particles.parquet", table, units=PARTICLE_UNITS)
    log.info(
        "%s: %d particle(s), %d ok", args.dataset, len(table), int((table.status == "ok").sum())
    )
    if args.validation_csv is not None:
        if not validations:
            raise UserError(
                "--validation-csv given but no particle folder holds validation.csv; "
                "run nanorecon validate first or drop the option"
            )
        write_table_csv(args.validation_csv, pd.DataFrame(validations))
        log.info("wrote %s", args.validation_csv)
    return 0
