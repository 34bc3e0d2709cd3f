"""``nanorecon trace`` → ``lattice`` → ``validate`` through ``nanorecon.cli.main``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import ase.io
import mrcfile
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr
from synthetic_atoms import pt_particle, render_map

import nanorecon.cli as cli
from nanorecon.atoms import COLUMNS
from nanorecon.io import ATOM_COLUMNS, read_atoms_parquet

VOXEL_A = 0.35
A_TRUE = 3.99


@pytest.fixture(autouse=True)
def atom_verbs_only(monkeypatch):
    # the dispatcher imports every verb's module; test these verbs independently of the others
    monkeypatch.setattr(
        cli,
        "VERBS",
        {
            "trace": "_trace",
            "lattice": "_lattice",
            "validate": "_validate",
            "summarize": "_summarize",
        },
    )


@pytest.fixture(scope="module")
def particle():
    truth = pt_particle(length=7, cutoff=2, a_A=A_TRUE, relaxation_A=-0.03, jitter_A=0.02, seed=1)
    volume = render_map(truth, voxel_size_A=VOXEL_A, resolution_A=0.7, noise=0.02, seed=2)
    return truth, volume


def _write_mrc(path: Path, volume: np.ndarray, voxel_size_A: float | None) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # header statistics of NaN test data
        mrc.set_data(volume.astype(np.float32))
        if voxel_size_A is not None:
            mrc.voxel_size = voxel_size_A
    return path


def _write_truth(path: Path, truth: pd.DataFrame) -> Path:
    other = truth.assign(particle="p1", x_A=truth["x_A"] + 50.0)
    pd.concat([truth.assign(particle="p0"), other]).to_csv(path, index=False)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_trace_lattice_validate_from_mrc(particle, tmp_path):
    truth, volume = particle
    map_path = _write_mrc(tmp_path / "map.mrc", volume, VOXEL_A)
    out = tmp_path / "p0"
    assert cli.main(["trace", str(map_path), str(out), "--elements", "Pt"]) == 0
    assert _files(out) == ["atoms.parquet", "model.xyz"]
    traced, meta = read_atoms_parquet(out / "atoms.parquet")
    assert list(traced.columns[:5]) == ["x_A", "y_A", "z_A", "element", "intensity"]
    assert set(COLUMNS) <= set(traced.columns)
    assert meta["voxel_size_A"] == VOXEL_A and meta["units"]["x_A"] == "Å"
    assert len(ase.io.read(out / "model.xyz")) == len(traced)

    lattice_dir = tmp_path / "lattice"
    rc = cli.main(
        ["lattice", str(out / "atoms.parquet"), str(lattice_dir), "--strain-sigma-A", "4.5"]
    )
    assert rc == 0
    assert _files(lattice_dir) == [
        "atoms.csv",
        "atoms.parquet",
        "lattice.json",
        "model.cif",
        "model.pdb",
        "model.xyz",
        "radial_profile.csv",
    ]
    atoms, meta = read_atoms_parquet(lattice_dir / "atoms.parquet")
    assert list(atoms.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)
    assert {"sigma_A", "structure", "twin_plane", "in_lattice_fit"} <= set(atoms.columns)
    assert len(atoms) == len(traced)
    assert meta["strain_sigma_A"] == 4.5 and "deformation gradient" in meta["strain_definition"]
    assert meta["units"]["exy"].startswith("1") and meta["stage"] == "lattice"
    raw = pq.read_schema(lattice_dir / "atoms.parquet").metadata[b"nanorecon"]
    assert json.loads(raw)["lattice_fit_atoms"] == "core"
    summary = json.loads((lattice_dir / "lattice.json").read_text())
    assert abs(summary["lattice_parameter_A"] / A_TRUE - 1) < 0.005
    assert summary["n_fitted"] == int(atoms["in_lattice_fit"].sum())
    assert summary["twinning"] == "single_crystal"
    csv = pd.read_csv(lattice_dir / "atoms.csv")
    assert list(csv.columns) == list(atoms.columns) and len(csv) == len(atoms)
    profile = pd.read_csv(lattice_dir / "radial_profile.csv")
    assert {"r_mid_A", "mean_distance_A", "std_distance_A", "n_bonds"} <= set(profile.columns)
    for ext in ("xyz", "cif", "pdb"):
        model = ase.io.read(lattice_dir / f"model.{ext}")
        assert len(model) == len(atoms) and set(model.get_chemical_symbols()) == {"Pt"}
        assert np.allclose(model.positions, atoms[["x_A", "y_A", "z_A"]], atol=2e-3)

    truth_csv = _write_truth(tmp_path / "truth_atoms.csv", truth)
    table = tmp_path / "validation.csv"
    rc = cli.main(
        ["validate", str(lattice_dir / "atoms.parquet"), str(truth_csv), str(table)]
        + ["--particle", "p0"]
    )
    assert rc == 0
    row = pd.read_csv(table)
    assert len(row) == 1 and str(row.loc[0, "particle"]) == "p0"
    assert row.loc[0, "n_true"] == len(truth)
    assert row.loc[0, "recall"] >= 0.995 and row.loc[0, "precision"] >= 0.995
    assert row.loc[0, "rms_error_pm"] <= 10.0
    assert row.loc[0, "species_accuracy"] == 1.0
    assert abs(row.loc[0, "lattice_parameter_error_percent"]) < 0.3
    strain = [f"strain_rmse_{c}" for c in ("exx", "eyy", "ezz", "exy", "exz", "eyz")]
    assert row.loc[0, strain].notna().all() and (row.loc[0, strain] < 0.02).all()
    assert row.loc[0, "strain_sigma_A"] == 4.5  # scored with the lattice step's smoothing

    # the dataset tables: this particle, and one whose steps have not run
    (lattice_dir / "validation.csv").write_bytes(table.read_bytes())
    unfinished = tmp_path / "p9"
    unfinished.mkdir()
    dataset_dir = tmp_path / "dataset"
    rc = cli.main(
        ["summarize", str(dataset_dir), str(lattice_dir), str(unfinished), "--dataset", "d1"]
        + ["--validation-csv", str(dataset_dir / "validation.csv")]
    )
    assert rc == 0
    particles = pd.read_csv(dataset_dir / "particles.csv")
    assert list(particles.particle) == ["lattice", "p9"]
    assert list(particles.status) == ["ok", "missing atoms, lattice"]
    first = particles.iloc[0]
    assert first.dataset == "d1" and first.n_atoms == len(atoms) == first.n_Pt
    assert first.lattice_parameter_A == pytest.approx(summary["lattice_parameter_A"])
    assert first.deviation_from_bulk_percent == pytest.approx(
        100 * (first.lattice_parameter_A / 3.924 - 1), abs=0.01
    )
    assert 1.0 < first.diameter_nm < 3.0
    assert first.validation_recall == row.loc[0, "recall"]
    assert np.isfinite(first.core_mean_volumetric_strain)
    assert pd.read_parquet(dataset_dir / "particles.parquet").shape == particles.shape
    validation = pd.read_csv(dataset_dir / "validation.csv")
    assert len(validation) == 1 and validation.loc[0, "rms_error_pm"] == row.loc[0, "rms_error_pm"]


def test_trace_zarr_with_half_maps(particle, tmp_path):
    truth, volume = particle
    rng = np.random.default_rng(3)
    group = zarr.open_group(str(tmp_path / "map.zarr"), mode="w", attributes={"voxel_size_A": 0.35})
    group.create_array("map", data=volume)
    for name in ("half1", "half2"):
        half = volume + rng.normal(0.0, 0.02, volume.shape).astype(np.float32)
        group.create_array(name, data=half)
    out = tmp_path / "out"
    assert cli.main(["trace", str(tmp_path / "map.zarr"), str(out), "--elements", "Pt"]) == 0
    traced, meta = read_atoms_parquet(out / "atoms.parquet")
    assert meta["half_maps"] is True
    assert abs(len(traced) - len(truth)) <= 1
    sigma = traced["sigma_A"]
    assert sigma.notna().mean() > 0.95 and 0.0 < sigma.median() < 0.05


def test_validate_needs_particle_when_truth_holds_several(particle, tmp_path, capsys):
    truth, _ = particle
    atoms = tmp_path / "atoms.parquet"
    truth.to_parquet(atoms)
    truth_csv = _write_truth(tmp_path / "truth.csv", truth)
    out = tmp_path / "v.csv"
    assert cli.main(["validate", str(atoms), str(truth_csv), str(out)]) == 2
    assert "holds 2 particles (p0, p1); choose one with --particle" in capsys.readouterr().err
    assert not out.exists()


def _nan_map(path: Path, volume: np.ndarray) -> Path:
    bad = volume.copy()
    bad[3, 4, 5] = np.nan
    return _write_mrc(path, bad, VOXEL_A)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, v: p / "absent.mrc", "absent.mrc does not exist"),
        (lambda p, v: _nan_map(p / "nan.mrc", v), "nan.mrc: the map holds 1 NaN or infinite"),
        (lambda p, v: _write_mrc(p / "nosize.mrc", v, None), "nosize.mrc states no voxel size"),
    ],
    ids=["missing", "nan", "no-voxel-size"],
)
def test_trace_errors_leave_no_output(particle, tmp_path, capsys, make, message):
    _, volume = particle
    map_path = make(tmp_path, volume)
    out = tmp_path / "out"
    out.mkdir()
    (out / "atoms.parquet").write_text("earlier result")
    assert cli.main(["trace", str(map_path), str(out), "--elements", "Pt"]) == 2
    err = capsys.readouterr().err
    assert "nanorecon trace: error:" in err and message in err
    assert _files(out) == ["atoms.parquet"]
    assert (out / "atoms.parquet").read_text() == "earlier result"


def test_voxel_size_flag_supplies_a_missing_header_value(particle, tmp_path):
    _, volume = particle
    small = volume[20:-20, 20:-20, 20:-20]
    map_path = _write_mrc(tmp_path / "nosize.mrc", small, None)
    out = tmp_path / "out"
    args = ["trace", str(map_path), str(out), "--elements", "Pt", "--voxel-size-A", "0.35"]
    assert cli.main(args) == 0
    assert len(read_atoms_parquet(out / "atoms.parquet")[0]) > 5


def test_bad_elements_rejected(particle, tmp_path, capsys):
    _, volume = particle
    map_path = _write_mrc(tmp_path / "map.mrc", volume, VOXEL_A)
    assert cli.main(["trace", str(map_path), str(tmp_path / "o"), "--elements", "Pt,Xx"]) == 2
    assert "'Xx' is no element symbol" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
