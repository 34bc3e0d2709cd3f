"""Atomic models and their tables: atoms.parquet/.csv, lattice.json, profiles, xyz/cif/pdb.

Every file is written atomically (a temporary sibling renamed on success, see
:func:`atomic_output`); :func:`write_particle_outputs` writes a set of them all-or-nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._atomic import atomic_output

__all__ = [
    "ATOM_COLUMNS",
    "ATOM_UNITS",
    "AtomsTableError",
    "read_atoms_parquet",
    "read_truth_atoms",
    "write_atoms_csv",
    "write_atoms_parquet",
    "write_json",
    "write_model",
    "write_particle_outputs",
    "write_table_csv",
    "write_table_parquet",
]

#: column order of atoms.parquet (DESIGN.md); other columns follow in their own order
ATOM_COLUMNS = (
    "x_A",
    "y_A",
    "z_A",
    "element",
    "intensity",
    "h",
    "k",
    "l",
    "coordination",
    "surface",
    "dx_A",
    "dy_A",
    "dz_A",
    "exx",
    "eyy",
    "ezz",
    "exy",
    "exz",
    "eyz",
)

#: unit of every known column ("1": dimensionless; "" for labels and flags)
ATOM_UNITS = {
    "x_A": "Å",
    "y_A": "Å",
    "z_A": "Å",
    "element": "",
    "intensity": "map units · Å³ (integrated Gaussian)",
    "amplitude": "map units",
    "width_A": "Å (Gaussian σ)",
    "fit_residual": "1 (RMS residual / amplitude)",
    "sigma_fit_A": "Å (per coordinate, from the fit covariance)",
    "sigma_A": "Å (per coordinate, from the half maps)",
    "x_map_A": "Å (traced in the map, before refinement against the projections)",
    "y_map_A": "Å (traced in the map, before refinement against the projections)",
    "z_map_A": "Å (traced in the map, before refinement against the projections)",
    "refine_shift_A": "Å (move of the refinement against the projections)",
    "sigma_proj_x_A": "Å (from the refinement against the projections)",
    "sigma_proj_y_A": "Å (from the refinement against the projections)",
    "sigma_proj_z_A": "Å (from the refinement against the projections)",
    "h": "a/2 (lattice site index)",
    "k": "a/2 (lattice site index)",
    "l": "a/2 (lattice site index)",
    "coordination": "neighbours",
    "surface": "",
    "structure": "",
    "twin_plane": "",
    "depth_A": "Å (below the convex hull)",
    "r_A": "Å (from the centroid)",
    "in_lattice_fit": "",
    "site_distance_A": "Å",
    "dx_A": "Å",
    "dy_A": "Å",
    "dz_A": "Å",
    "exx": "1",
    "eyy": "1",
    "ezz": "1",
    "exy": "1 (tensor shear)",
    "exz": "1 (tensor shear)",
    "eyz": "1 (tensor shear)",
}

_XYZ = ["x_A", "y_A", "z_A"]
_ASE_FORMATS = {".xyz": "xyz", ".cif": "cif", ".pdb": "proteindatabank"}
_METADATA_KEY = b"nanorecon"


class AtomsTableError(ValueError):
    """An atoms table that cannot be used (unreadable, or missing columns); names the file."""


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays → Python; NaN and infinities → None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ordered(atoms: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in ATOM_COLUMNS if c in atoms.columns]
    return atoms[first + [c for c in atoms.columns if c not in first]].reset_index(drop=True)


def write_particle_outputs(
    out_dir: str | Path,
    atoms: pd.DataFrame,
    *,
    atoms_metadata: Mapping[str, Any] | None = None,
    atoms_csv: bool = False,
    lattice: Mapping[str, Any] | None = None,
    radial_profile: pd.DataFrame | None = None,
    models: tuple[str, ...] = ("xyz",),
) -> list[Path]:
    """Write one particle's atom-level results into ``out_dir``, all-or-nothing.

    Writes ``atoms.parquet`` (see :func:`write_atoms_parquet`), optionally ``atoms.csv``,
    ``lattice.json``, ``radial_profile.csv`` and ``model.<ext>`` for each of ``models``. Every
    file is first written to a temporary sibling; only when all are complete are they renamed
    into place, so a failure leaves no partial output and earlier results untouched.

    Parameters
    ----------
    out_dir : str or Path
        Output folder, created if missing.
    atoms : DataFrame
        One row per atom: ``x_A, y_A, z_A`` [Å], ``element`` and any analysis columns.
    atoms_metadata : mapping, optional
        Table metadata for atoms.parquet (strain definition, smoothing length ...).
    atoms_csv : bool, optional
        Also write ``atoms.csv``.
    lattice : mapping, optional
        Lattice summary for ``lattice.json``.
    radial_profile : DataFrame, optional
        Table for ``radial_profile.csv``.
    models : tuple of str, optional
        Model formats among ``"xyz"``, ``"cif"``, ``"pdb"``.

    Returns
    -------
    list of Path
        The written files.
    """
    for ext in models:
        if f".{ext}" not in _ASE_FORMATS:
            raise ValueError(f"model format must be one of {sorted(_ASE_FORMATS)}, not {ext!r}")
    writers: dict[str, Callable[[Path], None]] = {
        "atoms.parquet": lambda tmp: _write_parquet_to(tmp, atoms, atoms_metadata or {}),
    }
    if atoms_csv:
        writers["atoms.csv"] = lambda tmp: _ordered(atoms).to_csv(tmp, index=False)
    if lattice is not None:
        writers["lattice.json"] = lambda tmp: _write_json_to(tmp, lattice)
    if radial_profile is not None:
        writers["radial_profile.csv"] = lambda tmp: radial_profile.to_csv(tmp, index=False)
    for ext in models:
        fmt = _ASE_FORMATS[f".{ext}"]
        writers[f"model.{ext}"] = lambda tmp, fmt=fmt: _write_model_to(tmp, atoms, fmt)
    out_dir = Path(out_dir)
    with contextlib.ExitStack() as stack:
        for name, writer in writers.items():
            writer(stack.enter_context(atomic_output(out_dir / name)))
    return [out_dir / name for name in writers]


def _write_parquet_to(path: Path, atoms: pd.DataFrame, metadata: Mapping[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_ordered(atoms), preserve_index=False)
    units = {c: ATOM_UNITS[c] for c in table.column_names if c in ATOM_UNITS}
    ours = json.dumps(_jsonable({"units": units, **metadata}), ensure_ascii=False)
    schema_metadata = dict(table.schema.metadata or {})
    schema_metadata[_METADATA_KEY] = ours.encode()
    pq.write_table(table.replace_schema_metadata(schema_metadata), path)


def write_atoms_parquet(
    path: str | Path, atoms: pd.DataFrame, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write an atoms table as Parquet, atomically.

    Columns are ordered as :data:`ATOM_COLUMNS`, the rest after them. The table metadata (key
    ``nanorecon``, JSON) holds ``units`` (per column) and everything in ``metadata``, e.g. the
    strain definition, frame and smoothing length.

    Parameters
    ----------
    path : str or Path
        Output file.
    atoms : DataFrame
        One row per atom, at least ``x_A, y_A, z_A`` [Å].
    metadata : mapping, optional
        JSON-serialisable facts about the table.

    Returns
    -------
    Path
    """
    missing = set(_XYZ) - set(atoms.columns)
    if missing:
        raise ValueError(f"atoms lacks columns {sorted(missing)}")
    with atomic_output(path) as tmp:
        _write_parquet_to(tmp, atoms, metadata or {})
    return Path(path)


