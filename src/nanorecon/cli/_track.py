"""``nanorecon track RAW_ZARR OUT_DIR``: Brownian movie → particle tracks and stage drift."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nanorecon.brownian import track_movie, track_summary
from nanorecon.cli import UserError
from nanorecon.io import open_raw_zarr, write_drift, write_tracks

log = logging.getLogger("nanorecon.track")

#: frames read at once (rounded up to whole zarr chunks)
BLOCK_FRAMES = 32
#: frames read on each side of a block for the temporal smoothing of the detector
HALO_FRAMES = 4


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``track`` verb."""
    parser = subparsers.add_parser(
        "track",
        help="detect and track particles in a liquid-cell movie",
        description=(
            "Read a Brownian raw.zarr block by block: normalise the dose, find and notch the "
            "graphene reflections, measure the stage drift, remove the background, detect "
            "particles by their lattice-fringe power and link them into tracks (cut at overlaps "
            "and field exits). Writes OUT_DIR/tracks.parquet, tracks.csv and drift.csv."
        ),
    )
    parser.add_argument("raw", type=Path, metavar="RAW_ZARR", help="ingested movie")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="output folder")
    parser.add_argument(
        "--particle-diameter-A",
        type=float,
        default=20.0,
        metavar="D",
        help="expected particle diameter [Å] (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=3.5,
        metavar="Z",
        help="detection threshold in robust standard deviations (default: %(default)s)",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=10,
        metavar="N",
        help=(
            "frames a particle may go undetected while it is linked frame by frame "
            "(default: %(default)s; longer gaps: --max-gap)"
        ),
    )
    parser.add_argument(
        "--max-gap",
        type=int,
        default=50,
        metavar="N",
        help=(
            "longest run of frames without a detection that gap closing bridges, joining the "
            "track before it to the one after (default: %(default)s; 0: off)"
        ),
    )
    parser.add_argument(
        "--min-frames",
        type=int,
        default=5,
        metavar="N",
        help="fewest good frames of a kept track (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=run)
    return parser


def open_movie(path: Path) -> tuple[Any, dict[str, Any], float]:
    """Open a Brownian raw.zarr; one-line errors for the wrong modality or an empty movie."""
    data, attrs = open_raw_zarr(path)
    modality = attrs.get("modality")
    if modality != "brownian":
        raise UserError(
            f"{path} holds modality {modality!r}; the Brownian front end needs a liquid-cell "
            "movie (tilt series go through `nanorecon reconstruct`)"
        )
    if data.ndim != 3 or data.shape[0] == 0:
        raise UserError(f"{path} holds no frames (shape {tuple(data.shape)})")
    pixel_size_A = attrs.get("pixel_size_A")
    if pixel_size_A is None or not float(pixel_size_A) > 0:
        raise UserError(f"{path} has no positive pixel_size_A attribute")
    return data, attrs, float(pixel_size_A)


def block_step(chunk: int) -> int:
    """Frames per block: about BLOCK_FRAMES, rounded up to whole chunks of the store."""
    return max(1, -(-BLOCK_FRAMES // chunk)) * chunk


def blocks(n: int, chunk: int) -> list[tuple[int, int]]:
    """(start, stop) of blocks of whole chunks covering ``range(n)``."""
    step = block_step(chunk)
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def run(args: argparse.Namespace) -> int:
    """Track one movie; errors propagate to :func:`nanorecon.cli.main` as one line."""
    if args.particle_diameter_A <= 0 or args.memory < 0 or args.min_frames < 1 or args.max_gap < 0:
        raise UserError(
            "need --particle-diameter-A > 0, --memory >= 0, --max-gap >= 0 and --min-frames >= 1"
        )
    data, _, p = open_movie(args.raw)
    n, ny, nx = data.shape
    if min(ny, nx) * p < 2 * args.particle_diameter_A:
        raise UserError(f"frames of {nx}×{ny} px are too small for {args.particle_diameter_A} Å")
    with tqdm(
        total=2 * n, desc="track", unit="frame", file=sys.stderr, disable=args.no_progress
    ) as bar:
        result = track_movie(
            lambda start, stop: data[start:stop],
            n,
            (ny, nx),
            p,
            diameter_A=args.particle_diameter_A,
            threshold=args.threshold,
            memory=args.memory,
            max_gap_frames=args.max_gap,
            min_frames=args.min_frames,
            block_frames=block_step(int(data.chunks[0])),
            halo_frames=HALO_FRAMES,
            progress=bar.update,
        )
    log.info("support lattice: %d reflections notched", result.n_reflections)
    tracks, detections, drift_A = result.tracks, result.detections, result.drift_A
    if detections.empty:
        raise UserError(
            f"no particle found in {args.raw} (diameter {args.particle_diameter_A} Å, threshold "
            f"{args.threshold}); check --particle-diameter-A or lower --threshold"
        )
    summary = track_summary(tracks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_tracks(out / "tracks.parquet", tracks)
    write_drift(out / "drift.csv", drift_A, pixel_size_A=p)
    good = summary[summary["status"] == "ok"]
    if good.empty:
        raise UserError(f"no usable particle track in {args.raw} (all tracks rejected)")
    log.info(
        "%d detections, %d tracks, %d kept; drift %.2f Å over the movie",
        len(detections),
        len(summary),
        len(good),
        float(np.hypot(*(drift_A[-1] - drift_A[0]))),
    )
    return 0
