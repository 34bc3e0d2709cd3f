"""File input and output: the sample sheet, raw readers, ingest to zarr, atomic writes.

Only this subpackage touches files; the algorithms take and return arrays and DataFrames.
"""

from ._atomic import OutputPathError, atomic_output, check_output_writable
from ._ingest import IngestError, ingest
from ._maps import MapFormatError, read_map
from ._models import (
    ATOM_COLUMNS,
    ATOM_UNITS,
    AtomsTableError,
    read_atoms_parquet,
    read_truth_atoms,
    write_atoms_csv,
    write_atoms_parquet,
    write_json,
    write_model,
    write_particle_outputs,
    write_table_csv,
    write_table_parquet,
)
from ._particles import (
    MAP_ARRAYS,
    ORIENTATION_COLUMNS,
    orientations_table,
    read_map_zarr,
    read_orientations,
    read_particle_stack,
    write_map_mrc,
    write_map_zarr,
    write_orientations,
    write_particle_stack,
)
from ._readers import RawFormatError, RawStack, open_raw_stack, pixel_size_from_units
from ._samplesheet import SampleSheetError, read_sample_sheet, sample_row
from ._simulated import write_simulated_movie, write_simulated_tomography
from ._tilts import read_tilt_angles
from ._tracks import TRACK_UNITS, read_tracks, write_drift, write_tracks
from ._zarr import create_stack_zarr, images_per_chunk, open_raw_zarr, write_array_zarr

__all__ = [
    "MAP_ARRAYS",
    "ORIENTATION_COLUMNS",
    "orientations_table",
    "read_map_zarr",
    "read_orientations",
    "read_particle_stack",
    "write_map_mrc",
    "write_map_zarr",
    "write_orientations",
    "write_particle_stack",
    "ATOM_COLUMNS",
    "ATOM_UNITS",
    "AtomsTableError",
    "IngestError",
    "MapFormatError",
    "OutputPathError",
    "RawFormatError",
    "RawStack",
    "SampleSheetError",
    "atomic_output",
    "check_output_writable",
    "create_stack_zarr",
    "images_per_chunk",
    "ingest",
    "open_raw_stack",
    "open_raw_zarr",
    "pixel_size_from_units",
    "read_atoms_parquet",
    "read_map",
    "read_sample_sheet",
    "read_tilt_angles",
    "read_truth_atoms",
    "sample_row",
    "write_array_zarr",
    "write_atoms_csv",
    "write_atoms_parquet",
    "write_json",
    "write_model",
    "write_particle_outputs",
    "write_simulated_movie",
    "write_simulated_tomography",
    "write_table_csv",
    "write_table_parquet",
    "TRACK_UNITS",
    "read_tracks",
    "write_drift",
    "write_tracks",
]