def read_atoms_parquet(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read an atoms table written by :func:`write_atoms_parquet`.

    Returns
    -------
    atoms : DataFrame
    metadata : dict
        The ``nanorecon`` table metadata (empty for tables written by other tools).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    AtomsTableError
        If it is no Parquet file or lacks ``x_A, y_A, z_A``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"atoms table {path} does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise AtomsTableError(f"{path} is not a readable Parquet table ({err})") from None
    missing = set(_XYZ) - set(table.column_names)
    if missing:
        raise AtomsTableError(f"{path} lacks the columns {sorted(missing)}")
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    return table.to_pandas(), metadata


def read_truth_atoms(path: str | Path, *, particle: str | None = None) -> pd.DataFrame:
    """Read the simulator's true atoms (``atoms.csv``) of one particle.

    Parameters
    ----------
    path : str or Path
        CSV with columns ``particle, x_A, y_A, z_A, element`` (``particle`` optional when it holds
        one particle).
    particle : str, optional
        The particle to take; required when the file holds several.

    Returns
    -------
    DataFrame
        ``x_A, y_A, z_A`` [Å] and ``element`` of that particle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"truth atoms table {path} does not exist")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise AtomsTableError(f"{path} is not a readable CSV table ({err})") from None
    missing = {*_XYZ, "element"} - set(table.columns)
    if missing:
        raise AtomsTableError(f"{path} lacks the columns {sorted(missing)}")
    if "particle" in table.columns:
        ids = table["particle"].astype(str)
        if particle is None:
            found = sorted(ids.unique())
            if len(found) > 1:
                raise AtomsTableError(
                    f"{path} holds {len(found)} particles ({', '.join(found[:5])}"
                    f"{', ...' if len(found) > 5 else ''}); choose one with --particle"
                )
        else:
            table = table[ids == str(particle)]
            if table.empty:
                raise AtomsTableError(f"{path} has no atoms of particle {particle!r}")
    elif particle is not None:
        raise AtomsTableError(f"{path} has no particle column to select {particle!r} from")
    out = table[_XYZ].astype(float).reset_index(drop=True)
    out["element"] = table["element"].astype(str).to_numpy()
    return out


def write_atoms_csv(path: str | Path, atoms: pd.DataFrame) -> Path:
    """Write an atoms table as CSV (columns ordered as :data:`ATOM_COLUMNS`), atomically."""
    return write_table_csv(path, _ordered(atoms))


def write_table_csv(path: str | Path, table: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV without its index, atomically."""
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def write_json(path: str | Path, content: Mapping[str, Any]) -> Path:
    """Write a mapping as indented strict JSON (NaN → null), atomically."""
    with atomic_output(path) as tmp:
        _write_json_to(tmp, content)
    return Path(path)


def _write_json_to(path: Path, content: Mapping[str, Any]) -> None:
    text = json.dumps(_jsonable(content), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_model(path: str | Path, atoms: pd.DataFrame) -> Path:
    """Write the atomic model through ase, in the format of the file name.

    ``.xyz`` (plain XYZ), ``.cif`` or ``.pdb``; Cartesian positions in the map frame [Å], no
    unit cell (a nanoparticle is not periodic).

    Parameters
    ----------
    path : str or Path
        Output file ending in ``.xyz``, ``.cif`` or ``.pdb``.
    atoms : DataFrame
        ``x_A, y_A, z_A`` [Å] and ``element``.
    """
    path = Path(path)
    fmt = _ASE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: model format must be one of {sorted(_ASE_FORMATS)}")
    with atomic_output(path) as tmp:
        _write_model_to(tmp, atoms, fmt)
    return path


def _write_model_to(path: Path, atoms: pd.DataFrame, fmt: str) -> None:
    import ase
    import ase.io

    model = ase.Atoms(
        symbols=[str(e) for e in atoms["element"]],
        positions=atoms[_XYZ].to_numpy(dtype=float),
    )
    ase.io.write(path, model, format=fmt)


def write_table_parquet(
    path: str | Path, table: pd.DataFrame, *, units: Mapping[str, str] | None = None
) -> Path:
    """Write a DataFrame as parquet, atomically, with column units in the ``nanorecon`` metadata."""
    with atomic_output(path) as tmp:
        _write_parquet_to(tmp, table.reset_index(drop=True), {"units": dict(units or {})})
    return Path(path)
