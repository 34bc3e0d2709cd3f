"""``nanorecon reconstruct RAW_ZARR OUT_DIR``: tilt series → particle stack, refined map, FSC."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase.data import atomic_numbers
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from nanorecon.backend import asnumpy, to_device
from nanorecon.cli import UserError
from nanorecon.geometry import rotations_from_quaternions
from nanorecon.io import (
    open_raw_zarr,
    orientations_table,
    write_map_mrc,
    write_map_zarr,
    write_orientations,
    write_particle_stack,
    write_table_csv,
)
from nanorecon.refine import (
    atomic_reference,
    fsc,
    half_set_reconstruction,
    refine_orientations,
    resolution_at,
)
from nanorecon.tomography import (
    alignment_errors,
    prepare_tilt_series,
    render_truth_map,
    spherical_support,
)

log = logging.getLogger("nanorecon.reconstruct")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``reconstruct`` verb."""
    parser = subparsers.add_parser(
        "reconstruct",
        help="align a tilt series, refine its geometry and reconstruct half maps and FSC",
        description=(
            "Read a tomography raw.zarr, remove the background, normalise intensities, estimate "
            "the tilt axis and shifts, refine orientations by projection matching, reconstruct "
            "the map and two half maps, and write the particle folder OUT_DIR (stack.zarr, "
            "orientations.parquet, map.zarr, map.mrc, fsc.csv, reconstruction_log.csv). With "
            "--truth, also score the result against the simulator's ground truth."
        ),
    )
    parser.add_argument("raw", type=Path, metavar="RAW_ZARR", help="ingested tilt series")
    parser.add_argument(
        "out", type=Path, metavar="OUT_DIR", help="particle folder, e.g. results/D/particles/p000"
    )
    parser.add_argument("--truth", type=Path, metavar="TRUTH_DIR", help="simulator truth folder")
    parser.add_argument(
        "--iterations", type=int, default=50, metavar="N", help="iterations per reconstruction"
    )
    parser.add_argument(
        "--rounds", type=int, default=8, metavar="N", help="projection-matching rounds"
    )
    parser.add_argument("--box", type=int, metavar="N", help="box edge [px] (default: automatic)")
    parser.add_argument(
        "--tilt-axis-deg", type=float, metavar="DEG", help="known tilt axis (default: estimate)"
    )
    parser.add_argument(
        "--tilt-axis-only",
        action="store_true",
        help="correct each image's tilt only (default: turns about all three microscope axes)",
    )
    parser.add_argument(
        "--map-reference",
        action="store_true",
        help="match the images against the map itself (default: Gaussian atoms at its peaks)",
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for the NUFFT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=run)
    return parser


