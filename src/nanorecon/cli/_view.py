"""``nanorecon view PARTICLE_DIR``: the map and the atoms of a particle in napari."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

import numpy as np

from nanorecon.cli import UserError
from nanorecon.io import read_atoms_parquet, read_map

log = logging.getLogger("nanorecon.view")

INSTALL_HINT = (
    "napari is not installed; install it with `pip install 'napari[all]'` (or "
    "`conda install -c conda-forge napari pyqt`) and run `nanorecon view` again"
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``view`` verb."""
    parser = subparsers.add_parser(
        "view",
        help="open a particle's map and atomic model in napari",
        description=(
            "Open PARTICLE_DIR/map.zarr (or map.mrc) as an image in Å and PARTICLE_DIR/atoms.parquet "
            "as points coloured by element, in napari (an optional dependency)."
        ),
    )
    parser.add_argument("folder", metavar="PARTICLE_DIR", type=Path, help="particle folder")
    parser.set_defaults(run=run)
    return parser


def _map_path(folder: Path) -> Path:
    for name in ("map.zarr", "map.mrc"):
        if (folder / name).exists():
            return folder / name
    raise UserError(f"{folder} holds no map.zarr or map.mrc; run `nanorecon reconstruct` first")


def run(args: argparse.Namespace) -> int:
    """Show the particle; returns when the napari window is closed."""
    try:
        napari = importlib.import_module("napari")
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    folder: Path = args.folder
    if not folder.is_dir():
        raise UserError(f"particle folder {folder} does not exist")
    volume, voxel_size_A, _ = read_map(_map_path(folder))
    viewer = napari.Viewer(title=f"nanorecon: {folder}")
    # world coordinates in Å with 0 Å on voxel N//2 (nanorecon.geometry)
    viewer.add_image(
        volume,
        name="map",
        scale=(voxel_size_A,) * 3,
        translate=tuple(-(n // 2) * voxel_size_A for n in volume.shape),
        colormap="gray",
        rendering="mip",
    )
    if (folder / "atoms.parquet").is_file():
        atoms, _ = read_atoms_parquet(folder / "atoms.parquet")
        for element, rows in atoms.groupby("element", sort=True):
            viewer.add_points(
                rows[["z_A", "y_A", "x_A"]].to_numpy(dtype=np.float64),
                name=f"atoms {element}",
                size=1.0,
                face_color=_ELEMENT_COLOURS[len(viewer.layers) % len(_ELEMENT_COLOURS)],
            )
    else:
        log.info("%s has no atoms.parquet: showing the map only", folder)
    viewer.dims.ndisplay = 3
    napari.run()
    return 0


_ELEMENT_COLOURS = ("yellow", "cyan", "magenta", "orange", "lime", "red")
