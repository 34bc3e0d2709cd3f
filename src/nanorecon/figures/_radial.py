"""Radial profile of the interatomic distances, core to surface."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._style import new_figure

__all__ = ["plot_radial_profile"]


def plot_radial_profile(
    profile: pd.DataFrame,
    *,
    lattice_parameter_A: float | None = None,
    figsize_in: tuple[float, float] | None = None,
) -> Figure:
    """Mean nearest-neighbour distance (± standard deviation) against distance from the centre.

    Parameters
    ----------
    profile : DataFrame
        ``r_mid_A, mean_distance_A, std_distance_A, n_bonds`` (``radial_profile.csv``).
    lattice_parameter_A : float, optional
        Fcc lattice parameter [Å]; its nearest-neighbour distance a/√2 is drawn for reference.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    needed = ("r_mid_A", "mean_distance_A", "std_distance_A", "n_bonds")
    missing = [c for c in needed if c not in profile.columns]
    if missing:
        raise ValueError(f"profile lacks columns {missing}")
    shown = profile[profile["n_bonds"] > 0]
    fig = new_figure("radial_profile", figsize_in)
    ax = fig.add_subplot()
    ax.errorbar(
        shown["r_mid_A"],
        shown["mean_distance_A"],
        yerr=shown["std_distance_A"],
        marker="o",
        capsize=3,
        label="mean ± std of the bonds in the shell",
    )
    if lattice_parameter_A is not None:
        ax.axhline(
            lattice_parameter_A / np.sqrt(2.0),
            color="0.4",
            linestyle="--",
            label=f"a/√2 = {lattice_parameter_A / np.sqrt(2.0):.3f} Å (fitted lattice)",
        )
    ax.set_xlabel("distance from the particle centre [Å]")
    ax.set_ylabel("nearest-neighbour distance [Å]")
    ax.legend(loc="upper left", fontsize="small")
    bonds = ax.twinx()
    bonds.bar(shown["r_mid_A"], shown["n_bonds"], width=0.6, color="0.85", zorder=0)
    bonds.set_ylabel("bonds per shell [1]")
    ax.set_zorder(bonds.get_zorder() + 1)
    ax.patch.set_visible(False)
    return fig
