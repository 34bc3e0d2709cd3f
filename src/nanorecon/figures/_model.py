"""The atomic model drawn as projections, coloured by species and by strain."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ._style import new_figure

__all__ = ["STRAIN_COMPONENTS", "plot_atomic_model", "strain_limit"]

#: strain columns of atoms.parquet (tensor components, dimensionless)
STRAIN_COMPONENTS = ("exx", "eyy", "ezz", "exy", "exz", "eyz")

# (horizontal, vertical, depth) columns of the three projections
_PROJECTIONS = (("x_A", "y_A", "z_A"), ("x_A", "z_A", "y_A"), ("y_A", "z_A", "x_A"))


def strain_limit(values: np.ndarray, *, percentile: float = 98.0) -> float:
    """Symmetric colour limit of a strain map: a high percentile of |strain|, at least 1e-4."""
    finite = np.abs(values[np.isfinite(values)])
    return float(max(np.percentile(finite, percentile) if finite.size else 0.0, 1e-4))


def _check_atoms(atoms: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in atoms.columns]
    if missing:
        raise ValueError(f"atoms table lacks columns {missing}")
    if len(atoms) == 0:
        raise ValueError("atoms table is empty")


def plot_atomic_model(
    atoms: pd.DataFrame,
    *,
    strain: str = "volumetric",
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """Projections of the atoms along z, y and x: by species (top) and by strain (bottom).

    Atoms are drawn back to front, so the nearest atoms of each projection are on top.

    Parameters
    ----------
    atoms : DataFrame
        ``x_A, y_A, z_A, element`` and the strain columns of :data:`STRAIN_COMPONENTS`
        (``atoms.parquet``).
    strain : str, optional
        ``"volumetric"`` (exx + eyy + ezz) or one of :data:`STRAIN_COMPONENTS`.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    _check_atoms(atoms, ("x_A", "y_A", "z_A", "element", *STRAIN_COMPONENTS))
    if strain == "volumetric":
        values = atoms[["exx", "eyy", "ezz"]].to_numpy(dtype=float).sum(axis=1)
        label = "volumetric strain exx + eyy + ezz [%]"
    elif strain in STRAIN_COMPONENTS:
        values = atoms[strain].to_numpy(dtype=float)
        label = f"strain {strain} [%]"
    else:
        raise ValueError(
            f"strain must be 'volumetric' or one of {STRAIN_COMPONENTS}, not {strain!r}"
        )
    values = 100.0 * values
    limit = 100.0 * strain_limit(values / 100.0)
    norm = TwoSlopeNorm(0.0, -limit, limit)
    elements = sorted(atoms["element"].astype(str).unique())
    palette = colormaps["tab10"]
    colours = {e: palette(i % 10) for i, e in enumerate(elements)}
    fig = new_figure("model", figsize_in)
    axes = fig.subplots(2, 3)
    span = atoms[["x_A", "y_A", "z_A"]].abs().to_numpy().max() * 1.15 + 1.0
    for column, (h, v, depth) in enumerate(_PROJECTIONS):
        order = np.argsort(atoms[depth].to_numpy())
        drawn = atoms.iloc[order]
        species_ax, strain_ax = axes[0, column], axes[1, column]
        for element in elements:
            chosen = drawn["element"].astype(str) == element
            species_ax.scatter(
                drawn.loc[chosen, h],
                drawn.loc[chosen, v],
                s=40,
                color=colours[element],
                edgecolors="k",
                linewidths=0.3,
                label=f"{element} ({int(chosen.sum())})",
            )
        scatter = strain_ax.scatter(
            drawn[h],
            drawn[v],
            c=values[order],
            cmap="RdBu_r",
            norm=norm,
            s=40,
            edgecolors="k",
            linewidths=0.3,
        )
        for ax, what in ((species_ax, "species"), (strain_ax, "strain")):
            ax.set_aspect("equal")
            ax.set_xlim(-span, span)
            ax.set_ylim(-span, span)
            ax.set_xlabel(f"{h[0]} [Å]")
            ax.set_ylabel(f"{v[0]} [Å]")
            ax.set_title(f"{what}, viewed along {depth[0]}")
        if column == 0:
            species_ax.legend(loc="upper right", fontsize="small", title="element (atoms)")
    fig.colorbar(scatter, ax=axes[1, :], shrink=0.9, label=label)
    return fig
