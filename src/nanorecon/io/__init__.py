"""File input and output: the sample sheet, raw readers, ingest to zarr, atomic writes.

Only this subpackage touches files; the algorithms take and return arrays and DataFrames.
"""

from ._atomic import OutputPathError, atomic_output, check_output_writable
from ._ingest import IngestError, ingest
from ._readers import RawFormatError, RawStack, open_raw_stack, pixel_size_from_units
from ._samplesheet import SampleSheetError, read_sample_sheet, sample_row
from ._simulated import write_simulated_movie, write_simulated_tomography
from ._tilts import read_tilt_angles
from ._zarr import create_stack_zarr, images_per_chunk, open_raw_zarr, write_array_zarr

__all__ = [
    "IngestError",
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
    "read_sample_sheet",
    "read_tilt_angles",
    "sample_row",
    "write_array_zarr",
    "write_simulated_movie",
    "write_simulated_tomography",
]
