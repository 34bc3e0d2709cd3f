import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.cluster import Decahedron, Octahedron
from scipy.spatial.transform import Rotation
from synthetic_atoms import pt_particle

from nanorecon.lattice import (
    analyse_lattice,
    common_neighbour_analysis,
    fit_lattice,
    local_strain,
    radial_distance_profile,
)

XYZ = ["x_A", "y_A", "z_A"]


def _frame(positions, element="Pt"):
    return pd.DataFrame(
        {"x_A": positions[:, 0], "y_A": positions[:, 1], "z_A": positions[:, 2], "element": element}
    )


@pytest.mark.parametrize(
    ("name", "structure", "expected"),
    [("Cu", "fcc", "fcc"), ("Fe", "bcc", "bcc"), ("Co", "hcp", "hcp")],
)
def test_cna_bulk(name, structure, expected):
    atoms = bulk(name, structure, cubic=structure != "hcp").repeat(5)
    pos = atoms.positions + np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    labels = common_neighbour_analysis(pos)
    centre = np.linalg.norm(pos - pos.mean(0), axis=1) < 3.0
    assert np.all(labels[centre] == expected)


def test_three_lattice_parameters_resolved():
    fitted = []
    for k, a in enumerate((4.02, 3.99, 3.96)):
        atoms = pt_particle(length=9, cutoff=3, a_A=a, relaxation_A=-0.05, jitter_A=0.03, seed=k)
        rot = Rotation.random(random_state=k)
        atoms[XYZ] = rot.apply(np.array(atoms[XYZ].to_numpy())) + [0.4, -0.2, 0.1]
        _, summary = analyse_lattice(atoms)
        fitted.append(summary["lattice_parameter_A"])
        assert abs(summary["lattice_parameter_A"] - a) / a < 0.002
        assert np.isclose(summary["deviation_from_bulk_percent"], 100 * (fitted[-1] / 3.9242 - 1))
    assert fitted[0] > fitted[1] > fitted[2]


def test_fit_lattice_recovers_orientation_and_sites():
    pos = Octahedron("Pt", 7, 2, latticeconstant=3.92).positions
    rot = Rotation.from_euler("zyx", [10, 20, 30], degrees=True)
    fit = fit_lattice(rot.apply(pos) + 1.0)
    assert np.isclose(fit.lattice_parameter_A, 3.92, rtol=1e-9)
    # The fitted rotation equals the applied one up to a cubic symmetry operation.
    rel = (fit.rotation.inv() * rot).as_matrix()
    assert np.allclose(np.abs(rel), np.round(np.abs(rel)), atol=1e-9)
    assert np.all(fit.hkl.sum(axis=1) % 2 == 0)
    assert fit.rms_residual_A < 1e-9


def test_homogeneous_strain_recovered():
    pos = Octahedron("Pt", 9, 3, latticeconstant=3.92).positions
    pos = pos - pos.mean(0)
    strain = np.array([[0.01, 0.005, 0.0], [0.005, 0.0, 0.0], [0.0, 0.0, 0.0]])
    per_atom, _ = analyse_lattice(
        _frame(pos @ (np.eye(3) + strain).T), reference_lattice_parameter_A=3.92
    )
    core = ~per_atom["surface"]
    assert core.sum() > 100
    expected = {"exx": 0.01, "eyy": 0.0, "ezz": 0.0, "exy": 0.005, "exz": 0.0, "eyz": 0.0}
    for name, value in expected.items():
        assert np.abs(per_atom.loc[core, name] - value).max() < 0.001, name
    perfect, summary = analyse_lattice(_frame(pos))
    for name in expected:
        assert np.abs(perfect[name]).max() < 1e-9
    assert summary["core_mean_displacement_A"] < 1e-9


def test_gaussian_strain_follows_smooth_field_and_averages_noise():
    a = 3.92
    sites = bulk("Pt", "fcc", a=a, cubic=True).repeat(10).positions
    sites -= sites.mean(axis=0)
    # u = (c x², 0, 0): exx = 2 c x varies linearly, which a linear local fit follows exactly
    c = 1e-4
    strained = sites + np.stack([c * sites[:, 0] ** 2, 0 * sites[:, 0], 0 * sites[:, 0]], axis=1)
    core = np.abs(sites).max(axis=1) < 4.0
    for sigma in (a, 1.5 * a):
        e = local_strain(strained, sites, sigma_A=sigma)
        assert np.abs(e[core, 0] - 2 * c * sites[core, 0]).max() < 1e-6
        assert np.abs(e[core, 1:]).max() < 1e-6
    # 5 pm random displacements: strain noise falls as the smoothing length grows
    noisy = sites + np.random.default_rng(1).normal(0, 0.05, sites.shape)
    rms = [np.sqrt(np.mean(local_strain(noisy, sites, sigma_A=s)[core] ** 2)) for s in (a / 2, a)]
    assert 0.0002 < rms[1] < 0.6 * rms[0]
    with pytest.raises(ValueError, match="sigma_A"):
        local_strain(sites, sites, sigma_A=0.0)


