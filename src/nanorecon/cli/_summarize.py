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
            "per particle; with --validation-csv also the particles' validation rows in one table. "
            "With --refinement (a Brownian dataset's refinement.tsv) every particle of that table "
            "gets a row, those that did not refine with its status and FSC resolution, so that "
            "the tables are rewritten even when no particle reached the atom stage."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="dataset results folder")
    parser.add_argument(
        "particles", metavar="PARTICLE_DIR", type=Path, nargs="*", help="per-particle folders"
    )
    parser.add_argument("--dataset", required=True, help="dataset id written in every row")
    parser.add_argument(
        "--validation-csv",
        type=Path,
        metavar="PATH",
        help="also write the validation rows of all particles here (needs their validation.csv)",
    )
    parser.add_argument(
        "--refinement",
        type=Path,
        metavar="TSV",
        help=(
            "refinement.tsv of a Brownian dataset: adds a row for each of its particles not "
            "given as PARTICLE_DIR, how many ab initio starts agree to every particle row, and "
            "its orientation errors to the validation rows"
        ),
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
    traced = folder / "traced" / "atoms.parquet"
    n_rejected = read_atoms_parquet(traced)[0].attrs.get("n_rejected") if traced.is_file() else None
    row = particle_row(
        folder.name,
        atoms=atoms,
        lattice=lattice,
        fsc_table=fsc_table,
        validation=validation,
        n_rejected=n_rejected,
    )
    return row, validation


def _read_refinement(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", dtype={"particle": str, "status": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path} is not a readable refinement table ({err}); rerun refine-particles"
        ) from err
    if not {"particle", "status"} <= set(table.columns):
        raise UserError(
            f"{path} has no particle and status columns; it is not a refinement.tsv of "
            "nanorecon refine-particles"
        )
    return table


#: refinement.tsv columns copied into the validation rows (simulated movies only): the
#: orientation errors, and the largest Fourier gap of the found and of the true orientations
ORIENTATION_COLUMNS = [
    "true_particle",
    "orientation_error_median_deg",
    "orientation_error_p90_deg",
    "fourier_gap_deg",
    "true_fourier_gap_deg",
]
#: refinement.tsv columns copied into every particle row: whether other seeds reproduce the
#: ab initio solution
REPRODUCIBILITY_COLUMNS = ["abinitio_agreeing_starts", "abinitio_disagreement_deg"]


def _untraced_row(folder: Path, status: str) -> dict:
    """A particle that stopped before the atom stage: its refinement status and FSC only.

    Atoms or a lattice left in its folder by an earlier run are not read: they are not this
    run's results."""
    row = particle_row(folder.name, fsc_table=_read_optional_csv(folder / "fsc.csv"))
    row["status"] = status
    return row


def _merge_refinement(
    rows: list[dict], validations: list[dict], refinement: pd.DataFrame, root: Path, dataset: str
) -> None:
    """Add the particles of refinement.tsv that were not traced, and its columns, in place."""
    traced = {row["particle"] for row in rows}
    by_particle = refinement.set_index("particle")
    for pid, status in refinement[["particle", "status"]].to_numpy():
        if pid in traced:
            continue
        status = "refined, not traced" if status == "ok" else status
        rows.append({"dataset": dataset, **_untraced_row(root / "particles" / pid, status)})
        # refined particles were matched to a true particle; rejected tracks were not
        if "true_particle" in by_particle.columns and pd.notna(
            by_particle.at[pid, "true_particle"]
        ):
            validations.append({"dataset": dataset, "particle": pid})
    for rows_of, columns in ((validations, ORIENTATION_COLUMNS), (rows, REPRODUCIBILITY_COLUMNS)):
        for row in rows_of:
            for column in columns:
                if column in by_particle.columns and row["particle"] in by_particle.index:
                    row[column] = by_particle.at[row["particle"], column]
    rows.sort(key=lambda row: row["particle"])
    validations.sort(key=lambda row: row["particle"])


def run(args: argparse.Namespace) -> int:
    """Write the dataset's particles table (and validation table when there is one)."""
    if not args.particles and args.refinement is None:
        raise UserError("give at least one PARTICLE_DIR, or --refinement for a Brownian dataset")
    refinement = _read_refinement(args.refinement) if args.refinement is not None else None
    rows, validations = [], []
    for folder in args.particles:
        row, validation = _read_particle(folder)
        rows.append({"dataset": args.dataset, **row})
        if validation is not None:
            validations.append({"dataset": args.dataset, **validation, "particle": folder.name})
    if refinement is not None:
        _merge_refinement(rows, validations, refinement, args.refinement.parent, args.dataset)
    table = pd.DataFrame(rows, columns=None if rows else ["dataset", "particle", "status"])
    if "abinitio_agreeing_starts" in table.columns:  # a count, empty where never refined
        table["abinitio_agreeing_starts"] = table["abinitio_agreeing_starts"].astype("Int64")
    write_table_csv(args.out_dir / "particles.csv", table)
    write_table_parquet(args.out_dir / "particles.parquet", table, units=PARTICLE_UNITS)
    log.info(
        "%s: %d particle(s), %d ok", args.dataset, len(table), int((table.status == "ok").sum())
    )
    if args.validation_csv is not None:
        if not validations and refinement is None:
            raise UserError(
                "--validation-csv given but no particle folder holds validation.csv; "
                "run nanorecon validate first or drop the option"
            )
        columns = None if validations else ["dataset", "particle"]
        validation_table = pd.DataFrame(validations, columns=columns)
        if "true_particle" in validation_table.columns:
            validation_table["true_particle"] = validation_table["true_particle"].astype("Int64")
        write_table_csv(args.validation_csv, validation_table)
        log.info("wrote %s", args.validation_csv)
    return 0
