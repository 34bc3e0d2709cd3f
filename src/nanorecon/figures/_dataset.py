"""Per-dataset figures: lattice parameter against particle size, run time per stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._style import new_figure

__all__ = ["plot_lattice_vs_size", "plot_runtime"]


def plot_lattice_vs_size(
    particles: pd.DataFrame, *, figsize_in: tuple[float, float] | None = None
) -> Figure:
    """Lattice parameter against particle diameter, one point per particle.

    Parameters
    ----------
    particles : DataFrame
        ``dataset, particle, diameter_nm, lattice_parameter_A`` and optionally
        ``bulk_lattice_parameter_A`` and ``status`` (``particles.csv``; rows of several datasets
        may be concatenated).
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    missing = [c for c in ("diameter_nm", "lattice_parameter_A") if c not in particles.columns]
    if missing:
        raise ValueError(f"particles table lacks columns {missing}")
    fig = new_figure("lattice_vs_size", figsize_in)
    ax = fig.add_subplot()
    table = particles.assign(dataset=particles.get("dataset", "particles"))
    for dataset, rows in table.groupby("dataset", sort=True):
        ok = rows[np.isfinite(rows["lattice_parameter_A"]) & np.isfinite(rows["diameter_nm"])]
        ax.plot(ok["diameter_nm"], ok["lattice_parameter_A"], "o", label=f"{dataset} ({len(ok)})")
        if "particle" in ok:
            for _, row in ok.iterrows():
                ax.annotate(
                    str(row["particle"]),
                    (row["diameter_nm"], row["lattice_parameter_A"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize="small",
                )
    if "bulk_lattice_parameter_A" in table:
        for bulk in np.unique(table["bulk_lattice_parameter_A"].dropna()):
            ax.axhline(bulk, color="0.4", linestyle="--", label=f"bulk {bulk:.4f} Å")
    ax.set_xlabel("particle diameter (volume-equivalent) [nm]")
    ax.set_ylabel("lattice parameter [Å]")
    ax.margins(x=0.3, y=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_runtime(
    benchmarks: pd.DataFrame, *, figsize_in: tuple[float, float] | None = None
) -> Figure:
    """Wall time and peak memory of every job, as bar charts.

    Parameters
    ----------
    benchmarks : DataFrame
        One row per job: ``job`` (label, e.g. ``reconstruct/p000``), ``s`` (wall time [s]) and
        ``max_rss`` (peak resident memory [MB]) — Snakemake benchmark files.
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    missing = [c for c in ("job", "s", "max_rss") if c not in benchmarks.columns]
    if missing:
        raise ValueError(f"benchmarks table lacks columns {missing}")
    if len(benchmarks) == 0:
        raise ValueError("benchmarks table is empty")
    # max_rss is "-" when a job ended too fast to be sampled
    memory = pd.to_numeric(benchmarks["max_rss"], errors="coerce").fillna(0.0)
    fig = new_figure("runtime", figsize_in)
    time_ax, memory_ax = fig.subplots(1, 2)
    positions = np.arange(len(benchmarks))
    time_ax.barh(positions, benchmarks["s"].astype(float), color="tab:blue")
    time_ax.set_xlabel("wall time [s]")
    time_ax.set_title(f"run time (total {benchmarks['s'].astype(float).sum():.1f} s)")
    memory_ax.barh(positions, memory, color="tab:orange")
    memory_ax.set_xlabel("peak resident memory [MB]")
    memory_ax.set_title("memory")
    for ax in (time_ax, memory_ax):
        ax.set_yticks(positions, benchmarks["job"].astype(str))
        ax.invert_yaxis()
        ax.set_ylabel("job")
    return fig
