"""``nanorecon figures PARTICLE_DIR OUT_DIR [--raw RAW_ZARR]``: the figures of a particle as PNGs.

With ``--dataset`` the folder is a dataset's results folder instead, and the per-dataset figures
(lattice parameter against size, run time per job) are drawn.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nanorecon.cli import UserError
from nanorecon.io import (
    atomic_output,
    open_raw_zarr,
    read_atoms_parquet,
    read_orientations,
    read_tracks,
)
from nanorecon.io import read_map as read_map_file

log = logging.getLogger("nanorecon.figures")

#: resolution of the written PNGs [dots per inch]; pixels = figure size [inch] × DPI
DPI = 100

#: figures of one particle (file stem → what it shows)
PARTICLE_FIGURES = {
    "fsc": "FSC curves (half maps; map vs truth when known)",
    "map_axes": "central slices and projections along the map axes",
    "map_zone_axes": "central slices and projections along [100], [110], [111]",
    "model": "atomic model by species and by strain",
    "strain_layers": "strain of three consecutive layers along [001]",
    "radial_profile": "nearest-neighbour distance from core to surface",
    "alignment": "tilt-series shifts, angle corrections and refinement error",
    "tilt_series": "raw tilt images (with --raw)",
    "orientation_coverage": "view directions of a Brownian particle's frames on the sphere",
}
#: figures drawn for one modality only (the others are drawn for both)
MODALITY_FIGURES = {
    "tomography": {"alignment", "tilt_series"},
    "brownian": {"orientation_coverage", "tracks"},
}
#: figures of one dataset
DATASET_FIGURES = {
    "lattice_vs_size": "lattice parameter against particle size",
    "runtime": "wall time and memory per job (Snakemake benchmarks)",
    "tracks": "Brownian particle tracks over a movie frame (tracks.parquet and raw.zarr)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``figures`` verb."""
    parser = subparsers.add_parser(
        "figures",
        help="draw the figures of a particle (or, with --dataset, of a dataset) as PNG files",
        description=(
            "Read a particle folder (fsc.csv, map.zarr, atoms.parquet, lattice.json, "
            "radial_profile.csv, orientations.parquet, stack.zarr, reconstruction_log.csv) and "
            "write OUT_DIR/<figure>.png: "
            + ", ".join(PARTICLE_FIGURES)
            + ". Figures whose inputs are missing are skipped with a message. With --dataset, "
            "DIR is a dataset results folder (particles.csv, benchmarks/**/*.tsv) and the figures "
            "are " + ", ".join(DATASET_FIGURES) + "."
        ),
    )
    parser.add_argument("folder", metavar="PARTICLE_DIR", type=Path, help="particle folder")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder for the PNG files")
    parser.add_argument(
        "--raw", type=Path, metavar="RAW_ZARR", help="ingested tilt series: adds tilt_series.png"
    )
    parser.add_argument(
        "--dataset",
        action="store_true",
        help="PARTICLE_DIR is a dataset results folder: draw the per-dataset figures",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated figure names to draw (default: all whose inputs exist); a named "
        "figure whose inputs are missing is an error",
    )
    parser.set_defaults(run=run)
    return parser


def figures_of(modality: str, *, dataset: bool = False) -> list[str]:
    """Names of the particle (or dataset) figures drawn for a dataset of this modality."""
    names = DATASET_FIGURES if dataset else PARTICLE_FIGURES
    other = set().union(*(v for k, v in MODALITY_FIGURES.items() if k != modality))
    return [name for name in names if name not in other]