def test_decahedron_is_multiply_twinned():
    atoms = Decahedron("Pt", 5, 2, 0)
    per_atom, summary = analyse_lattice(_frame(atoms.positions))
    assert summary["twinning"] == "multiply_twinned"
    assert summary["n_twin_planes"] == 5
    normals = np.array(summary["twin_plane_normals"])
    # The five planes share the five-fold axis (z for ase's Decahedron): normals lie across it.
    assert np.abs(normals[:, 2]).max() < 0.05
    labelled = per_atom["twin_plane"] >= 0
    assert labelled.sum() >= 5 * 10
    assert set(per_atom.loc[per_atom["structure"] == "hcp", "twin_plane"]) == set(range(5))


def test_fcc_sphere_has_no_twins():
    pos = bulk("Pt", "fcc", a=3.92, cubic=True).repeat(8).positions
    pos = pos - pos.mean(0)
    sphere = pos[np.linalg.norm(pos, axis=1) < 11.0]
    per_atom, summary = analyse_lattice(_frame(sphere))
    assert summary["twinning"] == "single_crystal"
    assert (per_atom["twin_plane"] < 0).all()
    assert (per_atom.loc[~per_atom["surface"], "structure"] == "fcc").all()


def test_radial_profile_sees_surface_contraction():
    atoms = pt_particle(length=9, cutoff=3, relaxation_A=-0.08, jitter_A=0.0)
    profile = radial_distance_profile(atoms[XYZ].to_numpy(), bin_width_A=2.0)
    assert profile["n_bonds"].sum() > 1000
    inner = profile.iloc[0]
    assert np.isclose(inner["mean_distance_A"], 3.924 / np.sqrt(2), atol=1e-6)
    assert profile["mean_distance_A"].iloc[-1] < inner["mean_distance_A"] - 0.01


def test_core_fit_removes_surface_relaxation_bias():
    # Without jitter the core fit is exact even under a strong (-0.10 Å) surface relaxation,
    # while a fit over all atoms is biased low.
    atoms = pt_particle(length=9, cutoff=3, a_A=3.99, relaxation_A=-0.10, jitter_A=0.0)
    per_atom, summary = analyse_lattice(atoms)
    assert summary["lattice_fit_atoms"] == "core"
    assert np.isclose(summary["lattice_parameter_A"], 3.99, rtol=1e-9)
    fit = per_atom["in_lattice_fit"]
    assert summary["n_fitted"] == fit.sum() > 50
    assert per_atom.loc[fit, "depth_A"].min() >= summary["core_depth_A"]
    # 0.8 a, with a estimated from the (relaxed) median bond length
    assert np.isclose(summary["core_depth_A"], 0.8 * 3.99, rtol=0.03)
    assert not per_atom.loc[fit, "surface"].any()
    _, everything = analyse_lattice(atoms, fit_surface=True)
    assert everything["lattice_fit_atoms"] == "all"
    assert everything["lattice_parameter_A"] < 3.99 * 0.995


@pytest.mark.parametrize(("length", "expected"), [(5, "full_coordination"), (4, "all")])
def test_small_particle_falls_back(length, expected):
    # 79 atoms: no atom 0.8 a deep, 19 fully coordinated; 38 atoms: only 6 fully coordinated.
    atoms = _frame(Octahedron("Pt", length, 1, latticeconstant=3.92).positions)
    per_atom, summary = analyse_lattice(atoms)
    assert summary["lattice_fit_atoms"] == expected
    assert np.isclose(summary["lattice_parameter_A"], 3.92, rtol=1e-9)
    assert per_atom["in_lattice_fit"].sum() == summary["n_fitted"]
    if expected == "full_coordination":
        assert summary["n_fitted"] == (~per_atom["surface"]).sum() == 19
    else:
        assert summary["n_fitted"] == len(atoms)


def test_lattice_fit_survives_a_distorted_seed_atom():
    """A spurious atom at the centre (a noise peak) must not lead the fit into a wrong lattice."""
    from nanorecon.lattice import fit_lattice

    pos = Octahedron("Pt", 9, 3, latticeconstant=3.92).positions
    centre = pos.mean(axis=0)
    nearest = pos[np.argmin(np.linalg.norm(pos - centre, axis=1))]
    spurious = nearest + np.array([0.9, 0.7, 0.4])  # between lattice sites, closest to the centroid
    positions = np.vstack([pos, spurious])
    single = fit_lattice(positions, n_seeds=1, seed_index=len(pos))
    fit = fit_lattice(positions)
    assert abs(fit.lattice_parameter_A / 3.92 - 1) < 1e-3
    assert fit.fitted.sum() == len(pos)  # every real atom on a site, the spurious one not
    assert single.fitted.sum() < fit.fitted.sum()  # that seed alone is worse
