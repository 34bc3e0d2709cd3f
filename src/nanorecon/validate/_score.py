"""Score a traced atomic model against the ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..lattice import (
    CUBIC_ROTATIONS,
    STRAIN_COLUMNS,
    analyse_lattice,
    coordination_numbers,
    fit_lattice,
    strain_components,
    strain_matrices,
)
from ._align import align_models, match_atoms


def score_model(
    traced: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    match_distance_A: float = 0.8,
    allow_mirror: bool = True,
    structure: str | None = "fcc",
    lattice_options: dict | None = None,
) -> dict:
    """Compare a traced model, in an unknown frame, with the true atoms.

    The traced model is aligned to the truth by :func:`align_models` (rotation, translation,
    mirror), then atoms are matched one-to-one (mutual nearest neighbours within
    ``match_distance_A``).

    Parameters
    ----------
    traced, truth : DataFrame
        Columns ``x_A, y_A, z_A`` [Å]; ``element`` optional (species accuracy needs it in both).
    match_distance_A : float, optional
        Matching distance [Å].
    allow_mirror : bool, optional
        Allow an improper alignment.
    structure : str or None, optional
        Lattice for the lattice-parameter and strain comparison (``analyse_lattice`` on both models
        with the same options, so the true strain follows the same definition); None skips it.
    lattice_options : dict, optional
        Extra keyword arguments for :func:`nanorecon.lattice.analyse_lattice`.

    Returns
    -------
    dict
        ``n_true, n_traced, n_matched, recall, precision, rms_error_pm, max_error_pm, mirrored,
        species_accuracy`` (NaN without elements), ``radial_shift_surface_pm`` and
        ``radial_shift_interior_pm`` (mean displacement of the matched atoms along the outward
        radius from the true centroid, over the true surface atoms, those below the largest
        coordination number in the truth, and over the others; a map that pulls its outer atoms
        in shows as a negative surface figure, which strain at the surface would inherit), and
        with ``structure``:
        ``lattice_parameter_A, true_lattice_parameter_A, lattice_parameter_error_percent`` (of
        the lattice :func:`~nanorecon.lattice.analyse_lattice` fits, to the core atoms),
        ``lattice_parameter_all_atoms_error_percent`` (of a lattice fitted to every atom) and
        ``strain_rmse_<component>`` over matched atoms with finite strain in both (traced strain
        rotated into the truth frame).
    """
    xyz = ["x_A", "y_A", "z_A"]
    p = traced[xyz].to_numpy(dtype=float)
    t = truth[xyz].to_numpy(dtype=float)
    ops, lattice_starts = None, None
    if structure in ("fcc", "bcc", "sc"):
        # The lattice matches itself under its 48 cubic operations; try them all on the alignment.
        rotation = fit_lattice(t, structure=structure).rotation.as_matrix()
        cubic = np.concatenate([CUBIC_ROTATIONS, -CUBIC_ROTATIONS])
        ops = np.einsum("ij,kjl,ml->kim", rotation, cubic, rotation)
        # Start also from every orientation that puts the traced lattice on the true one: a model
        # that lacks a side has moved centroid and axes, and the grid's starts can miss it.
        try:
            traced_rotation = fit_lattice(p, structure=structure).rotation.as_matrix()
        except (ValueError, RuntimeError):
            traced_rotation = None
        if traced_rotation is not None:
            lattice_starts = np.einsum("ij,kjl,ml->kim", rotation, cubic, traced_rotation)
    alignment = align_models(
        p,
        t,
        allow_mirror=allow_mirror,
        match_distance_A=match_distance_A,
        symmetry_ops=ops,
        start_matrices=lattice_starts,
    )
    moved = alignment.apply(p)
    pairs = match_atoms(moved, t, match_distance_A=match_distance_A)
    error = np.linalg.norm(moved[pairs[:, 0]] - t[pairs[:, 1]], axis=1)
    result = {
        "n_true": len(t),
        "n_traced": len(p),
        "n_matched": len(pairs),
        "recall": len(pairs) / len(t),
        "precision": len(pairs) / len(p) if len(p) else float("nan"),
        "rms_error_pm": 100.0 * float(np.sqrt(np.mean(error**2))) if len(pairs) else float("nan"),
        "max_error_pm": 100.0 * float(error.max()) if len(pairs) else float("nan"),
        "mirrored": alignment.mirrored,
        "species_accuracy": float("nan"),
    }
    outward = t - t.mean(axis=0)
    outward /= np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
    radial_pm = 100.0 * np.einsum(
        "ij,ij->i", moved[pairs[:, 0]] - t[pairs[:, 1]], outward[pairs[:, 1]]
    )
    coordination = coordination_numbers(t)
    surface = coordination[pairs[:, 1]] < coordination.max()
    for name, chosen in (("surface", surface), ("interior", ~surface)):
        result[f"radial_shift_{name}_pm"] = (
            float(radial_pm[chosen].mean()) if chosen.any() else float("nan")
        )
    if "element" in traced.columns and "element" in truth.columns and len(pairs):
        a = traced["element"].astype(str).to_numpy()[pairs[:, 0]]
        b = truth["element"].astype(str).to_numpy()[pairs[:, 1]]
        result["species_accuracy"] = float(np.mean(a == b))
    if structure is not None:
        options = {"structure": structure, **(lattice_options or {})}
        traced_atoms, traced_summary = analyse_lattice(traced, **options)
        true_atoms, true_summary = analyse_lattice(truth, **options)
        a_fit = traced_summary["lattice_parameter_A"]
        a_true = true_summary["lattice_parameter_A"]
        result["lattice_parameter_A"] = a_fit
        result["true_lattice_parameter_A"] = a_true
        result["lattice_parameter_error_percent"] = 100.0 * (a_fit - a_true) / a_true
        # analyse_lattice fits the core; every atom's fit tells a radial distortion of the model
        # (core out, surface in) from a change of scale
        a_all = fit_lattice(p, structure=structure).lattice_parameter_A
        a_all_true = fit_lattice(t, structure=structure).lattice_parameter_A
        result["lattice_parameter_all_atoms_error_percent"] = 100.0 * (a_all / a_all_true - 1)
        cols = list(STRAIN_COLUMNS)
        if options.get("strain_frame", "map") == "map":
            # Tensors rotate with the alignment (M ε Mᵀ also holds for a mirror).
            tensors = strain_matrices(traced_atoms[cols].to_numpy())
            m = alignment.matrix
            traced_strain = strain_components(np.einsum("ij,njk,lk->nil", m, tensors, m))
        else:
            traced_strain = traced_atoms[cols].to_numpy()
        s1 = traced_strain[pairs[:, 0]]
        s2 = true_atoms[cols].to_numpy()[pairs[:, 1]]
        ok = np.all(np.isfinite(s1) & np.isfinite(s2), axis=1)
        for k, name in enumerate(cols):
            diff = s1[ok, k] - s2[ok, k]
            result[f"strain_rmse_{name}"] = float(np.sqrt(np.mean(diff**2))) if ok.any() else np.nan
    return result
