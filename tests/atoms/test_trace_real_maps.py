"""Regression: tracing a reconstruction-like map — positivity-clipped, noisy, blurred along z by
the missing wedge, two species with a 6:1 contrast — where the MAD noise estimate is 0."""

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from synthetic_atoms import pt_particle, render_map

from nanorecon.atoms import trace_atoms
from nanorecon.validate import match_atoms

XYZ = ["x_A", "y_A", "z_A"]


def _reconstruction_like(truth, noise, seed):
    """Gaussian atoms (Pt 1, Fe ≈ 1/6), z-blur (missing-wedge elongation), voxel noise, then
    positivity and a support 3 Å around the atoms: most voxels become exactly 0."""
    volume = render_map(truth, voxel_size_A=0.35, resolution_A=0.7, z_exponent=1.63)
    volume = ndi.gaussian_filter(volume, (0.6, 0.0, 0.0))
    volume = volume + np.random.default_rng(seed).normal(0.0, noise, volume.shape)
    index = (truth[XYZ].to_numpy() / 0.35)[:, ::-1] + volume.shape[0] // 2
    grid = np.indices(volume.shape).reshape(3, -1).T
    near = cKDTree(index).query(grid, distance_upper_bound=3.0 / 0.35)[0] < np.inf
    volume[~near.reshape(volume.shape)] = 0.0
    return np.clip(volume, 0.0, None).astype(np.float32)


def test_positivity_clipped_noisy_fept_map():
    truth = pt_particle(length=6, cutoff=2, relaxation_A=0.0, jitter_A=0.02, a_A=3.85, seed=11)
    truth["element"] = np.where(np.random.default_rng(12).random(len(truth)) < 0.5, "Fe", "Pt")
    noise = 0.02
    full = _reconstruction_like(truth, noise, seed=13)
    halves = [_reconstruction_like(truth, noise * np.sqrt(2.0), seed=s) for s in (14, 15)]
    assert np.median(full) == 0.0  # the failure mode: MAD noise estimate of 0

    traced = trace_atoms(full, 0.35, elements=["Fe", "Pt"], half_maps=halves)
    assert traced.attrs["noise_method"] == "half_maps"
    pairs = match_atoms(traced[XYZ].to_numpy(), truth[XYZ].to_numpy(), match_distance_A=0.8)
    assert len(pairs) / len(truth) >= 0.99
    assert len(pairs) / len(traced) >= 0.99
    d = np.linalg.norm(
        traced[XYZ].to_numpy()[pairs[:, 0]] - truth[XYZ].to_numpy()[pairs[:, 1]], axis=1
    )
    assert 100 * np.sqrt(np.mean(d**2)) <= 10.0
    same = traced["element"].to_numpy()[pairs[:, 0]] == truth["element"].to_numpy()[pairs[:, 1]]
    assert same.mean() >= 0.97
    # The fitted shape follows the z elongation.
    assert traced["width_z_A"].median() > 1.08 * traced["width_A"].median()

    # Without half maps the noise comes from the clipped map itself and tracing still works.
    alone = trace_atoms(full, 0.35, elements=["Fe", "Pt"])
    assert alone.attrs["noise_method"] == "nonzero"
    pairs = match_atoms(alone[XYZ].to_numpy(), truth[XYZ].to_numpy(), match_distance_A=0.8)
    assert len(pairs) / len(truth) >= 0.99 and len(pairs) / len(alone) >= 0.99
