"""``nanorecon refine-particles DATASET_DIR``: every Brownian particle stack → refined map and FSC.

One dask task per particle (:func:`nanorecon.parallel.map_particles`). Each task writes its
outputs atomically and its completion marker ``refined.json`` last, so a killed run resumes with
the finished particles untouched.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nanorecon.atoms import trace_atoms
from nanorecon.backend import asnumpy, to_device
from nanorecon.brownian import align_orientations, reconstruct_particle
from nanorecon.cli import UserError
from nanorecon.geometry import largest_fourier_gap_deg, rotations_from_quaternions
from nanorecon.io import (
    atomic_output,
    open_raw_zarr,
    orientations_table,
    read_orientations,
    read_particle_stack,
    write_json,
    write_map_mrc,
    write_map_zarr,
    write_orientations,
    write_table_csv,
)
from nanorecon.lattice import fit_lattice, lattice_site_score, vegard_lattice_parameter_A
from nanorecon.parallel import dask_client, map_particles
from nanorecon.validate import is_centrosymmetric, point_group

log = logging.getLogger("nanorecon.refine_particles")

#: completion marker of one particle, written after all its other outputs
MARKER = "refined.json"
#: largest Fourier gap [deg] past which refine-particles warns: the demo octahedron's map with its
#: true orientations traced at 8 pm with a 24° gap, 19 pm with 58° and 27 pm with 64°
#: (benchmarks/oracle_atoms_brownian.py), its errors along the gap's direction
WIDE_FOURIER_GAP_DEG = 50.0
#: refinement.tsv columns from the simulator's truth (--truth only)
TRUTH_COLUMNS = [
    "true_particle",
    "orientation_error_median_deg",
    "orientation_error_p90_deg",
    "true_fourier_gap_deg",
]
#: each scored candidate map's figures and traced atoms (``--choose-by lattice``)
CANDIDATE_TABLES = ("candidate_maps.csv", "candidate_atoms.csv")

#: columns of DATASET_DIR/refinement.tsv
REFINEMENT_COLUMNS = [
    "particle",
    "status",
    "n_frames",
    "n_used",
    "resolution_A",
    "independent_resolution_A",
    "abinitio_agreeing_starts",
    "abinitio_disagreement_deg",
    "D_r_rad2_per_s",
    "fourier_gap_deg",
    "high_resolution_kept",
    "map_score_pm",
    "seconds",
    "worker",
    "worker_peak_rss_MB",
    *TRUTH_COLUMNS,
]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``refine-particles`` verb."""
    parser = subparsers.add_parser(
        "refine-particles",
        help="ab initio orientations, refinement, half maps and FSC of every Brownian particle",
        description=(
            "Read DATASET_DIR/particles.tsv (from `nanorecon extract`) and, as one dask task per "
            "particle, find each particle's orientations ab initio, refine them (local search or "
            "projection matching) and reconstruct its map, half maps and gold-standard FSC into "
            "particles/pNNN/{orientations.parquet, map.zarr, map.mrc, fsc.csv, "
            "abinitio_starts.csv, refinement_history.csv, refined.json}. Particles whose "
            "refined.json matches their stack are skipped. Writes DATASET_DIR/refinement.tsv. "
            "With --truth, also orientation_validation.csv per particle."
        ),
    )
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="results/{dataset}")
    parser.add_argument("--cluster", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument(
        "--scheduler-address", default="", metavar="ADDR", help="existing dask scheduler"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="local dask workers")
    parser.add_argument("--threads-per-worker", type=int, default=1, metavar="N")
    parser.add_argument("--no-prior", action="store_true", help="no rotational-diffusion prior")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first ab initio start")
    parser.add_argument("--starts", type=int, default=3, metavar="K", help="ab initio starts")
    parser.add_argument(
        "--refinement",
        choices=["local", "matching"],
        default="local",
        help=(
            "refinement after the ab initio step: local = exhaustive search of orientations and "
            "centres around each frame's, linked by the rotational-diffusion prior; matching = "
            "least-squares projection matching, --rounds rounds (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--joint-resolution-A",
        type=float,
        default=2.5,
        metavar="R",
        help=(
            "--refinement local: iterations whose band stops short of R [Å] refine all frames "
            "together before each half set goes on alone (keep R below lattice resolution; "
            "0: half sets alone from the ab initio step) (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--no-wide-research",
        action="store_true",
        help=(
            "--refinement local: skip the wide re-search of all refined frames against their "
            "common map at lattice resolution (30° ball) and the halves' last iterations from it"
        ),
    )
    parser.add_argument(
        "--high-resolution-rounds",
        type=int,
        default=3,
        metavar="N",
        help=(
            "--refinement local: at most N rounds past 2 Å (bands 1.7, 1.45, 1.23 Å, …), all "
            "frames together after the half sets' own refinement (0: none) "
            "(default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--no-late-research",
        action="store_true",
        help=(
            "--refinement local: skip the late re-search of all frames in a 30° ball at the "
            "first round past 2 Å against the best of those runs' maps, and the rounds again "
            "from there (kept only where its map scores better)"
        ),
    )
    parser.add_argument(
        "--no-particle-mask",
        action="store_true",
        help=(
            "keep the sphere of --particle-diameter-A as the support of the rounds past 2 Å, "
            "and its circle as the frames' comparison mask, instead of the particle's own mask, "
            "the map's region of lattice fringes (written to map.zarr as `mask`), and its "
            "footprint in each frame"
        ),
    )
    parser.add_argument(
        "--choose-by",
        choices=["lattice", "fsc"],
        default="lattice",
        help=(
            "which map to keep, of the two runs past 2 Å (with a CTF, comparisons weighted by "
            "|sin χ| and not) and of the starts --refine-starts refines: lattice = the map "
            "whose traced atoms fill their fitted --structure lattice most closely and "
            "completely (RMS distance over atoms and empty sites inside, each empty site or "
            "outlier counting a/4; truth-free; a few seconds per map), fsc = the finer "
            "half-map FSC (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--refine-starts",
        type=int,
        default=1,
        metavar="N",
        help=(
            "--abinitio crystal: refine the N best ab initio starts (the chosen one first) all "
            "the way and keep the map that --choose-by ranks first: correct chains of one "
            "particle differ by 4–11°, and which refines best shows only in the refined maps; "
            "N times the refinement's cost (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--rounds", type=int, default=4, metavar="N", help="matching rounds (--refinement matching)"
    )
    parser.add_argument(
        "--iterations", type=int, default=20, metavar="N", help="iterations per reconstruction"
    )
    parser.add_argument(
        "--abinitio",
        choices=["crystal", "search"],
        default="crystal",
        help=(
            "ab initio method: crystal = every frame matched to an ideal crystal sphere of the "
            "sheet's element (--structure, --lattice-parameter-A) over one fundamental zone of "
            "a fine SO(3) grid, linked by the rotational-diffusion prior; search = model-free "
            "stochastic search (PRIME-style) with --search-iterations, --search-band-A and "
            "--grid (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--structure",
        choices=["fcc", "bcc", "sc"],
        default="fcc",
        help=(
            "lattice of the crystal reference (--abinitio crystal) and of the maps' lattice fit "
            "(--choose-by lattice) (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--lattice-parameter-A",
        type=float,
        metavar="A",
        help=(
            "lattice parameter of the crystal reference [Å] (default: bulk value of the "
            "elements in DATASET_DIR/raw.zarr, their mean for an alloy)"
        ),
    )
    parser.add_argument(
        "--crystal-grid",
        type=int,
        default=134_000,
        metavar="N",
        help="rotations of the crystal chain's SO(3) grid (default: %(default)s, about 3°)",
    )
    parser.add_argument(
        "--crystal-band-A",
        type=float,
        default=1.8,
        metavar="R",
        help="band limit of the crystal comparison [Å] (default: %(default)s)",
    )
    parser.add_argument(
        "--step-deg",
        type=float,
        default=4.0,
        metavar="DEG",
        help="RMS rotation per frame of the crystal chain's prior [deg] (default: %(default)s)",
    )
    parser.add_argument(
        "--search-iterations",
        type=int,
        default=12,
        metavar="N",
        help="ab initio global-search iterations per start (default: %(default)s)",
    )
    parser.add_argument(
        "--search-band-A",
        type=float,
        nargs=2,
        default=(5.0, 3.5),
        metavar=("FIRST", "LAST"),
        help=(
            "low-pass limit of the first and last ab initio search iterations [Å]; HRTEM frames "
            "near focus hold little signal beyond the first CTF rise (default: 5 3.5)"
        ),
    )
    parser.add_argument(
        "--grid",
        type=int,
        default=5000,
        metavar="N",
        help="rotations of the ab initio search grid (default: %(default)s)",
    )
    parser.add_argument(
        "--particle-diameter-A",
        type=float,
        default=20.0,
        metavar="D",
        help="particle diameter [Å]; mask and support radius D/2 + 2 Å (default: %(default)s)",
    )
    parser.add_argument(
        "--min-frames",
        type=int,
        default=20,
        metavar="N",
        help="fewest used frames of a particle worth refining (default: %(default)s)",
    )
    parser.add_argument(
        "--max-resolution-A",
        type=float,
        default=2.0,
        metavar="R",
        help=(
            "particles whose half-map FSC reaches 0.143 only at a coarser resolution [Å] are "
            "written but marked failed: their atoms are not resolved (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--min-agreeing-starts",
        type=int,
        default=1,
        metavar="N",
        help=(
            "particles where fewer than N ab initio starts (the chosen one included) find the "
            "same orientations are written but marked failed (1: no check, the agreement is only "
            "reported). Correct crystal chains of one particle can differ by 4–11° (median), "
            "more than the agreement threshold, so on the demo movie the check stopped more good "
            "runs than bad ones (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--frame-rate-hz", type=float, metavar="F", help="default: from DATASET_DIR/raw.zarr"
    )
    parser.add_argument("--truth", type=Path, metavar="TRUTH_DIR", help="simulator truth folder")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--force", action="store_true", help="recompute finished particles too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=run)
    return parser


def _stack_signature(folder: Path) -> dict[str, int]:
    """What identifies the input of a particle: a re-extracted stack invalidates its result."""
    signature = {}
    for name in ("stack.zarr/zarr.json", "stack.zarr/data/zarr.json"):
        path = folder / name
        if path.is_file():
            signature[name] = path.stat().st_mtime_ns
    return signature


def is_complete(folder: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The marker of a particle finished with these settings on its current stack, or None."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same_input = info.get("stack_signature") == _stack_signature(folder)
    return info if same_input and info.get("settings") == settings else None


def _match_truth(table: pd.DataFrame, truth_frames: pd.DataFrame) -> tuple[int, float]:
    """True particle nearest to the track: mean distance over the frames both hold [Å]."""
    best = (-1, float("inf"))
    track = table.set_index("frame")[["x_A", "y_A"]]
    for particle, rows in truth_frames.groupby("particle"):
        rows = rows.set_index("frame")
        shared = track.index.intersection(rows.index)
        if shared.empty:
            continue
        distance = np.hypot(
            track.loc[shared, "x_A"] - rows.loc[shared, "x_A"],
            track.loc[shared, "y_A"] - rows.loc[shared, "y_A"],
        ).mean()
        if distance < best[1]:
            best = (int(particle), float(distance))
    return best


def _orientation_validation(
    pid: str, table: pd.DataFrame, result: Any, truth_dir: Path
) -> dict[str, Any]:
    frames = pd.read_csv(truth_dir / "frames.csv")
    true_particle, distance = _match_truth(table, frames)
    if true_particle < 0:
        raise ValueError(f"{truth_dir / 'frames.csv'} shares no frame with particle {pid}")
    rows = frames[frames["particle"] == true_particle].set_index("frame")
    used = result.used & table["frame"].isin(rows.index).to_numpy()
    truth = rotations_from_quaternions(
        rows.loc[table["frame"][used], ["qx", "qy", "qz", "qw"]].to_numpy()
    )
    # a symmetric particle's orientation is defined only modulo its point group, and a
    # centrosymmetric one's also modulo the half turn about the beam (identical projections)
    group, centrosymmetric = None, False
    atoms_csv = truth_dir / "atoms.csv"
    if atoms_csv.is_file():
        atoms = pd.read_csv(atoms_csv)
        if "particle" in atoms.columns:
            mine = atoms.loc[atoms["particle"] == true_particle, ["x_A", "y_A", "z_A"]]
            if len(mine) >= 3:
                group = point_group(mine.to_numpy(dtype=float))
                centrosymmetric = is_centrosymmetric(mine.to_numpy(dtype=float))
    alignment = align_orientations(
        result.rotations[np.flatnonzero(used)],
        truth,
        symmetry=group,
        centrosymmetric=centrosymmetric,
    )
    errors = alignment.errors_deg
    strict = errors
    if centrosymmetric:
        strict = align_orientations(
            result.rotations[np.flatnonzero(used)], truth, symmetry=group
        ).errors_deg
    return {
        "particle": pid,
        "true_particle": true_particle,
        "match_distance_A": distance,
        "symmetry_order": 1 if group is None else len(group),
        "centrosymmetric": centrosymmetric,
        "n_frames": int(used.sum()),
        "orientation_error_median_deg": float(np.median(errors)),
        "orientation_error_p90_deg": float(np.percentile(errors, 90)),
        "orientation_error_median_without_half_turn_deg": float(np.median(strict)),
        "mirrored": bool(alignment.mirrored),
        # the same frames' gap in their true orientations: a found gap (fourier_gap_deg) much
        # wider than it means the found orientations bunch up; much narrower, that they spread
        # onto symmetry-equivalent views (the octahedron's true 64° became 33°)
        "true_fourier_gap_deg": largest_fourier_gap_deg(truth),
    }


def _ctf(folder: Path) -> dict[str, float] | None:
    """The optics of ``ctf.json`` (voltage, defocus, Cs) when the stack was phase flipped."""
    path = folder / "ctf.json"
    if not path.is_file():
        return None
    optics = json.loads(path.read_text(encoding="utf-8"))
    if not optics.get("phase_flipped", False):
        return None
    return {key: float(optics[key]) for key in ("voltage_kV", "defocus_A", "cs_mm")}


def _abinitio_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the settings' ab initio method."""
    if settings["abinitio"] == "crystal":
        return {
            "lattice_parameter_A": settings["lattice_parameter_A"],
            "structure": settings["structure"],
            "n_grid": settings["crystal_grid"],
            "lowpass_A": settings["crystal_band_A"],
            "step_deg": settings["step_deg"],
        }
    return {
        "n_iterations": settings["search_iterations"],
        "n_grid": settings["grid"],
        "initial_lowpass_A": settings["search_band_A"][0],
        "lowpass_A": settings["search_band_A"][1],
    }


def _sheet_elements(dataset: Path) -> list[str]:
    """The elements named by ``raw.zarr`` (empty when it names none)."""
    raw = dataset / "raw.zarr"
    elements = open_raw_zarr(raw)[1].get("elements") if raw.exists() else None
    return sorted(set(elements or []))


class LatticeFitScore:
    """``map_score`` of :func:`reconstruct_particle`: how closely and how completely a map's
    traced atoms (the trace step's defaults) fill their fitted ideal `structure` lattice
    (:func:`~nanorecon.lattice.lattice_site_score`, [Å]; lower is better).

    Truth-free. A map whose orientations are better resolves its atoms closer to where a crystal
    puts them, and loses fewer; a real particle's strain and vacancies add the same to every map
    of it, so the figure still ranks maps of one particle. NaN where no lattice can be traced or
    fitted. Each scored map's figures and traced atoms are kept, in call order, in `records`
    and `atoms` for the particle's ``candidate_maps.csv`` and ``candidate_atoms.csv``.
    """

    def __init__(self, elements: list[str], structure: str, voxel_size_A: float) -> None:
        self.elements = elements
        self.structure = structure
        self.voxel_size_A = voxel_size_A
        self.records: list[dict[str, Any]] = []
        self.atoms: list[pd.DataFrame] = []

    def __call__(self, volume: Any, half_maps: tuple[Any, Any]) -> float:
        candidate = len(self.records)
        record: dict[str, Any] = {"candidate": candidate}
        try:
            atoms = trace_atoms(
                asnumpy(volume),
                self.voxel_size_A,
                elements=self.elements,
                half_maps=[asnumpy(m) for m in half_maps],
            )
            positions = atoms[["x_A", "y_A", "z_A"]].to_numpy(float)
            fit = fit_lattice(positions, structure=self.structure)
        except ValueError as error:
            log.warning("no lattice fit of candidate map %d (%s)", candidate, error)
            self.records.append({**record, "score_pm": float("nan")})
            return float("nan")
        parts = lattice_site_score(positions, fit)
        self.records.append(
            {
                **record,
                "n_atoms": parts.n_atoms,
                "n_outliers": parts.n_outliers,
                "n_empty_sites": parts.n_empty,
                "fit_rms_pm": 100 * parts.rms_residual_A,
                "lattice_parameter_A": fit.lattice_parameter_A,
                "score_pm": 100 * parts.score_A,
            }
        )
        self.atoms.append(atoms.assign(candidate=candidate))
        log.info(
            "candidate map %d: %d atoms traced, %.1f pm from their fitted %s lattice, "
            "%d outliers, %d empty sites inside: score %.1f pm",
            candidate,
            parts.n_atoms,
            100 * parts.rms_residual_A,
            self.structure,
            parts.n_outliers,
            parts.n_empty,
            100 * parts.score_A,
        )
        return float(parts.score_A)

    def table(self, variants: pd.DataFrame) -> pd.DataFrame:
        """`records` as a table, with the ``start`` and ``variant`` of each map where `variants`
        (:attr:`ParticleReconstruction.variants`, in scoring order) names every one."""
        table = pd.DataFrame(self.records)
        if len(variants) == len(table) and {"start", "variant"} <= set(variants):
            table.insert(1, "start", variants["start"].to_numpy())
            table.insert(2, "variant", variants["variant"].to_numpy())
            table["kept"] = variants["kept"].astype(bool).to_numpy()
        return table


def _lattice_parameter(dataset: Path, value: float | None, structure: str) -> float:
    """The crystal reference's lattice parameter: given, or the bulk value of the elements."""
    if value is not None:
        if not value > 0:
            raise UserError(f"--lattice-parameter-A must be positive, not {value}")
        return float(value)
    raw = dataset / "raw.zarr"
    elements = _sheet_elements(dataset)
    if not elements:
        raise UserError(f"{raw} names no elements; pass --lattice-parameter-A")
    try:
        return vegard_lattice_parameter_A(elements, structure=structure)
    except ValueError as error:
        raise UserError(f"{raw}: {error}; pass --lattice-parameter-A") from None


def resolution_failure(
    resolution_A: float, independent_resolution_A: float, max_resolution_A: float
) -> str:
    """Why a particle's FSC fails the resolution gate ("" when it passes).

    Both the final half maps and the half sets as refined apart (before the wide re-search and
    the high-resolution rounds, which share all frames and so lift a wrong solution's FSC as
    well) must reach `max_resolution_A` [Å].
    """
    if not resolution_A <= max_resolution_A:
        return f"FSC 0.143 at {resolution_A:.2f} Å, coarser than {max_resolution_A} Å"
    if not independent_resolution_A <= max_resolution_A:
        return (
            f"FSC 0.143 at {independent_resolution_A:.2f} Å with the half sets refined apart "
            f"(before the stages that share them), coarser than {max_resolution_A} Å"
        )
    return ""


def start_agreement(starts: pd.DataFrame) -> tuple[int, float]:
    """Starts that found the chosen solution (itself included), and the median disagreement of
    the other starts with it [deg] (NaN with one start)."""
    others = starts.loc[~starts["chosen"].to_numpy(dtype=bool), "agreement_deg"]
    disagreement = float(np.median(others)) if len(others) else float("nan")
    return int(starts["agrees"].to_numpy(dtype=bool).sum()), disagreement


def refine_particle_task(folder: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Refine one particle folder and write its outputs; returns its completion marker.

    Module-level so that dask workers import it. Finished particles (marker matching the stack
    and `settings`) are returned from their marker without recomputation.
    """
    path = Path(folder)
    done = is_complete(path, settings)
    if done is not None:
        return {**done, "skipped": True}
    # A stale marker must not survive a partial rewrite of the outputs below.
    (path / MARKER).unlink(missing_ok=True)
    start = time.perf_counter()
    images, attrs = read_particle_stack(path / "stack.zarr")
    table, _ = read_orientations(path / "orientations.parquet")
    pixel_size_A = float(attrs["pixel_size_A"])
    n_used = int((table["used"].to_numpy(dtype=bool) & (table["weight"].to_numpy() > 0)).sum())
    if n_used < settings["min_frames"]:
        raise ValueError(f"{n_used} used frames, fewer than {settings['min_frames']}")
    frames = table["frame"].to_numpy() if "frame" in table else np.arange(len(table))
    map_score = None
    if settings.get("choose_by") == "lattice":
        map_score = LatticeFitScore(settings["elements"], settings["structure"], pixel_size_A)
    result = reconstruct_particle(
        to_device(images, settings["device"]),
        pixel_size_A=pixel_size_A,
        frame_rate_hz=settings["frame_rate_hz"],
        frames=frames,
        used=table["used"].to_numpy(dtype=bool),
        weights=table["weight"].to_numpy(dtype=float),
        particle_radius_A=settings["particle_radius_A"],
        use_prior=settings["use_prior"],
        seed=settings["seed"],
        n_starts=settings["n_starts"],
        abinitio=settings["abinitio"],
        ctf=_ctf(path),
        abinitio_options=_abinitio_options(settings),
        refinement=settings["refinement"],
        joint_resolution_A=settings.get("joint_resolution_A"),
        wide_research=settings.get("wide_research", True),
        high_resolution_rounds=settings.get("high_resolution_rounds", 3),
        late_research=settings.get("late_research", True),
        mask_from_map=settings.get("particle_mask", True),
        n_rounds=settings["n_rounds"],
        n_iterations=settings["n_iterations"],
        map_score=map_score,
        refine_starts=settings.get("refine_starts", 1),
        n_threads=settings["n_threads"],
    )
    refined = orientations_table(
        result.rotations,
        result.shifts_A,
        half_sets=result.half_sets,
        scores=result.scores,
        weights=table["weight"].to_numpy(dtype=float),
        used=result.used,
    )
    for column in ("frame", "x_A", "y_A", "reason"):
        if column in table:
            refined[column] = table[column].to_numpy()
    write_orientations(path / "orientations.parquet", refined)
    volume = asnumpy(result.volume)
    halves = [asnumpy(m) for m in result.half_maps]
    map_attrs = {
        "resolution_fsc0143_A": result.resolution_A,
        "modality": "brownian",
        "ctf": (
            "phase flipped; amplitudes restored by a Wiener-regularised reconstruction"
            if _ctf(path)
            else "none"
        ),
    }
    maps = {"map": volume, "half1": halves[0], "half2": halves[1]}
    if result.mask is not None:
        # the final maps' support (1 inside; the own mask past 2 Å, grown), for masked FSCs
        maps["mask"] = asnumpy(result.mask).astype(np.float32)
    write_map_zarr(
        path / "map.zarr",
        maps,
        voxel_size_A=pixel_size_A,
        attrs=map_attrs,
    )
    write_map_mrc(path / "map.mrc", volume, voxel_size_A=pixel_size_A)
    write_table_csv(path / "fsc.csv", result.fsc.rename(columns={"fsc": "fsc_half"}))
    write_table_csv(path / "abinitio_starts.csv", result.starts)
    write_table_csv(path / "refinement_history.csv", result.history)
    write_table_csv(path / "high_resolution_runs.csv", result.variants)
    for name in CANDIDATE_TABLES:
        (path / name).unlink(missing_ok=True)  # an earlier run's, which this one did not score
    if map_score is not None and map_score.records:
        # every scored map's atoms, so that other scores can be compared without refining again
        write_table_csv(path / "candidate_maps.csv", map_score.table(result.variants))
        if map_score.atoms:
            write_table_csv(
                path / "candidate_atoms.csv", pd.concat(map_score.atoms, ignore_index=True)
            )
    reasons = []
    too_coarse = resolution_failure(
        result.resolution_A, result.independent_resolution_A, settings["max_resolution_A"]
    )
    if too_coarse:
        reasons.append(too_coarse)
    agreeing, disagreement_deg = start_agreement(result.starts)
    if agreeing < min(settings["min_agreeing_starts"], len(result.starts)):
        reasons.append(
            f"ab initio not reproducible: {agreeing} of {len(result.starts)} starts found the "
            f"chosen orientations (the others {disagreement_deg:.0f}° off, median)"
        )
    status = "failed: " + "; ".join(reasons) if reasons else "ok"
    marker = {
        "particle": path.name,
        "status": status,
        "n_frames": int(len(table)),
        "n_used": int(result.used.sum()),
        "resolution_A": float(result.resolution_A),
        "independent_resolution_A": float(result.independent_resolution_A),
        "abinitio_agreeing_starts": agreeing,
        "abinitio_disagreement_deg": disagreement_deg,
        "D_r_rad2_per_s": float(result.rotational_diffusion_rad2_per_s),
        "D_r_abinitio_rad2_per_s": float(result.abinitio_rotational_diffusion_rad2_per_s),
        # the map's missing cone: a short movie may view the particle from a cone of directions
        "fourier_gap_deg": largest_fourier_gap_deg(result.rotations[np.flatnonzero(result.used)]),
        **_kept_run(result),
    }

    if settings.get("truth"):
        validation = _orientation_validation(path.name, table, result, Path(settings["truth"]))
        write_table_csv(path / "orientation_validation.csv", pd.DataFrame([validation]))
        marker.update({key: validation[key] for key in TRUTH_COLUMNS})
    marker.update(
        {
            "seconds": time.perf_counter() - start,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            # ru_maxrss is in KiB on Linux: the worker process's peak so far
            "worker_peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "settings": settings,
            "stack_signature": _stack_signature(path),
        }
    )
    write_json(path / MARKER, marker)
    return {**marker, "skipped": False}


def _kept_run(result: Any) -> dict[str, Any]:
    """The kept run of the rounds past 2 Å ("" without them) and the kept map's score as pm."""
    kept = result.variants.loc[result.variants["kept"].astype(bool), "variant"]
    return {
        "high_resolution_kept": str(kept.iloc[0]) if len(kept) else "",
        "map_score_pm": 100 * float(result.score),
    }


def _frame_rate(dataset: Path, value: float | None) -> float:
    if value is not None:
        if not value > 0:
            raise UserError(f"--frame-rate-hz must be positive, not {value}")
        return float(value)
    raw = dataset / "raw.zarr"
    if raw.exists():
        rate = open_raw_zarr(raw)[1].get("frame_rate_hz")
        if rate is not None and float(rate) > 0:
            return float(rate)
    raise UserError(f"{raw} gives no frame_rate_hz; pass --frame-rate-hz")


def run(args: argparse.Namespace) -> int:
    """Refine all particles of a dataset; errors propagate to :func:`nanorecon.cli.main`."""
    dataset = Path(args.dataset)
    listing_path = dataset / "particles.tsv"
    if not listing_path.is_file():
        raise UserError(f"{listing_path} does not exist; run `nanorecon extract` first")
    counts = (
        args.starts,
        args.rounds,
        args.iterations,
        args.search_iterations,
        args.grid,
        args.crystal_grid,
        args.min_agreeing_starts,
    )
    if min(counts) < 1:
        raise UserError(
            "--starts, --rounds, --iterations, --search-iterations, --grid, --crystal-grid and "
            "--min-agreeing-starts must be at least 1"
        )
    if not 1 <= args.refine_starts <= args.starts:
        raise UserError(f"--refine-starts must be 1 … --starts ({args.starts})")
    if args.refine_starts > 1 and args.abinitio != "crystal":
        raise UserError("--refine-starts above 1 needs --abinitio crystal")
    if args.joint_resolution_A < 0:
        raise UserError(
            f"--joint-resolution-A must be 0 (none) or positive, not {args.joint_resolution_A}"
        )
    if args.starts == 1 and args.min_agreeing_starts > 1:
        log.warning("one ab initio start: whether other seeds reproduce its solution is unchecked")
    if args.truth is not None and not (args.truth / "frames.csv").is_file():
        raise UserError(f"{args.truth}/frames.csv does not exist; --truth takes the truth folder")
    listing = pd.read_csv(listing_path, sep="\t", dtype={"particle": str, "status": str})
    particles = listing.loc[listing["status"] == "ok", "particle"].tolist()
    settings = {
        "device": args.device,
        "frame_rate_hz": _frame_rate(dataset, args.frame_rate_hz),
        "particle_radius_A": 0.5 * args.particle_diameter_A + 2.0,
        "use_prior": not args.no_prior,
        "seed": args.seed,
        "n_starts": args.starts,
        "abinitio": args.abinitio,
        "search_iterations": args.search_iterations,
        "grid": args.grid,
        "search_band_A": [float(v) for v in args.search_band_A],
        "refinement": args.refinement,
        "joint_resolution_A": args.joint_resolution_A or None,
        "wide_research": not args.no_wide_research,
        "high_resolution_rounds": args.high_resolution_rounds,
        "late_research": not args.no_late_research,
        "particle_mask": not args.no_particle_mask,
        "n_rounds": args.rounds,
        "n_iterations": args.iterations,
        "min_frames": args.min_frames,
        "max_resolution_A": args.max_resolution_A,
        "min_agreeing_starts": args.min_agreeing_starts,
        "n_threads": args.threads_per_worker,
        "truth": str(args.truth.absolute()) if args.truth is not None else "",
        "structure": args.structure,
        "choose_by": args.choose_by,
        "refine_starts": args.refine_starts,
        "elements": _sheet_elements(dataset),
    }
    if args.choose_by == "lattice" and not settings["elements"]:
        log.warning(
            "%s names no elements to trace: the runs past 2 Å are chosen by their FSC "
            "(--choose-by fsc)",
            dataset / "raw.zarr",
        )
        settings["choose_by"] = "fsc"
    if args.abinitio == "crystal":
        if not (args.crystal_band_A > 0 and args.step_deg > 0):
            raise UserError("--crystal-band-A and --step-deg must be positive")
        settings.update(
            {
                "lattice_parameter_A": _lattice_parameter(
                    dataset, args.lattice_parameter_A, args.structure
                ),
                "crystal_grid": args.crystal_grid,
                "crystal_band_A": args.crystal_band_A,
                "step_deg": args.step_deg,
            }
        )
        log.info(
            "ab initio from an ideal %s crystal, a = %.4f Å",
            args.structure,
            settings["lattice_parameter_A"],
        )
    folders = [dataset / "particles" / pid for pid in particles]
    if args.force:
        for folder in folders:
            (folder / MARKER).unlink(missing_ok=True)
    todo = [f for f in folders if is_complete(f, settings) is None]
    log.info(
        "%d particle(s): %d finished, %d to refine",
        len(folders),
        len(folders) - len(todo),
        len(todo),
    )
    results: dict[str, Any] = {}
    if todo:
        with dask_client(
            kind=args.cluster,
            scheduler_address=args.scheduler_address or None,
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
        ) as client:
            outcomes = map_particles(
                refine_particle_task,
                [f.name for f in todo],
                [(str(f), settings) for f in todo],
                client=client,
                progress=not args.no_progress,
            )
        results = {o.key: o for o in outcomes}
    rows = []
    for folder in folders:
        outcome = results.get(folder.name)
        if outcome is not None and not outcome.ok:
            rows.append({"particle": folder.name, "status": f"failed: {outcome.error}"})
            continue
        info = outcome.value if outcome is not None else is_complete(folder, settings)
        rows.append({k: info.get(k) for k in REFINEMENT_COLUMNS})
        log.info(
            "%s: %s, %d frames, FSC 0.143 at %.2f Å, largest Fourier gap %.0f°, D_r %.3g rad²/s, "
            "%.0f s",
            folder.name,
            info["status"],
            info["n_used"],
            info["resolution_A"],
            info.get("fourier_gap_deg", float("nan")),  # absent from older markers
            info["D_r_rad2_per_s"],
            info["seconds"],
        )
        if info.get("fourier_gap_deg", 0.0) > WIDE_FOURIER_GAP_DEG:
            log.warning(
                "%s: its frames leave a %.0f° Fourier gap (a cone of unseen directions), so its "
                "atoms lose precision along one direction; a longer movie fills it",
                folder.name,
                info["fourier_gap_deg"],
            )
    for pid, status in listing.loc[listing["status"] != "ok", ["particle", "status"]].to_numpy():
        rows.append({"particle": pid, "status": f"failed: {status}"})
    table = pd.DataFrame(rows, columns=REFINEMENT_COLUMNS)
    for column in ("n_frames", "n_used", "abinitio_agreeing_starts", "true_particle"):
        table[column] = table[column].astype("Int64")  # failed rows stay empty
    if args.truth is None:
        table = table.drop(columns=TRUTH_COLUMNS)
    with atomic_output(dataset / "refinement.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    failed = int((table["status"] != "ok").sum())
    log.info("wrote %s: %d ok, %d failed", dataset / "refinement.tsv", len(table) - failed, failed)
    return 0
