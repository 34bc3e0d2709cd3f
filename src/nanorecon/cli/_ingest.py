"""``nanorecon ingest SHEET DATASET OUT_ZARR``: one raw dataset → ``raw.zarr``."""

from __future__ import annotations

import argparse
import logging

from nanorecon.io import ingest, read_sample_sheet, sample_row

log = logging.getLogger("nanorecon")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``ingest`` verb."""
    parser = subparsers.add_parser(
        "ingest",
        help="validate one raw dataset and stream it into a zarr store",
        description=(
            "Read DATASET's row from the tab-separated sample SHEET, validate the raw file and "
            "its metadata, and stream the images into the zarr v3 group OUT_ZARR (float32, "
            "chunked along the image axis). Nothing is written unless the whole file is good."
        ),
    )
    parser.add_argument("sheet", metavar="SHEET", help="tab-separated sample sheet")
    parser.add_argument("dataset", metavar="DATASET", help="dataset id (the sheet's first column)")
    parser.add_argument(
        "out", metavar="OUT_ZARR", help="output zarr group, e.g. results/D/raw.zarr"
    )
    parser.add_argument(
        "--chunk-mb",
        type=float,
        default=32.0,
        metavar="N",
        help="target chunk size in MiB, whole images per chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar on stderr"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Ingest one dataset; errors propagate to :func:`nanorecon.cli.main` as one line."""
    if args.chunk_mb <= 0:
        raise ValueError(f"--chunk-mb must be positive, not {args.chunk_mb}")
    row = sample_row(read_sample_sheet(args.sheet), args.dataset)
    summary = ingest(row, args.out, chunk_mb=args.chunk_mb, progress=not args.no_progress)
    n, ny, nx = summary["shape"]
    log.info(
        "%s: %d images of %d×%d, pixel %.4g Å, sha256 %s",
        summary["out_path"],
        n,
        ny,
        nx,
        summary["pixel_size_A"],
        summary["source_sha256"][:16],
    )
    return 0
