"""Read and validate the tab-separated sample sheet (one dataset per row)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
from ase.data import chemical_symbols

__all__ = [
    "MODALITIES",
    "NUMERIC_COLUMNS",
    "PATH_COLUMNS",
    "REQUIRED_COLUMNS",
    "SHEET_COLUMNS",
    "SampleSheetError",
    "read_sample_sheet",
    "sample_row",
]

#: columns every sheet must have in its header
REQUIRED_COLUMNS = ("dataset", "modality", "path", "voltage_kV", "elements")
#: columns of the interface that may be absent from the header (then all empty)
OPTIONAL_COLUMNS = (
    "pixel_size_A",
    "tilt_angles",
    "frame_rate_hz",
    "dose_e_per_A2",
    "defocus_A",
    "cs_mm",
)
#: the interface's columns in their documented order
SHEET_COLUMNS = (
    "dataset",
    "modality",
    "path",
    "pixel_size_A",
    "voltage_kV",
    "elements",
    "tilt_angles",
    "frame_rate_hz",
    "dose_e_per_A2",
    "defocus_A",
    "cs_mm",
)
NUMERIC_COLUMNS = (
    "pixel_size_A",
    "voltage_kV",
    "frame_rate_hz",
    "dose_e_per_A2",
    "defocus_A",
    "cs_mm",
)
#: numeric columns whose values, when given, must be > 0
POSITIVE_COLUMNS = ("pixel_size_A", "voltage_kV", "frame_rate_hz", "dose_e_per_A2")
#: columns holding paths relative to the sheet's folder (``truth`` only when present)
PATH_COLUMNS = ("path", "tilt_angles", "truth")
MODALITIES = ("tomography", "brownian")

_DATASET_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_ELEMENTS = frozenset(chemical_symbols[1:])


class SampleSheetError(ValueError):
    """A sample sheet that cannot be used; the message names the file, line and fix."""


def _where(sheet: Path, line: int, dataset: str | None = None) -> str:
    where = f"sample sheet {sheet}, line {line}"
    return f"{where} (dataset {dataset!r})" if dataset else where


def _parse_number(text: str, column: str, where: str) -> float:
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise SampleSheetError(
            f"{where}: {column}={text!r} is not a number; write a plain number or leave it empty"
        ) from None
    if not math.isfinite(value):
        raise SampleSheetError(f"{where}: {column}={text!r} must be a finite number")
    return value


def _resolve(text: str, base: Path) -> str:
    if text == "":
        return ""
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _validate_row(record: dict[str, str], sheet: Path, line: int) -> dict[str, Any]:
    dataset = record["dataset"]
    where = _where(sheet, line, dataset or None)
    if not dataset:
        raise SampleSheetError(f"{where}: the dataset column is empty; give every row a unique id")
    if not _DATASET_RE.match(dataset):
        raise SampleSheetError(
            f"{where}: dataset id {dataset!r} is not a safe folder name; use only letters, "
            "digits, '_', '-' and '.', not starting with '.'"
        )
    modality = record["modality"].lower()
    if modality not in MODALITIES:
        raise SampleSheetError(
            f"{where}: unknown modality {record['modality']!r}; use 'tomography' or 'brownian'"
        )
    if not record["path"]:
        raise SampleSheetError(f"{where}: the path column is empty; give the raw data file")
    symbols = [s.strip() for s in record["elements"].split(",") if s.strip()]
    if not symbols:
        raise SampleSheetError(
            f"{where}: the elements column is empty; list chemical symbols, e.g. 'Pt' or 'Fe,Pt'"
        )
    for symbol in symbols:
        if symbol not in _ELEMENTS:
            raise SampleSheetError(
                f"{where}: unknown element symbol {symbol!r}; use chemical symbols with "
                "capitalisation as in the periodic table, comma-separated, e.g. 'Fe,Pt'"
            )
    out: dict[str, Any] = dict(record)
    out["modality"] = modality
    out["elements"] = ",".join(symbols)
    for column in NUMERIC_COLUMNS:
        out[column] = _parse_number(record[column], column, where)
    if math.isnan(out["voltage_kV"]):
        raise SampleSheetError(f"{where}: voltage_kV is empty; give the acceleration voltage [kV]")
    for column in POSITIVE_COLUMNS:
        if out[column] <= 0:  # NaN compares False: empty stays allowed here
            raise SampleSheetError(
                f"{where}: {column}={record[column]!r} must be positive; correct it or leave it "
                "empty where the column allows"
            )
    if modality == "tomography" and not record["tilt_angles"]:
        raise SampleSheetError(
            f"{where}: tomography row without tilt_angles; give the .tlt/.rawtlt file "
            "(one angle [deg] per line, relative to the sheet's folder)"
        )
    if modality == "brownian" and math.isnan(out["frame_rate_hz"]):
        raise SampleSheetError(
            f"{where}: brownian row without frame_rate_hz; give the movie's frame rate [Hz]"
        )
    return out


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a tab-separated sample sheet.

    Parameters
    ----------
    path : str or Path
        The sheet: a header line, then one dataset per line. Blank lines and lines starting
        with ``#`` are skipped.

    Returns
    -------
    DataFrame
        One row per dataset, indexed 0..n-1, with every interface column (absent optional
        columns are filled empty), extra columns kept as text, ``path``, ``tilt_angles`` and
        ``truth`` resolved to absolute paths ("" when empty), numeric columns as float (NaN
        when empty), ``modality`` lower case, ``elements`` as normalised ``"Fe,Pt"`` text, plus
        ``sheet_file`` (absolute path of the sheet) and ``sheet_line`` (1-based line number).

    Raises
    ------
    SampleSheetError
        Naming the sheet, the line and the dataset, and saying how to fix it.
    FileNotFoundError
        If the sheet does not exist.
    """
    sheet = Path(path).expanduser().resolve()
    if not sheet.is_file():
        raise FileNotFoundError(f"sample sheet {sheet} does not exist or is not a file")
    base = sheet.parent
    with open(sheet, newline="", encoding="utf-8-sig") as fh:
        lines = [
            (number, row)
            for number, row in enumerate(csv.reader(fh, delimiter="\t"), start=1)
            if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")
        ]
    if not lines:
        raise SampleSheetError(f"sample sheet {sheet} is empty; it needs a header line")
    header_line, header = lines[0]
    header = [name.strip() for name in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        found = ", ".join(header)
        hint = " (is it comma- rather than tab-separated?)" if len(header) == 1 else ""
        raise SampleSheetError(
            f"sample sheet {sheet}, line {header_line}: missing required column(s) "
            f"{', '.join(missing)}{hint}; the header has: {found}. Add the columns, "
            "tab-separated"
        )
    duplicated = {name for name in header if header.count(name) > 1}
    if duplicated:
        raise SampleSheetError(
            f"sample sheet {sheet}, line {header_line}: column(s) {', '.join(sorted(duplicated))} "
            "appear more than once; keep one of each"
        )
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, cells in lines[1:]:
        if len(cells) > len(header):
            raise SampleSheetError(
                f"{_where(sheet, line)}: {len(cells)} fields but the header has {len(header)}; "
                "check for stray tabs"
            )
        cells = [cell.strip() for cell in cells] + [""] * (len(header) - len(cells))
        record = dict(zip(header, cells, strict=True))
        for column in OPTIONAL_COLUMNS:
            record.setdefault(column, "")
        out = _validate_row(record, sheet, line)
        dataset = out["dataset"]
        if dataset in seen:
            raise SampleSheetError(
                f"{_where(sheet, line, dataset)}: duplicate dataset id, first used on line "
                f"{seen[dataset]}; give every row a unique id"
            )
        seen[dataset] = line
        for column in PATH_COLUMNS:
            if column in out:
                out[column] = _resolve(out[column], base)
        out["sheet_file"] = str(sheet)
        out["sheet_line"] = line
        records.append(out)
    if not records:
        raise SampleSheetError(f"sample sheet {sheet} has a header but no datasets; add rows")
    columns = list(dict.fromkeys([*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *header]))
    columns += ["sheet_file", "sheet_line"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in NUMERIC_COLUMNS:
        frame[column] = frame[column].astype("float64")
    frame["sheet_line"] = frame["sheet_line"].astype("int64")
    return frame


def sample_row(sheet_df: pd.DataFrame, dataset: str) -> dict[str, Any]:
    """Return one dataset's row as plain Python values.

    Parameters
    ----------
    sheet_df : DataFrame
        As returned by :func:`read_sample_sheet`.
    dataset : str
        The dataset id.

    Returns
    -------
    dict
        Column → value; numbers as float, empty numbers as None, ``elements`` as a list of
        symbols, empty paths as None, ``sheet_line`` as int.

    Raises
    ------
    SampleSheetError
        If the dataset is not in the sheet (the message lists the ids that are).
    """
    matches = sheet_df.index[sheet_df["dataset"] == dataset]
    if len(matches) == 0:
        known = ", ".join(map(str, sheet_df["dataset"]))
        sheet = sheet_df["sheet_file"].iloc[0] if len(sheet_df) else "?"
        raise SampleSheetError(
            f"dataset {dataset!r} is not in sample sheet {sheet}; it has: {known}"
        )
    raw = sheet_df.loc[matches[0]].to_dict()
    row: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif key in PATH_COLUMNS and value == "":
            value = None
        elif hasattr(value, "item"):  # numpy scalar → Python scalar
            value = value.item()
        row[str(key)] = value
    row["elements"] = [s for s in str(raw["elements"]).split(",") if s]
    row["sheet_line"] = int(raw["sheet_line"])
    return row
