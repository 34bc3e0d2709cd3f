"""Fourier shell correlation curves: gold standard and against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nanorecon.refine import resolution_at

from ._style import new_figure

__all__ = ["plot_fsc"]

_CURVES = (("fsc_half", 0.143, "half maps (gold standard)"), ("fsc_truth", 0.5, "map vs truth"))


def _format_resolution(value: float) -> str:
    return "not reached" if not np.isfinite(value) else f"{value:.2f} Å"


def plot_fsc(fsc_table: pd.DataFrame, *, figsize_in: tuple[float, float] | None = None) -> Figure:
    """FSC against spatial frequency with the 0.143 and 0.5 thresholds.

    The half-map curve is read at 0.143, the curve against the truth (when the table has it) at
    0.5; the resolutions are given in the legend.

    Parameters
    ----------
    fsc_table : DataFrame
        Columns ``spatial_frequency_1_per_A``, ``fsc_half`` and optionally ``fsc_truth``
        (``fsc.csv`` of a particle).
    figsize_in : tuple of float, optional
        Figure size [inch].

    Returns
    -------
    Figure
    """
    if "spatial_frequency_1_per_A" not in fsc_table or "fsc_half" not in fsc_table:
        raise ValueError("fsc_table needs columns spatial_frequency_1_per_A and fsc_half")
    frequency = fsc_table["spatial_frequency_1_per_A"].to_numpy(dtype=float)
    fig = new_figure("fsc", figsize_in)
    ax = fig.add_subplot()
    for column, threshold, label in _CURVES:
        if column not in fsc_table or fsc_table[column].isna().all():
            continue
        values = fsc_table[column].to_numpy(dtype=float)
        table = pd.DataFrame({"spatial_frequency_1_per_A": frequency, "fsc": values})
        resolution = resolution_at(table, threshold)
        ax.plot(
            frequency,
            values,
            marker=".",
            label=f"{label}: {_format_resolution(resolution)} at FSC = {threshold:g}",
        )
    for threshold, style in ((0.143, "--"), (0.5, ":")):
        ax.axhline(threshold, color="0.4", linestyle=style, linewidth=1)
        ax.annotate(
            f"{threshold:g}",
            (frequency[-1], threshold),
            textcoords="offset points",
            xytext=(2, 2),
            ha="right",
            color="0.3",
        )
    ax.axhline(0.0, color="0.8", linewidth=0.8)
    ax.set_xlim(0.0, frequency[-1])
    ax.set_ylim(-0.2, 1.05)
    ax.set_xlabel("spatial frequency [1/Å]")
    ax.set_ylabel("Fourier shell correlation [1]")
    ax.legend(loc="lower left")
    top = ax.secondary_xaxis(
        "top",
        functions=(
            lambda f: 1.0 / np.maximum(f, 1e-6),
            lambda r: 1.0 / np.maximum(r, 1e-6),
        ),
    )
    top.set_xlabel("resolution [Å]")
    top.set_xticks([t for t in (10.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.8, 0.7) if 1 / t <= frequency[-1]])
    return fig
