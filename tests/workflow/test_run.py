"""End-to-end runs of the workflow: an unseen sheet, the CI profile, and the SLURM profile's plan."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import zarr

HEADER = (
    "dataset\tmodality\tpath\tpixel_size_A\tvoltage_kV\telements\ttilt_angles\t"
    "frame_rate_hz\tdose_e_per_A2\tdefocus_A\tcs_mm\tcomment\n"
)


def write_mrc(path: Path, data: np.ndarray, voxel_size_A: float) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size_A


def test_unseen_sheet_is_ingested(run_snakemake, workdir: Path, tmp_path: Path):
    """`--config samples=SHEET results=OUT` on MRC stacks + .tlt in a folder of their own."""
    data_dir = tmp_path / "microscope" / "session 1"
    data_dir.mkdir(parents=True)
    rng = np.random.default_rng(7)
    tilt_series = rng.integers(0, 3000, size=(5, 40, 48)).astype(np.int16)
    movie = rng.normal(100.0, 10.0, size=(12, 32, 32)).astype(np.float32)
    write_mrc(data_dir / "ts.mrc", tilt_series, 0.41)  # pixel size only in the header
    write_mrc(data_dir / "movie.mrcs", movie, 1.0)
    angles = np.array([-60.0, -30.0, 0.0, 30.0, 60.0])
    np.savetxt(data_dir / "ts.rawtlt", angles, fmt="%.2f")
    sheet = data_dir / "samples.tsv"
    sheet.write_text(
        HEADER
        + "tiltA\ttomography\tts.mrc\t\t300\tFe,Pt\tts.rawtlt\t\t2000\t\t\tfirst\n"
        + f"movieB\tbrownian\t{data_dir / 'movie.mrcs'}\t0.36\t200\tAu\t\t400\t30\t120\t0.01\tx\n"
    )
    out = tmp_path / "out"

    # random images hold no particle to reconstruct: ask for the ingested stores only
    targets = [str(out / "tiltA" / "raw.zarr"), str(out / "movieB" / "raw.zarr")]
    result = run_snakemake(
        workdir, *targets, "--cores", "2", "--config", f"samples={sheet}", f"results={out}"
    )
    assert result.returncode == 0, result.stdout

    tomo = zarr.open_group(out / "tiltA" / "raw.zarr", mode="r")
    np.testing.assert_array_equal(tomo["data"][:], tilt_series.astype(np.float32))
    assert tomo["data"].dtype == np.float32
    assert tomo["data"].chunks[1:] == (40, 48)
    attrs = dict(tomo.attrs)
    assert attrs["modality"] == "tomography"
    assert attrs["pixel_size_A"] == pytest.approx(0.41, rel=1e-6)
    assert attrs["voltage_kV"] == 300
    assert attrs["tilt_angles_deg"] == angles.tolist()
    assert attrs["elements"] == ["Fe", "Pt"]
    assert attrs["dose_e_per_A2"] == 2000
    assert attrs["source_file"] == str(data_dir / "ts.mrc")
    assert attrs["source_sha256"] == hashlib.sha256((data_dir / "ts.mrc").read_bytes()).hexdigest()

    brownian = zarr.open_group(out / "movieB" / "raw.zarr", mode="r")
    np.testing.assert_array_equal(brownian["data"][:], movie)
    attrs = dict(brownian.attrs)
    assert attrs["modality"] == "brownian"
    assert attrs["pixel_size_A"] == 0.36  # the sheet wins over the header's 1.0
    assert attrs["frame_rate_hz"] == 400
    assert attrs["defocus_A"] == 120
    assert attrs["cs_mm"] == 0.01
    assert "tilt_angles_deg" not in attrs or attrs["tilt_angles_deg"] is None
    assert (out / "movieB" / "benchmarks" / "ingest.tsv").is_file()
    assert (workdir / "logs" / "ingest" / "movieB.log").is_file()

    # a second run has nothing to do
    again = run_snakemake(
        workdir, *targets, "-n", "--cores", "2", "--config", f"samples={sheet}", f"results={out}"
    )
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout


def test_ci_profile_runs_the_whole_workflow(ci_workflow):
    """The reduced synthetic datasets run through every stage built so far, scored against truth."""
    workdir, result = ci_workflow
    assert result.returncode == 0, result.stdout
    for dataset, modality in [("ci_tomo", "tomography"), ("ci_brownian", "brownian")]:
        group = zarr.open_group(workdir / "results-ci" / dataset / "raw.zarr", mode="r")
        assert group.attrs["modality"] == modality
        data = group["data"]
        assert data.ndim == 3 and data.shape[0] >= 2
        assert np.isfinite(data[:]).all()
        truth = workdir / "resources" / "simulated" / dataset / "truth"
        atoms = pd.read_csv(truth / "atoms.csv")
        assert {"x_A", "y_A", "z_A", "element"} <= set(atoms.columns)
        assert len(atoms) > 50
    tilts = pd.read_csv(workdir / "resources/simulated/ci_tomo/truth/tilts.csv")
    group = zarr.open_group(workdir / "results-ci" / "ci_tomo" / "raw.zarr", mode="r")
    np.testing.assert_allclose(group.attrs["tilt_angles_deg"], tilts.tilt_nominal_deg, atol=1e-3)
    assert len(tilts) == group["data"].shape[0]

    # tilt series → map → atoms → lattice → tables, scored against the simulator's atoms
    tables = workdir / "results-ci" / "ci_tomo"
    particle = tables / "particles" / "p000"
    for name in ("map.zarr", "map.mrc", "fsc.csv", "orientations.parquet", "stack.zarr"):
        assert (particle / name).exists(), name
    for name in ("atoms.parquet", "lattice.json", "radial_profile.csv", "model.cif", "model.pdb"):
        assert (particle / name).exists(), name
    validation = pd.read_csv(tables / "validation.csv").iloc[0]
    assert validation.recall >= 0.99 and validation.precision >= 0.99
    assert validation.rms_error_pm <= 15.0
    assert abs(validation.lattice_parameter_error_percent) <= 0.2
    particles = pd.read_csv(tables / "particles.csv")
    assert list(particles.status) == ["ok"]
    row = particles.iloc[0]
    assert row.n_atoms == validation.n_traced and row.n_Pt == row.n_atoms
    assert row.fsc_resolution_A < 1.5 and row.fsc_truth_resolution_A < 1.5
    assert (tables / "benchmarks" / "reconstruct" / "p000.tsv").is_file()


def test_ci_profile_runs_the_brownian_chain(ci_workflow):
    """Movie → tracks → particle stacks → per-particle refinement (dask) → atoms, scored per track."""
    workdir, result = ci_workflow
    assert result.returncode == 0, result.stdout
    tables = workdir / "results-ci" / "ci_brownian"
    truth = workdir / "resources" / "simulated" / "ci_brownian" / "truth"
    for name in ("track", "extract", "refine_particles"):
        assert (tables / "benchmarks" / f"{name}.tsv").is_file(), name
        assert (workdir / "logs-ci" / name / "ci_brownian.log").is_file(), name
    tracks = pd.read_parquet(tables / "tracks.parquet")
    assert {"frame", "track", "x_A", "y_A", "status"} <= set(tracks.columns)
    listing = pd.read_csv(tables / "particles.tsv", sep="\t")
    refinement = pd.read_csv(tables / "refinement.tsv", sep="\t", keep_default_na=False)
    # every extracted particle has a row and a status; rejected tracks keep their reason
    assert list(refinement.particle) == list(listing.particle[listing.status == "ok"]) + list(
        listing.particle[listing.status != "ok"]
    )
    assert refinement.status.str.fullmatch(r"ok|failed: .+").all()
    frames = pd.read_csv(truth / "frames.csv")
    refined = refinement[refinement.resolution_A != ""]
    assert len(refined) >= 1  # at least one track is long enough to be refined
    for row in refined.itertuples():
        folder = tables / "particles" / row.particle
        for name in ("map.zarr", "map.mrc", "fsc.csv", "abinitio_starts.csv", "refined.json"):
            assert (folder / name).exists(), (row.particle, name)
        assert float(row.resolution_A) > 0 and int(row.n_used) >= 20
        # the track is matched to the true particle it follows, within a pixel or two
        validation = pd.read_csv(folder / "orientation_validation.csv").iloc[0]
        assert int(validation.true_particle) == int(row.true_particle)
        assert int(validation.true_particle) in set(frames.particle)
        assert validation.match_distance_A < 1.0
        assert 0 <= validation.orientation_error_median_deg <= validation.orientation_error_p90_deg
        orientations = pd.read_parquet(folder / "orientations.parquet")
        assert set(orientations.half_set) == {1, 2} and len(orientations) == int(row.n_frames)
        # the rounds past 2 Å ran with and without the |sin χ| weighting (the stacks are phase
        # flipped), and one of the two was kept
        history = pd.read_csv(folder / "refinement_history.csv")
        rounds = history[history.stage.str.startswith("high-resolution")]
        assert set(rounds.stage) == {"high-resolution-weighted", "high-resolution-unweighted"}
        assert rounds.groupby("stage").kept.all().sum() == 1
        assert not rounds.groupby("stage").kept.any().all()
        assert history.kept[~history.stage.str.startswith("high-resolution")].all()
    # the dataset tables list every particle, traced or not, with its status and orientation error
    particles = pd.read_csv(tables / "particles.csv", keep_default_na=False)
    assert sorted(particles.particle) == sorted(refinement.particle)
    status = dict(zip(particles.particle, particles.status, strict=True))
    validation = pd.read_csv(tables / "validation.csv").set_index("particle")
    assert sorted(validation.index) == sorted(refinement.particle[refinement.resolution_A != ""])
    for row in refinement.itertuples():
        if row.status != "ok":
            assert status[row.particle] == row.status
        if row.resolution_A != "":
            assert validation.loc[row.particle, "orientation_error_median_deg"] == pytest.approx(
                float(row.orientation_error_median_deg)
            )
    # particles refined to atomic resolution are traced and scored against their own true atoms
    ok = refinement[refinement.status == "ok"]
    assert (ok.resolution_A.astype(float) <= 2.0).all()
    assert all(status[pid] == "ok" or status[pid].startswith("suspect") for pid in ok.particle)
    if len(ok):
        assert (validation.loc[list(ok.particle), "n_true"] > 50).all()


def test_slurm_profile_plans_cluster_jobs(run_snakemake, workdir: Path):
    result = run_snakemake(workdir, "-n", "--profile", "profiles/slurm")
    assert result.returncode == 0, result.stdout
    assert "slurm_partition=cpu" in result.stdout
    assert "rule ingest" in result.stdout
    assert "rule simulate_tomography" in result.stdout
    # the reconstruction asks SLURM for a GPU on the GPU partition and then computes on it
    job = result.stdout.split("rule reconstruct:", 1)[1].split("\n\n", 1)[0]
    assert "gpu=1" in job and "slurm_partition=gpu" in job
    assert "--device gpu" in job
    # so does the Brownian per-particle refinement, whose dask cluster then uses the GPU
    job = result.stdout.split("checkpoint refine_particles:", 1)[1].split("\n\n", 1)[0]
    assert "gpu=1" in job and "slurm_partition=gpu" in job
    assert "--device gpu" in job and "--cluster auto" in job
