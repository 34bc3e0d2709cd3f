"""``nanorecon summarize --refinement``: a Brownian dataset's tables list every particle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanorecon import cli
from nanorecon.io import write_atoms_parquet

REFINEMENT = pd.DataFrame(
    {
        "particle": ["p001", "p002", "p004"],
        "status": ["failed: FSC 0.143 at 3.46 Å, coarser than 2.0 Å", "ok", "failed: 12 frames"],
        "n_frames": [298, 300, pd.NA],
        "resolution_A": [3.46, 1.8, np.nan],
        "abinitio_agreeing_starts": [1, 3, pd.NA],
        "abinitio_disagreement_deg": [34.1, 2.0, np.nan],
        "true_particle": [1, 0, pd.NA],
        "orientation_error_median_deg": [24.9, 2.1, np.nan],
        "orientation_error_p90_deg": [34.8, 4.0, np.nan],
        "fourier_gap_deg": [31.0, 58.0, np.nan],
        "true_fourier_gap_deg": [30.0, 64.0, np.nan],
    }
)


def _fsc(folder: Path, resolution_A: float) -> None:
    """An FSC curve falling linearly from 1 to cross 0.143 at `resolution_A`."""
    frequency = np.linspace(0.0, 0.8, 41)
    curve = 1.0 - (1.0 - 0.143) * frequency * resolution_A
    pd.DataFrame({"spatial_frequency_1_per_A": frequency, "fsc_half": curve}).to_csv(
        folder / "fsc.csv", index=False
    )


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "movie"
    (root / "particles" / "p001").mkdir(parents=True)
    REFINEMENT.to_csv(root / "refinement.tsv", sep="\t", index=False)
    _fsc(root / "particles" / "p001", 3.46)
    # an earlier run traced p001; this run's refinement failed it, so its atoms are stale
    stale = pd.DataFrame({"x_A": [0.0], "y_A": [0.0], "z_A": [0.0], "element": ["Pt"]})
    write_atoms_parquet(root / "particles" / "p001" / "atoms.parquet", stale)
    pd.DataFrame({"particle": ["p002"], "status": ["ok"], "n_atoms": [31]}).to_csv(
        root / "particles.csv", index=False
    )
    pd.DataFrame({"particle": ["p002"], "recall": [0.01]}).to_csv(
        root / "validation.csv", index=False
    )
    return root


def test_all_particles_failed_rewrites_the_tables(dataset: Path):
    rc = cli.main(
        ["summarize", str(dataset), "--dataset", "movie", "--refinement"]
        + [str(dataset / "refinement.tsv"), "--validation-csv", str(dataset / "validation.csv")]
    )
    assert rc == 0
    particles = pd.read_csv(dataset / "particles.csv")
    assert list(particles.particle) == ["p001", "p002", "p004"]
    assert list(particles.status) == [
        "failed: FSC 0.143 at 3.46 Å, coarser than 2.0 Å",
        "refined, not traced",  # ok in refinement.tsv but given no folder to summarise
        "failed: 12 frames",
    ]
    assert "n_atoms" not in particles.columns  # the stale atoms of p001 are not read
    assert particles.fsc_resolution_A.iloc[0] == pytest.approx(3.46, abs=0.05)
    assert list(particles.abinitio_agreeing_starts.iloc[:2]) == [1, 3]
    validation = pd.read_csv(dataset / "validation.csv")
    # the rejected track p004 was never matched to a true particle: no validation row
    assert list(validation.particle) == ["p001", "p002"]
    assert list(validation.true_particle) == [1, 0]
    assert validation.orientation_error_median_deg.iloc[0] == pytest.approx(24.9)
    assert list(validation.fourier_gap_deg) == [31.0, 58.0]
    assert list(validation.true_fourier_gap_deg) == [30.0, 64.0]
    assert "recall" not in validation.columns  # the earlier table is gone
    assert pd.read_parquet(dataset / "particles.parquet").shape == particles.shape


def test_needs_particles_or_refinement(tmp_path: Path, capsys):
    assert cli.main(["summarize", str(tmp_path), "--dataset", "d"]) != 0
    assert "--refinement" in capsys.readouterr().err


def test_unreadable_refinement_table_is_named(tmp_path: Path, capsys):
    table = tmp_path / "refinement.tsv"
    table.write_bytes(b"\x00\xff garbage")
    assert cli.main(["summarize", str(tmp_path), "--dataset", "d", "--refinement", str(table)]) != 0
    assert str(table) in capsys.readouterr().err
