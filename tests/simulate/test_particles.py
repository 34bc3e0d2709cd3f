"""Particles: size, lattice, composition, relaxation, twins, reproducibility."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from nanorecon.simulate import (
    SHAPES,
    ParticleSpec,
    fcc_equivalent_lattice_parameter_A,
    make_particle,
)


def _particle(seed=0, **kwargs):
    return make_particle(rng=np.random.default_rng(seed), **kwargs)


def _bond_axes(positions, nn_A, tol_deg=3.0):
    """Distinct nearest-neighbour bond axes (up to sign)."""
    pairs = cKDTree(positions).query_pairs(1.1 * nn_A, output_type="ndarray")
    d = positions[pairs[:, 1]] - positions[pairs[:, 0]]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    axes: list[np.ndarray] = []
    for v in d:
        if not any(abs(v @ a) > np.cos(np.deg2rad(tol_deg)) for a in axes):
            axes.append(v)
    return len(axes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("diameter_nm", [1.8, 2.6])
def test_diameter_within_a_lattice_spacing(shape, diameter_nm):
    p = _particle(shape=shape, diameter_nm=diameter_nm, elements=["Pt"])
    assert abs(p.diameter_nm - diameter_nm) * 10 < p.lattice_parameter_A
    # volume-equivalent diameter really describes the atoms: max radius is about half of it
    r_max = np.linalg.norm(p.positions_A, axis=1).max()
    assert 0.4 * p.diameter_nm * 10 < r_max < 0.75 * p.diameter_nm * 10
    np.testing.assert_allclose(p.positions_A.mean(axis=0), 0.0, atol=1e-9)


@pytest.mark.parametrize(("strain", "core_radius_A", "rtol"), [(0.0, 8.0, 1e-9), (0.02, 4.0, 3e-3)])
def test_core_nearest_neighbour_distance_is_a_over_sqrt2(strain, core_radius_A, rtol):
    p = _particle(shape="sphere", diameter_nm=2.5, static_displacement_A=0.0, surface_strain=strain)
    core = np.linalg.norm(p.positions_A, axis=1) < core_radius_A
    assert core.sum() >= 13
    dist, _ = cKDTree(p.positions_A).query(p.positions_A[core], k=13)
    expected = p.lattice_parameter_A / np.sqrt(2)
    np.testing.assert_allclose(dist[:, 1:], expected, rtol=rtol)  # 12 neighbours at a/√2
    assert p.lattice_parameter_A == pytest.approx(3.9242)  # room-temperature bulk Pt


def test_composition_and_vegard_lattice_parameter():
    p = _particle(shape="octahedron", diameter_nm=2.2, elements=["Fe", "Pt"], composition=[25, 75])
    n_fe = np.count_nonzero(p.elements == "Fe")
    assert abs(n_fe - 0.25 * p.n_atoms) <= 1
    assert set(np.unique(p.elements)) == {"Fe", "Pt"}
    a_fe = 2.8665 * 2 ** (1 / 3)  # bcc Fe with the same atomic volume as fcc
    assert fcc_equivalent_lattice_parameter_A("Fe") == pytest.approx(a_fe)
    assert p.lattice_parameter_A == pytest.approx(0.25 * a_fe + 0.75 * 3.9242)
    # random occupation: Fe spread through the particle, not in one corner
    fe = p.positions_A[p.elements == "Fe"]
    assert np.linalg.norm(fe.mean(axis=0)) < 2.0


def test_explicit_lattice_parameter_and_spec_strings():
    spec = ParticleSpec(
        shape="sphere",
        diameter_nm=1.5,
        elements="Fe:Pt",
        composition="50:50",
        lattice_parameter_A=3.85,
        static_displacement_A=0.0,
    )
    p = spec.build(np.random.default_rng(1))
    assert p.lattice_parameter_A == 3.85
    assert np.count_nonzero(p.elements == "Fe") in (p.n_atoms // 2, (p.n_atoms + 1) // 2)


@pytest.mark.parametrize("strain", [0.02, -0.02])
def test_surface_relaxation_moves_surface_shell_as_its_sign_says(strain):
    kwargs = dict(shape="octahedron", diameter_nm=2.4, static_displacement_A=0.0)
    ref = _particle(seed=3, surface_strain=0.0, **kwargs)
    relaxed = _particle(seed=3, surface_strain=strain, **kwargs)
    r0 = np.linalg.norm(ref.positions_A, axis=1)
    r1 = np.linalg.norm(relaxed.positions_A, axis=1)
    shell = r0 > r0.max() - 2.0
    core = r0 < 3.0
    shift = (r1 - r0)[shell].mean()
    # outer atoms lie within ~1 Å of the hull: u = s·a·exp(-depth/λ) with λ = 2.5 Å
    a = ref.lattice_parameter_A
    assert np.sign(shift) == np.sign(strain)
    assert 0.4 * abs(strain) * a < abs(shift) <= abs(strain) * a + 1e-9
    assert np.abs(r1 - r0)[core].max() < 0.15 * abs(strain) * a


def test_single_crystals_have_six_bond_axes_and_multiply_twinned_clusters_more():
    kw = dict(diameter_nm=1.8, static_displacement_A=0.0)
    counts = {
        s: _bond_axes(_particle(shape=s, **kw).positions_A, 3.92 / np.sqrt(2)) for s in SHAPES
    }
    assert counts["sphere"] == 6
    assert counts["octahedron"] == 6
    assert counts["decahedron"] > 6  # five twinned tetrahedra
    assert counts["icosahedron"] > counts["decahedron"]  # twenty twinned tetrahedra


def test_seed_reproducible_and_random_orientation():
    a = _particle(seed=5, shape="decahedron", diameter_nm=1.6)
    b = _particle(seed=5, shape="decahedron", diameter_nm=1.6)
    c = _particle(seed=6, shape="decahedron", diameter_nm=1.6)
    np.testing.assert_array_equal(a.positions_A, b.positions_A)
    assert a.crystal_rotation.approx_equal(b.crystal_rotation)
    assert not a.crystal_rotation.approx_equal(c.crystal_rotation)
    assert a.n_atoms == c.n_atoms
    # static displacements: σ = 0.05 Å per coordinate
    ideal = _particle(seed=5, shape="decahedron", diameter_nm=1.6, static_displacement_A=0.0)
    d = a.crystal_rotation.inv().apply(a.positions_A) - ideal.crystal_rotation.inv().apply(
        ideal.positions_A
    )
    assert np.std(d - d.mean(axis=0)) == pytest.approx(0.05, rel=0.2)


def test_invalid_input_raises():
    with pytest.raises(ValueError, match="shape"):
        _particle(shape="cube")
    with pytest.raises(ValueError, match="composition"):
        _particle(elements=["Fe", "Pt"], composition=[1.0])