def save_figure(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG at :data:`DPI`, atomically."""
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=DPI, format="png")
    log.info("wrote %s", path)
    return path


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable CSV table ({err})") from err


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); rerun the step that made it") from err


def _particle_figures(folder: Path, raw: Path | None) -> dict[str, Callable[[], Figure] | str]:
    """Figure name → a function drawing it, or the reason it cannot be drawn."""
    from nanorecon import figures

    lattice = _read_json(folder / "lattice.json") if (folder / "lattice.json").is_file() else None
    have_map = (folder / "map.zarr").exists()
    have_atoms = (folder / "atoms.parquet").is_file()
    cache: dict[str, object] = {}

    def volume():
        if "map" not in cache:
            cache["map"] = read_map_file(folder / "map.zarr")[:2]
        return cache["map"]

    def atoms():
        if "atoms" not in cache:
            cache["atoms"] = read_atoms_parquet(folder / "atoms.parquet")[0]
        return cache["atoms"]

    plan: dict[str, Callable[[], Figure] | str] = {}
    plan["fsc"] = (
        (lambda: figures.plot_fsc(_read_csv(folder / "fsc.csv")))
        if (folder / "fsc.csv").is_file()
        else "no fsc.csv"
    )
    plan["map_axes"] = (lambda: figures.plot_map_views(*volume())) if have_map else "no map.zarr"
    plan["map_zone_axes"] = (
        (
            lambda: figures.plot_zone_axis_views(
                *volume(), orientation_matrix=lattice["orientation_matrix"]
            )
        )
        if have_map and lattice
        else "needs map.zarr and lattice.json"
    )
    plan["model"] = (lambda: figures.plot_atomic_model(atoms())) if have_atoms else "no atoms"
    plan["strain_layers"] = (
        (
            lambda: figures.plot_strain_layers(
                atoms(), orientation_matrix=lattice["orientation_matrix"]
            )
        )
        if have_atoms and lattice
        else "needs atoms.parquet and lattice.json"
    )
    plan["radial_profile"] = (
        (
            lambda: figures.plot_radial_profile(
                _read_csv(folder / "radial_profile.csv"),
                lattice_parameter_A=lattice["lattice_parameter_A"] if lattice else None,
            )
        )
        if (folder / "radial_profile.csv").is_file()
        else "no radial_profile.csv"
    )
    plan["alignment"] = _alignment_plan(folder, figures)
    plan["tilt_series"] = _tilt_series_plan(raw, figures) if raw is not None else "no --raw"
    plan["orientation_coverage"] = _coverage_plan(folder, figures)
    return plan


def _coverage_plan(folder: Path, figures) -> Callable[[], Figure] | str:
    stack = folder / "stack.zarr"
    if not (folder / "orientations.parquet").is_file() or not stack.exists():
        return "needs orientations.parquet and stack.zarr"
    _, attrs = open_raw_zarr(stack)
    if attrs.get("modality") != "brownian":
        return "not a Brownian particle (a tilt series covers a wedge by design)"

    def draw() -> Figure:
        table, rotations = read_orientations(folder / "orientations.parquet")
        if "used" in table.columns:
            rotations = rotations[table["used"].to_numpy(dtype=bool)]
        # the beam (microscope z) seen from the map frame: R maps map → microscope
        return figures.plot_orientation_coverage(rotations.inv().apply([0.0, 0.0, 1.0]))

    return draw


def _alignment_plan(folder: Path, figures) -> Callable[[], Figure] | str:
    stack = folder / "stack.zarr"
    if not (folder / "orientations.parquet").is_file() or not stack.exists():
        return "needs orientations.parquet and stack.zarr"
    _, attrs = open_raw_zarr(stack)
    if attrs.get("tilt_angles_deg") is None:
        return "not a tilt series (stack.zarr has no tilt_angles_deg)"
    reconstruction_log = folder / "reconstruction_log.csv"

    def draw() -> Figure:
        table, _ = read_orientations(folder / "orientations.parquet")
        return figures.plot_alignment(
            table,
            attrs["tilt_angles_deg"],
            tilt_axis_deg=float(attrs.get("tilt_axis_deg", 0.0)),
            reconstruction_log=(
                _read_csv(reconstruction_log) if reconstruction_log.is_file() else None
            ),
        )

    return draw


def _tilt_series_plan(raw: Path, figures) -> Callable[[], Figure] | str:
    data, attrs = open_raw_zarr(raw)
    if attrs.get("tilt_angles_deg") is None:
        return f"{raw} is not a tilt series (no tilt_angles_deg)"
    return lambda: figures.plot_tilt_series(
        data[...], attrs["tilt_angles_deg"], float(attrs["pixel_size_A"])
    )


def read_benchmarks(dataset_dir: Path) -> pd.DataFrame:
    """All Snakemake benchmark files under ``benchmarks/``: one row per file, ``job`` = its path."""
    rows = []
    root = dataset_dir / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        # a benchmark with repeats holds one row per repeat: keep their mean
        row = table.apply(pd.to_numeric, errors="coerce").mean(numeric_only=True)
        rows.append({"job": str(path.relative_to(root).with_suffix("")), **row.to_dict()})
    return pd.DataFrame(rows)


def _dataset_figures(folder: Path) -> dict[str, Callable[[], Figure] | str]:
    from nanorecon import figures

    plan: dict[str, Callable[[], Figure] | str] = {}
    particles = folder / "particles.csv"
    plan["lattice_vs_size"] = (
        (lambda: figures.plot_lattice_vs_size(_read_csv(particles)))
        if particles.is_file()
        else "no particles.csv"
    )
    benchmarks = read_benchmarks(folder)
    plan["runtime"] = (
        (lambda: figures.plot_runtime(benchmarks)) if len(benchmarks) else "no benchmarks/*.tsv"
    )
    plan["tracks"] = _tracks_plan(folder, figures)
    return plan


def _tracks_plan(folder: Path, figures) -> Callable[[], Figure] | str:
    tracks_path, raw = folder / "tracks.parquet", folder / "raw.zarr"
    if not tracks_path.is_file() or not raw.exists():
        return "needs tracks.parquet and raw.zarr (Brownian datasets)"

    def draw() -> Figure:
        tracks = read_tracks(tracks_path)
        data, attrs = open_raw_zarr(raw)
        # the frame where most particles are tracked, so every track is circled once if possible
        frame = int(tracks.groupby("frame")["track"].nunique().idxmax())
        return figures.plot_tracks(
            tracks,
            image=np.asarray(data[frame], dtype=np.float32),
            pixel_size_A=float(attrs["pixel_size_A"]),
            frame=frame,
        )

    return draw


def run(args: argparse.Namespace) -> int:
    """Draw every figure whose inputs exist; fail when none can be drawn."""
    folder: Path = args.folder
    if not folder.is_dir():
        raise UserError(f"folder {folder} does not exist; run the pipeline steps first")
    if args.dataset and args.raw is not None:
        raise UserError("--raw belongs to particle figures; drop it with --dataset")
    plan = _dataset_figures(folder) if args.dataset else _particle_figures(folder, args.raw)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in plan]
        if unknown:
            raise UserError(
                f"unknown figure(s) {', '.join(unknown)} for --only; choose from {', '.join(plan)}"
            )
        missing = {name: plan[name] for name in wanted if isinstance(plan[name], str)}
        if missing:
            reasons = "; ".join(f"{name}.png: {why}" for name, why in missing.items())
            raise UserError(f"cannot draw the requested figures from {folder}: {reasons}")
        plan = {name: plan[name] for name in wanted}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, draw in plan.items():
        if isinstance(draw, str):
            log.info("skipped %s.png: %s", name, draw)
            continue
        save_figure(draw(), args.out_dir / f"{name}.png")
        written += 1
    if not written:
        raise UserError(f"no figure could be drawn from {folder}: nothing to plot there")
    return 0
