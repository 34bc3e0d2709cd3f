"""One row per particle for the per-dataset ``particles`` table.

Pure functions: they take a particle's atoms table, lattice summary, FSC curve and validation row
(any of which may be missing) and return plain dictionaries; :mod:`nanorecon.cli._summarize` reads
and writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from nanorecon.refine import resolution_at

__all__ = ["PARTICLE_UNITS", "particle_row", "volume_equivalent_diameter_nm"]

#: atoms per conventional unit cell
ATOMS_PER_CELL = {"fcc": 4, "bcc": 2, "sc": 1}

#: units of the particles table's columns ("1": dimensionless)
PARTICLE_UNITS = {
    "diameter_nm": "nm (volume-equivalent sphere of the atoms at the fitted lattice parameter)",
    "n_atoms": "atoms",
    "lattice_parameter_A": "Å",
    "bulk_lattice_parameter_A": "Å (bulk value, Vegard average for alloys)",
    "deviation_from_bulk_percent": "%",
    "core_mean_volumetric_strain": "1 (mean of exx+eyy+ezz over core atoms)",
    "surface_mean_volumetric_strain": "1 (mean of exx+eyy+ezz over surface atoms)",
    "fsc_resolution_A": "Å (gold-standard FSC = 0.143)",
    "fsc_truth_resolution_A": "Å (FSC against the true map = 0.5; simulated data)",
    "precision_pm": "pm (RMS per-coordinate position uncertainty from the half maps)",
    "lattice_rms_residual_pm": "pm (RMS distance of fitted atoms from their lattice sites)",
}


def volume_equivalent_diameter_nm(
    n_atoms: int, lattice_parameter_A: float, *, structure: str = "fcc"
) -> float:
    """Diameter of the sphere holding ``n_atoms`` at the packing of the given lattice [nm].

    Examples
    --------
    >>> round(volume_equivalent_diameter_nm(4, 4.0), 4)  # one fcc cell of 64 Å³
    0.4963
    """
    per_cell = ATOMS_PER_CELL.get(structure)
    if per_cell is None or not lattice_parameter_A > 0 or n_atoms <= 0:
        return float("nan")
    volume_A3 = n_atoms * lattice_parameter_A**3 / per_cell
    return float((6.0 * volume_A3 / math.pi) ** (1.0 / 3.0) / 10.0)


#: A fitted lattice parameter this far from the bulk value [%] is not a strained particle but a
#: failed reconstruction or trace (measured nanoparticles differ from bulk by about 1–3 %).
SUSPECT_DEVIATION_PERCENT = 5.0
#: An RMS distance of the atoms from their fitted lattice sites above this [pm] means the atoms do
#: not form the lattice (static disorder and ~20 pm precision give some 10–30 pm).
SUSPECT_RESIDUAL_PM = 50.0
#: When the tracer rejects more than this share of its atom candidates (mostly peaks of the full
#: map that are not detections in both independent half maps), the half maps disagree at the
#: atoms and the model holds only a part of the particle.
SUSPECT_REJECTED_FRACTION = 0.5


def particle_row(
    particle: str,
    *,
    atoms: pd.DataFrame | None = None,
    lattice: Mapping[str, Any] | None = None,
    fsc_table: pd.DataFrame | None = None,
    validation: Mapping[str, Any] | None = None,
    n_rejected: int | None = None,
) -> dict[str, Any]:
    """Summarise one particle.

    Parameters
    ----------
    particle : str
        Particle id.
    atoms : DataFrame, optional
        ``atoms.parquet`` (columns ``element``; ``exx, eyy, ezz``, ``surface`` and ``sigma_A`` when present).
    lattice : mapping, optional
        ``lattice.json``: ``lattice_parameter_A``, ``bulk_lattice_parameter_A``,
        ``deviation_from_bulk_percent``, ``structure``, ``twinning``, ``rms_residual_A``.
    fsc_table : DataFrame, optional
        ``fsc.csv``: ``spatial_frequency_1_per_A`` and the gold-standard curve ``fsc_half`` (or
        ``fsc``); ``fsc_truth`` when the map was compared with the simulator's truth.
    validation : mapping, optional
        One row of the validation table; its figures are copied with a ``validation_`` prefix.
    n_rejected : int, optional
        Atom candidates the tracer rejected after fitting (the traced table's ``n_rejected``).

    Returns
    -------
    dict
        One row; ``status`` is ``"ok"`` when atoms and lattice are present and plausible,
        ``"missing ..."`` naming what is missing, or ``"suspect: ..."`` when the lattice is
        implausible (more than :data:`SUSPECT_DEVIATION_PERCENT` from bulk, or atoms more than
        :data:`SUSPECT_RESIDUAL_PM` RMS from their lattice sites), or when the tracer rejected
        more than :data:`SUSPECT_REJECTED_FRACTION` of its candidates: such a particle's map or
        trace failed, and its figures are not to be read as strain.
    """
    row: dict[str, Any] = {"particle": particle}
    missing = [name for name, part in (("atoms", atoms), ("lattice", lattice)) if part is None]
    row["status"] = "ok" if not missing else "missing " + ", ".join(missing)

    if atoms is not None:
        row["n_atoms"] = int(len(atoms))
        if "element" in atoms.columns:
            for element, count in atoms["element"].astype(str).value_counts().sort_index().items():
                row[f"n_{element}"] = int(count)
        if "sigma_A" in atoms.columns:
            sigma = atoms["sigma_A"].to_numpy(dtype=float)
            sigma = sigma[np.isfinite(sigma)]
            row["precision_pm"] = (
                float(100.0 * np.sqrt(np.mean(sigma**2))) if sigma.size else np.nan
            )
        strain_columns = {"exx", "eyy", "ezz", "surface"}
        if strain_columns <= set(atoms.columns):
            volumetric = atoms[["exx", "eyy", "ezz"]].to_numpy(dtype=float).sum(axis=1)
            surface = atoms["surface"].to_numpy(dtype=bool)
            for region, mask in (("core", ~surface), ("surface", surface)):
                values = volumetric[mask & np.isfinite(volumetric)]
                row[f"{region}_mean_volumetric_strain"] = (
                    float(values.mean()) if values.size else np.nan
                )

    if lattice is not None:
        structure = str(lattice.get("structure", "fcc"))
        a = float(lattice.get("lattice_parameter_A", np.nan))
        row["structure"] = structure
        row["twinning"] = lattice.get("twinning")
        row["lattice_parameter_A"] = a
        row["bulk_lattice_parameter_A"] = float(lattice.get("bulk_lattice_parameter_A", np.nan))
        row["deviation_from_bulk_percent"] = float(
            lattice.get("deviation_from_bulk_percent", np.nan)
        )
        if "rms_residual_A" in lattice:
            row["lattice_rms_residual_pm"] = 100.0 * float(lattice["rms_residual_A"])
        if atoms is not None:
            row["diameter_nm"] = volume_equivalent_diameter_nm(len(atoms), a, structure=structure)
        reasons = []
        deviation = row["deviation_from_bulk_percent"]
        if abs(deviation) > SUSPECT_DEVIATION_PERCENT:
            reasons.append(f"lattice parameter {deviation:+.1f} % from bulk")
        residual = row.get("lattice_rms_residual_pm", np.nan)
        if residual > SUSPECT_RESIDUAL_PM:
            reasons.append(f"atoms {residual:.0f} pm RMS from their lattice sites")
        if atoms is not None and n_rejected:
            candidates = len(atoms) + int(n_rejected)
            if n_rejected > SUSPECT_REJECTED_FRACTION * candidates:
                reasons.append(
                    f"{n_rejected} of {candidates} atom candidates rejected (half maps disagree)"
                )
        if reasons and row["status"] == "ok":
            row["status"] = "suspect: " + "; ".join(reasons)

    if fsc_table is not None and len(fsc_table):
        # fsc.csv holds the gold-standard curve (fsc_half, or fsc) and, for simulated data, fsc_truth
        gold = "fsc_half" if "fsc_half" in fsc_table.columns else "fsc"
        if gold in fsc_table.columns:
            curve = fsc_table.rename(columns={gold: "fsc"}) if gold != "fsc" else fsc_table
            row["fsc_resolution_A"] = float(resolution_at(curve, 0.143))
        if "fsc_truth" in fsc_table.columns:
            curve = fsc_table.drop(columns="fsc", errors="ignore").rename(
                columns={"fsc_truth": "fsc"}
            )
            row["fsc_truth_resolution_A"] = float(resolution_at(curve, 0.5))

    if validation is not None:
        for key, value in validation.items():
            if key not in ("particle", "dataset"):
                row[f"validation_{key}"] = value
    return row
