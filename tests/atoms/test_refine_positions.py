"""Atomic position refinement against projections: geometry, accuracy, input checks, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase.cluster import Octahedron
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from synthetic_atoms import render_map

import nanorecon.cli as cli
from nanorecon.atoms import project_atoms, refine_positions
from nanorecon.geometry import tilt_series_rotations
from nanorecon.io import (
    orientations_table,
    read_atoms_parquet,
    write_map_zarr,
    write_orientations,
    write_particle_stack,
)
from nanorecon.refine import FourierSliceProjector
from nanorecon.simulate import atoms_to_volume

PIXEL_A = 0.35
WIDTH_A = 0.37  # probe ⊕ thermal blur of the demo data [Å]


def _rms_pm(a: np.ndarray, b: np.ndarray) -> float:
    return 100.0 * float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


@pytest.fixture(scope="module")
def fept():
    """A small Fe/Pt octahedron, ±70° tilt series (Poisson noise) and perturbed start positions."""
    rng = np.random.default_rng(3)
    cluster = Octahedron("Pt", 5, 1, latticeconstant=3.85)
    positions = cluster.positions - cluster.positions.mean(axis=0)
    positions = positions + rng.normal(0.0, 0.02, positions.shape)
    elements = np.where(rng.random(len(positions)) < 0.5, "Fe", "Pt")
    tilts = np.linspace(-70.0, 70.0, 28)
    rotations = tilt_series_rotations(tilts, tilt_axis_deg=4.0)
    shifts = rng.uniform(-0.5, 0.5, (len(tilts), 2))
    # Integrated counts per atom and image: HAADF ∝ Z^1.7 (Pt 1600, Fe 248).
    counts = np.where(elements == "Pt", 1600.0, 1600.0 * (26.0 / 78.0) ** 1.7)
    clean = project_atoms(
        positions, counts, rotations, shifts, shape=(56, 56), pixel_size_A=PIXEL_A, width_A=WIDTH_A
    )
    # Counts on a flat background, then scaled and offset as by the front end's normalisation.
    images = (0.005 * rng.poisson(clean + 8.0) - 0.05).astype(np.float32)
    start = positions + rng.normal(0.0, 1.0, positions.shape) * np.array([0.06, 0.06, 0.12])
    return {
        "positions": positions,
        "elements": elements,
        "rotations": rotations,
        "shifts": shifts,
        "images": images,
        "start": start,
        "counts": counts,
    }


def test_project_atoms_matches_fourier_slice_projector():
    # Atoms rendered as a voxel-integrated map and projected by the Fourier-slice projector must
    # give what project_atoms draws directly: same origin voxel, rotation sense and shifts.
    rng = np.random.default_rng(0)
    size, voxel_A, sigma_A = 48, 0.4, 0.45
    positions = rng.uniform(-5.0, 5.0, (6, 3))
    weights = rng.uniform(1.0, 3.0, 6)
    rotations = Rotation.random(4, rng=1)
    shifts = rng.uniform(-1.5, 1.5, (4, 2))
    volume = atoms_to_volume(positions, weights, (size,) * 3, voxel_A, sigma_A, dtype=np.float64)
    projector = FourierSliceProjector(
        rotations, size, shifts_A=shifts, voxel_size_A=voxel_A, dtype=np.float64, eps=1e-10
    )
    reference = projector.forward(volume)
    direct = project_atoms(
        positions, weights, rotations, shifts, shape=(size, size), pixel_size_A=voxel_A,
        width_A=sigma_A,
    )  # fmt: skip
    yy, xx = np.mgrid[:size, :size].astype(float)
    for k in range(4):
        assert np.corrcoef(reference[k].ravel(), direct[k].ravel())[0, 1] > 0.999
        # Peak positions: centroids within 1.5 Å of each expected projected atom position.
        centres = rotations[k].apply(positions)[:, :2] + shifts[k]
        centres = centres / voxel_A + size // 2  # (column, row) [px]
        for cx, cy in centres:
            near = (xx - cx) ** 2 + (yy - cy) ** 2 < (1.5 / voxel_A) ** 2
            c_ref = [np.average(a[near], weights=reference[k][near]) for a in (xx, yy)]
            c_dir = [np.average(a[near], weights=direct[k][near]) for a in (xx, yy)]
            assert np.allclose(c_ref, c_dir, atol=0.01)


def test_refinement_reduces_position_error(fept):
    fit = refine_positions(
        fept["images"],
        fept["rotations"],
        fept["shifts"],
        fept["start"],
        fept["elements"],
        pixel_size_A=PIXEL_A,
    )
    truth, start = fept["positions"], fept["start"]
    before, after = _rms_pm(start, truth), _rms_pm(fit.positions_A, truth)
    # Measured: 14.7 pm → 2.0 pm; along z 12.1 → 1.3 pm (Fe atoms, 6.5 × fainter, dominate).
    assert before > 12.0
    assert after < 2.6
    z_error = 100.0 * np.sqrt(np.mean((fit.positions_A[:, 2] - truth[:, 2]) ** 2))
    assert z_error < 1.8
    # No atom ends up on another site: its nearest true atom is its own, well within 0.1 Å.
    distance, nearest = cKDTree(truth).query(fit.positions_A)
    assert np.array_equal(nearest, np.arange(len(truth)))
    assert distance.max() < 0.08  # measured 0.046 Å
    np.testing.assert_allclose(fit.displacement_A, fit.positions_A - start)
    # Widths and the Pt : Fe intensity ratio (Z^1.7) come out of the fit.
    assert fit.species == ("Fe", "Pt")
    np.testing.assert_allclose(fit.widths_A, WIDTH_A, rtol=0.03)
    ratio = fit.amplitudes[1] / fit.amplitudes[0]
    assert ratio == pytest.approx((78.0 / 26.0) ** 1.7, rel=0.05)
    assert abs(float(np.mean(fit.scales)) - 1.0) < 1e-9
    np.testing.assert_allclose(fit.offsets, 0.005 * 8.0 - 0.05, atol=0.003)
    # The residual falls to the noise (measured ×0.51); with the Poisson noise model the
    # uncertainty estimate matches the actual errors (measured 2.1 pm against 2.0 pm).
    assert fit.rms_history[-1] < 0.6 * fit.rms_history[0]
    estimate = 100.0 * np.sqrt(np.mean(np.sum(fit.sigma_A**2, axis=1)))
    assert 0.7 * after < estimate < 1.5 * after


def test_poisson_noise_model_beats_uniform_weights(fept):
    # Counting noise is largest on bright Pt columns: weighting by the fitted variance model
    # helps the faint Fe atoms beside them (measured 2.0 pm against 2.6 pm overall).
    arguments = (fept["images"], fept["rotations"], fept["shifts"], fept["start"], fept["elements"])
    errors = {
        model: _rms_pm(
            refine_positions(*arguments, pixel_size_A=PIXEL_A, noise_model=model).positions_A,
            fept["positions"],
        )
        for model in ("poisson", "uniform")
    }
    assert errors["poisson"] < 0.85 * errors["uniform"]


def test_refinement_is_exact_without_noise(fept):
    rotations, shifts = fept["rotations"][::3], fept["shifts"][::3]
    images = project_atoms(
        fept["positions"], fept["counts"], rotations, shifts, shape=(56, 56),
        pixel_size_A=PIXEL_A, width_A=WIDTH_A,
    )  # fmt: skip
    fit = refine_positions(
        images,
        rotations.as_matrix(),
        shifts,
        fept["start"],
        fept["elements"],
        pixel_size_A=PIXEL_A,
        width_A=0.3,
        tolerance=1e-12,
        n_iterations=30,
        noise_model="uniform",  # no noise to model
    )
    assert _rms_pm(fit.positions_A, fept["positions"]) < 0.01
    np.testing.assert_allclose(fit.widths_A, WIDTH_A, rtol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": "nan"}, "NaN"),
        ({"rotations": "short"}, "one rotation per image"),
        ({"shifts": np.zeros((3, 2))}, "shifts_A must have shape"),
        ({"species": ["Pt"]}, "one label per atom"),
        ({"positions": np.full((2, 3), np.nan)}, "positions_A contain NaN"),
        ({"positions": np.zeros((2, 2))}, r"positions_A must have shape \(N, 3\)"),
        ({"pixel_size_A": 0.0}, "pixel_size_A must be positive"),
        ({"noise_model": "gaussian"}, "noise_model must be"),
    ],
)
def test_bad_input_raises(fept, change, message):
    images = fept["images"][:4].copy()
    rotations = fept["rotations"][:4]
    arguments = {
        "images": images,
        "rotations": rotations,
        "shifts": fept["shifts"][:4],
        "positions": fept["start"][:2],
        "species": ["Pt", "Fe"],
        "pixel_size_A": PIXEL_A,
        "noise_model": "poisson",
    }
    if change.get("images") == "nan":
        images[0, 3, 3] = np.nan
        change = {}
    if change.get("rotations") == "short":
        change = {"rotations": fept["rotations"][:3]}
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        refine_positions(
            arguments["images"],
            arguments["rotations"],
            arguments["shifts"],
            arguments["positions"],
            arguments["species"],
            pixel_size_A=arguments["pixel_size_A"],
            noise_model=arguments["noise_model"],
        )


@pytest.fixture
def trace_verb_only(monkeypatch):
    # the dispatcher imports every verb's module; this test needs `trace` only
    monkeypatch.setattr(cli, "VERBS", {"trace": "_trace"})


def test_cli_trace_refines_against_stack(fept, tmp_path, trace_verb_only):
    truth = pd.DataFrame(fept["positions"], columns=["x_A", "y_A", "z_A"])
    truth["element"] = fept["elements"]
    # A map blurred along z, as by the missing wedge: the tracer's z positions suffer.
    volume = render_map(truth, voxel_size_A=PIXEL_A, resolution_A=0.8, box=56, noise=0.02, seed=4)
    volume = gaussian_filter1d(volume, 1.5, axis=0)
    particle = tmp_path / "p000"
    write_map_zarr(particle / "map.zarr", {"map": volume}, voxel_size_A=PIXEL_A)
    write_particle_stack(particle / "stack.zarr", fept["images"], pixel_size_A=PIXEL_A)
    table = orientations_table(
        fept["rotations"], fept["shifts"], half_sets=1 + np.arange(len(fept["shifts"])) % 2
    )
    write_orientations(particle / "orientations.parquet", table)
    out = tmp_path / "traced"
    argv = ["trace", str(particle / "map.zarr"), str(out), "--elements", "Fe,Pt"]
    stack = ["--stack", str(particle / "stack.zarr")]
    orientations = ["--orientations", str(particle / "orientations.parquet")]
    assert cli.main(argv + stack) == 2  # --stack needs --orientations
    assert cli.main(argv + stack + orientations) == 0
    atoms, meta = read_atoms_parquet(out / "atoms.parquet")
    assert meta["positions"].startswith("refined against the projections")
    assert meta["refinement"]["n_images"] == len(fept["images"])
    assert meta["refinement"]["species"] == ["Fe", "Pt"]
    refined = atoms[["x_A", "y_A", "z_A"]].to_numpy()
    traced = atoms[["x_map_A", "y_map_A", "z_map_A"]].to_numpy()
    np.testing.assert_allclose(
        atoms["refine_shift_A"], np.linalg.norm(refined - traced, axis=1), atol=1e-9
    )
    assert {"sigma_proj_x_A", "sigma_proj_y_A", "sigma_proj_z_A"} <= set(atoms.columns)
    # Against the truth: every true atom found, and the refined positions much closer.
    distance, _ = cKDTree(fept["positions"]).query(refined)
    map_distance, _ = cKDTree(fept["positions"]).query(traced)
    assert len(atoms) == len(truth)
    rms_refined = 100.0 * np.sqrt(np.mean(distance**2))
    rms_map = 100.0 * np.sqrt(np.mean(map_distance**2))
    # Measured: 3.9 pm from the map, 2.6 pm refined.
    assert rms_refined < 3.0
    assert rms_refined < 0.8 * rms_map
