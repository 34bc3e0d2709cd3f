import numpy as np
import pandas as pd
from synthetic_atoms import pt_particle, render_map

from nanorecon.atoms import classify_species, trace_atoms
from nanorecon.validate import match_atoms

XYZ = ["x_A", "y_A", "z_A"]


def _errors(traced, truth):
    pairs = match_atoms(traced[XYZ].to_numpy(), truth[XYZ].to_numpy(), match_distance_A=0.8)
    d = np.linalg.norm(
        traced[XYZ].to_numpy()[pairs[:, 0]] - truth[XYZ].to_numpy()[pairs[:, 1]], axis=1
    )
    return pairs, d


def test_pt_particle_traced_to_10_pm():
    truth = pt_particle(length=9, cutoff=3, relaxation_A=-0.04, jitter_A=0.03, seed=1)  # 405 atoms
    extent = np.ptp(truth[XYZ].to_numpy(), axis=0).max()
    assert 18.0 < extent < 26.0
    volume = render_map(truth, voxel_size_A=0.35, resolution_A=0.7, noise=0.05, seed=2)
    traced = trace_atoms(volume, 0.35, elements=["Pt"])
    pairs, d = _errors(traced, truth)
    recall, precision = len(pairs) / len(truth), len(pairs) / len(traced)
    rms_pm = 100 * np.sqrt(np.mean(d**2))
    assert recall >= 0.995 and precision >= 0.995
    assert rms_pm <= 10.0
    assert set(traced["element"]) == {"Pt"}
    assert np.allclose(traced["width_A"].median(), 0.7 / 2.3548, rtol=0.05)


def test_fept_species_by_intensity():
    truth = pt_particle(length=7, cutoff=2, relaxation_A=0.0, jitter_A=0.02, a_A=3.85, seed=3)
    rng = np.random.default_rng(4)
    truth["element"] = np.where(rng.random(len(truth)) < 0.5, "Fe", "Pt")
    volume = render_map(truth, voxel_size_A=0.35, resolution_A=0.7, noise=0.02, seed=5)
    traced = trace_atoms(volume, 0.35, elements=["Fe", "Pt"])
    pairs, d = _errors(traced, truth)
    assert len(pairs) / len(truth) >= 0.99
    same = traced["element"].to_numpy()[pairs[:, 0]] == truth["element"].to_numpy()[pairs[:, 1]]
    assert same.mean() >= 0.97
    fe = traced["element"] == "Fe"
    ratio = traced.loc[~fe, "intensity"].median() / traced.loc[fe, "intensity"].median()
    assert np.isclose(ratio, (78 / 26) ** 1.7, rtol=0.15)


def test_half_map_sigma_matches_true_error():
    truth = pt_particle(length=6, cutoff=2, jitter_A=0.02, seed=6)
    noise = 0.08
    full = render_map(truth, noise=noise, seed=7)
    halves = [render_map(truth, noise=noise * np.sqrt(2.0), seed=s) for s in (8, 9)]
    traced = trace_atoms(full, 0.35, elements=["Pt"], half_maps=halves)
    _, d = _errors(traced, truth)
    true_sigma = np.sqrt(np.mean(d**2) / 3.0)  # per coordinate
    estimate = np.sqrt(np.nanmean(traced["sigma_A"] ** 2))
    assert traced["sigma_A"].notna().mean() > 0.95
    assert 0.6 < estimate / true_sigma < 1.6
    assert 0.5 < np.sqrt(np.mean(traced["sigma_fit_A"] ** 2)) / true_sigma < 2.0


def test_upsampled_tracing_keeps_the_frame():
    truth = pd.DataFrame(
        {"x_A": [0.0, 2.8], "y_A": [0.0, 0.3], "z_A": [0.0, -0.4], "element": "Pt"}
    )
    volume = render_map(truth, voxel_size_A=0.4, resolution_A=0.8, box=24)
    traced = trace_atoms(volume, 0.4, elements=["Pt"], upsample=2).sort_values("x_A")
    assert len(traced) == 2
    assert np.abs(traced[XYZ].to_numpy() - truth[XYZ].to_numpy()).max() < 0.02


def test_classify_species_orders_by_z():
    labels = classify_species([5.0, 1.0, 5.2, 0.8, 1.1], ["Pt", "Fe"])
    assert list(labels) == ["Pt", "Fe", "Pt", "Fe", "Fe"]
