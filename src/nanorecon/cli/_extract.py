"""``nanorecon extract RAW_ZARR TRACKS OUT_DIR``: tracked particles → per-particle stacks."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from nanorecon.brownian import (
    extract_boxes,
    fringe_quality,
    initial_orientations,
    lattice_notch_filter,
    normalise_dose,
    phase_flip,
    power_spectrum_sum,
    remove_background,
    select_frames,
    track_summary,
)
from nanorecon.cli import UserError
from nanorecon.cli._track import blocks, open_movie
from nanorecon.io import (
    atomic_output,
    orientations_table,
    read_tracks,
    write_json,
    write_orientations,
    write_particle_stack,
)

log = logging.getLogger("nanorecon.extract")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``extract`` verb."""
    parser = subparsers.add_parser(
        "extract",
        help="cut one phase-flipped, quality-scored particle stack per track",
        description=(
            "Read the movie and its tracks, cut a sub-pixel centred box around each good frame "
            "of each kept track (dose normalised, graphene notched, background removed), flip "
            "its phases by the CTF sign, score its lattice-fringe power and write "
            "OUT_DIR/particles/pNNN/{stack.zarr, orientations.parquet, ctf.json} and "
            "OUT_DIR/particles.tsv."
        ),
    )
    parser.add_argument("raw", type=Path, metavar="RAW_ZARR", help="ingested movie")
    parser.add_argument("tracks", type=Path, metavar="TRACKS", help="tracks.parquet or .csv")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--box", type=int, default=96, metavar="N", help="box edge [px]")
    parser.add_argument(
        "--particle-diameter-A",
        type=float,
        default=20.0,
        metavar="D",
        help="particle diameter [Å], for the quality mask (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=run)
    return parser


def _optics(attrs: dict[str, Any], path: Path) -> dict[str, float]:
    optics = {}
    for key in ("voltage_kV", "defocus_A", "cs_mm"):
        value = attrs.get(key)
        if value is None or not np.isfinite(float(value)):
            raise UserError(f"{path} has no {key}; fill the sample sheet's {key} and re-ingest")
        optics[key] = float(value)
    return optics


def run(args: argparse.Namespace) -> int:
    """Extract particle stacks; errors propagate to :func:`nanorecon.cli.main` as one line."""
    if args.box < 8 or args.box % 2:
        raise UserError(f"--box must be an even number of at least 8 px, not {args.box}")
    data, attrs, p = open_movie(args.raw)
    optics = _optics(attrs, args.raw)
    tracks = read_tracks(args.tracks)
    summary = track_summary(tracks)
    kept = summary.loc[summary["status"] == "ok", "track"].tolist()
    if not kept:
        raise UserError(f"{args.tracks} holds no usable track; nothing to extract")
    good = tracks[(tracks["status"] == "ok") & tracks["track"].isin(kept)]
    n, ny, nx = data.shape
    ranges = blocks(n, int(data.chunks[0]))
    boxes: dict[int, list[np.ndarray]] = {t: [] for t in kept}
    rows: dict[int, list[pd.DataFrame]] = {t: [] for t in kept}
    with tqdm(
        total=2 * n, desc="extract", unit="frame", file=sys.stderr, disable=args.no_progress
    ) as bar:
        power = None
        for start, stop in ranges:
            part = power_spectrum_sum(normalise_dose(np.asarray(data[start:stop])))
            power = part if power is None else power + part
            bar.update(stop - start)
        notch, _ = lattice_notch_filter(power, p, image_shape=(ny, nx))
        for start, stop in ranges:
            clean = remove_background(normalise_dose(np.asarray(data[start:stop])), p, notch=notch)
            here = good[(good["frame"] >= start) & (good["frame"] < stop)]
            for (frame, track), row in here.groupby(["frame", "track"]):
                cut = extract_boxes(
                    clean[int(frame) - start], row[["x_A", "y_A"]].to_numpy(), p, box_px=args.box
                )
                boxes[int(track)].append(phase_flip(cut, p, **optics)[0])
                rows[int(track)].append(row)
            bar.update(stop - start)
    out = Path(args.out) / "particles"
    out.mkdir(parents=True, exist_ok=True)
    listing = []
    for _, info in summary.iterrows():
        track = int(info["track"])
        pid = f"p{track:03d}"
        entry = {"particle": pid, "track": track, "n_frames": 0, "n_used": 0}
        if track not in boxes or not boxes[track]:
            listing.append({**entry, "status": f"rejected: {info['end_reason']}"})
            continue
        stack = np.stack(boxes[track])
        frames = pd.concat(rows[track], ignore_index=True)
        quality = fringe_quality(stack, p, radius_A=0.5 * args.particle_diameter_A)
        selection = select_frames(quality)
        with warnings.catch_warnings():
            # identity rotations are gimbal-locked in ZYZ by construction; the quaternions hold
            warnings.simplefilter("ignore", UserWarning)
            table = orientations_table(**initial_orientations(selection))
        table["frame"] = frames["frame"].to_numpy()
        table["x_A"] = frames["x_A"].to_numpy()
        table["y_A"] = frames["y_A"].to_numpy()
        table["reason"] = selection["reason"].to_numpy()
        folder = out / pid
        folder.mkdir(parents=True, exist_ok=True)
        write_particle_stack(
            folder / "stack.zarr",
            stack,
            pixel_size_A=p,
            attrs={
                "modality": "brownian",
                "source": str(args.raw),
                "track": track,
                "frames": [int(f) for f in frames["frame"]],
                "phase_flipped": True,
            },
        )
        write_orientations(folder / "orientations.parquet", table)
        write_json(folder / "ctf.json", {**optics, "pixel_size_A": p, "phase_flipped": True})
        used = int(selection["used"].sum())
        listing.append({**entry, "n_frames": len(stack), "n_used": used, "status": "ok"})
        log.info("%s: %d frames, %d used", pid, len(stack), used)
    with atomic_output(out.parent / "particles.tsv") as tmp:
        pd.DataFrame(listing).to_csv(tmp, sep="\t", index=False)
    return 0