def _load_tilt_series(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    data, attrs = open_raw_zarr(path)
    modality = attrs.get("modality")
    if modality != "tomography":
        raise UserError(
            f"{path} holds modality {modality!r}; `nanorecon reconstruct` needs a tomography "
            "tilt series (Brownian movies go through the Brownian front end)"
        )
    tilts = attrs.get("tilt_angles_deg")
    if tilts is None:
        raise UserError(f"{path} has no tilt_angles_deg attribute; re-ingest with a .tlt file")
    tilts = np.asarray(tilts, dtype=float)
    if tilts.shape != (data.shape[0],):
        raise UserError(f"{path} holds {data.shape[0]} images but {tilts.size} tilt angles")
    pixel_size_A = attrs.get("pixel_size_A")
    if pixel_size_A is None or not float(pixel_size_A) > 0:
        raise UserError(f"{path} has no positive pixel_size_A attribute")
    return np.asarray(data[...], dtype=np.float32), tilts, float(pixel_size_A)


def _load_truth(truth_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    atoms_path, tilts_path = truth_dir / "atoms.csv", truth_dir / "tilts.csv"
    for path in (atoms_path, tilts_path):
        if not path.is_file():
            raise UserError(f"truth file {path} does not exist; --truth takes the truth/ folder")
    sigma_A = 0.35
    spec_path = truth_dir / "simulation.json"
    if spec_path.is_file():
        spec = json.loads(spec_path.read_text(encoding="utf-8")).get("spec", {})
        sigma_A = float(
            np.hypot(spec.get("probe_sigma_A", 0.34), spec.get("thermal_sigma_A", 0.08))
        )
    return pd.read_csv(atoms_path), pd.read_csv(tilts_path), sigma_A


def run(args: argparse.Namespace) -> int:
    """Reconstruct one tilt series; errors propagate to :func:`nanorecon.cli.main` as one line."""
    if args.iterations < 1 or args.rounds < 1:
        raise UserError("--iterations and --rounds must be at least 1")
    images, tilts, pixel_size_A = _load_tilt_series(args.raw)
    truth = _load_truth(args.truth) if args.truth is not None else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    stack = prepare_tilt_series(
        images, tilts, pixel_size_A=pixel_size_A, box_px=args.box, tilt_axis_deg=args.tilt_axis_deg
    )
    box = stack.images.shape[1]
    log.info(
        "%d images, box %d px, tilt axis %.2f°, particle radius %.1f Å",
        len(tilts),
        box,
        stack.tilt_axis_deg,
        stack.particle_radius_A,
    )
    write_particle_stack(
        out / "stack.zarr",
        stack.images,
        pixel_size_A=pixel_size_A,
        attrs={
            "modality": "tomography",
            "source": str(args.raw),
            "tilt_angles_deg": [float(t) for t in tilts],
            "tilt_axis_deg": stack.tilt_axis_deg,
            "crop_offset_px": list(stack.crop_offset_px),
            "particle_radius_A": stack.particle_radius_A,
        },
    )

    support = spherical_support(
        box, stack.particle_radius_A + 2.0, pixel_size_A, device=args.device
    )
    options = {"support": support, "n_threads": args.threads}
    # A single-axis holder changes only the tilt, but the estimated axis direction then stays.
    tilt_axis = Rotation.from_euler("z", stack.tilt_axis_deg, degrees=True).apply([0.0, 1.0, 0.0])
    device_images = to_device(stack.images, args.device)
    n_half = 2 * args.iterations
    total = (args.rounds + 1) * args.iterations + 2 * n_half
    log_rows: list[dict[str, Any]] = []
    with tqdm(total=total, desc="reconstruct", disable=args.no_progress, file=sys.stderr) as bar:

        def record(stage: str, round_index: int, iteration: int, error: float) -> None:
            log_rows.append(
                {"stage": stage, "round": round_index, "iteration": iteration, "error": error}
            )
            bar.set_postfix(stage=stage, error=f"{error:.4f}")
            bar.update()

        refined = refine_orientations(
            device_images,
            stack.rotations,
            stack.shifts_A,
            voxel_size_A=pixel_size_A,
            n_rounds=args.rounds,
            n_iterations=args.iterations,
            rotation_axes=tilt_axis[:, None] if args.tilt_axis_only else None,
            # Atoms at the map's peaks cannot hold the streaks that each image's wrong geometry
            # leaves in the map, so the images do not confirm their own errors.
            reference=None
            if args.map_reference
            else lambda volume: atomic_reference(volume, voxel_size_A=pixel_size_A),
            callback=lambda i, row: log.info(
                "round %d: low-pass %.2f Å, error %.4f, score %.5f, RMS Δangle %.3f°, "
                "RMS Δshift %.3f Å, gauge %.3f° / %.3f Å",
                i,
                row["lowpass_A"],
                row["projection_error"],
                row["mean_score"],
                row["rms_angle_change_deg"],
                row["rms_shift_change_A"],
                row["gauge_angle_deg"],
                row["gauge_shift_A"],
            ),
            iteration_callback=lambda r, i, e: record(
                "refine" if r < args.rounds else "final", r, i, e
            ),
            **options,
        )
        halves = np.arange(len(tilts)) % 2
        counter = {"half": 0}

        def half_callback(iteration: int, error: float) -> None:
            # Two half maps run one after the other with the same iteration count.
            record(f"half{1 + counter['half'] // n_half}", -1, iteration, error)
            counter["half"] += 1

        half = half_set_reconstruction(
            device_images,
            refined.rotations,
            voxel_size_A=pixel_size_A,
            shifts_A=refined.shifts_A,
            half_sets=halves,
            full_map=False,
            n_iterations=n_half,
            callback=half_callback,
            **options,
        )

    volume = asnumpy(refined.volume)
    half_maps = [asnumpy(m) for m in half.half_maps]
    table = orientations_table(
        refined.rotations, refined.shifts_A, half_sets=halves + 1, scores=refined.scores
    )
    write_orientations(out / "orientations.parquet", table)
    write_map_zarr(
        out / "map.zarr",
        {"map": volume, "half1": half_maps[0], "half2": half_maps[1]},
        voxel_size_A=pixel_size_A,
        attrs={"resolution_fsc0143_A": half.resolution_A},
    )
    write_map_mrc(out / "map.mrc", volume, voxel_size_A=pixel_size_A)
    write_table_csv(out / "reconstruction_log.csv", pd.DataFrame(log_rows))
    fsc_table = half.fsc.rename(columns={"fsc": "fsc_half"})
    log.info("gold-standard resolution (FSC 0.143): %.3f Å", half.resolution_A)

    if truth is not None:
        atoms, truth_tilts, sigma_A = truth
        if len(truth_tilts) != len(tilts):
            raise UserError(f"truth has {len(truth_tilts)} tilts but the data {len(tilts)} images")
        true_rotations = rotations_from_quaternions(
            truth_tilts[["qx", "qy", "qz", "qw"]].to_numpy()
        )
        errors = alignment_errors(
            refined.rotations,
            refined.shifts_A + np.asarray(stack.crop_offset_px) * pixel_size_A,
            true_rotations,
            truth_tilts[["shift_x_A", "shift_y_A"]].to_numpy(),
            pixel_size_A=pixel_size_A,
        )
        truth_map = render_truth_map(
            volume,
            atoms[["x_A", "y_A", "z_A"]].to_numpy(),
            np.array([atomic_numbers[e] for e in atoms["element"]], dtype=float) ** 1.7,
            voxel_size_A=pixel_size_A,
            sigma_A=sigma_A,
            global_rotation=errors.attrs["global_rotation"],
        )
        truth_fsc = fsc(volume, truth_map.volume, pixel_size_A)
        fsc_table["fsc_truth"] = truth_fsc["fsc"].to_numpy()
        summary = pd.DataFrame(
            [
                {
                    "n_images": len(tilts),
                    "shift_rms_error_px": float(np.sqrt(np.mean(errors["shift_error_px"] ** 2))),
                    "angle_rms_error_deg": float(np.sqrt(np.mean(errors["angle_error_deg"] ** 2))),
                    "shift_max_error_px": float(errors["shift_error_px"].max()),
                    "angle_max_error_deg": float(errors["angle_error_deg"].max()),
                    "tilt_axis_estimate_deg": stack.tilt_axis_deg,
                    "tilt_axis_true_deg": float(truth_tilts["tilt_axis_deg"].iloc[0]),
                    "fsc_truth_05_A": resolution_at(truth_fsc, 0.5),
                    "truth_correlation": truth_map.correlation,
                }
            ]
        )
        write_table_csv(out / "alignment_validation.csv", summary)
        log.info(
            "vs truth: shifts %.3f px RMS, angles %.3f° RMS, FSC(truth) = 0.5 at %.3f Å",
            summary["shift_rms_error_px"].iloc[0],
            summary["angle_rms_error_deg"].iloc[0],
            summary["fsc_truth_05_A"].iloc[0],
        )
    write_table_csv(out / "fsc.csv", fsc_table)
    return 0
