"""Point groups of particle models, for orientation errors modulo symmetry."""

import numpy as np
import pytest
from ase.cluster import Decahedron, Octahedron
from scipy.spatial.transform import Rotation

from nanorecon.validate import point_group


@pytest.mark.parametrize(
    ("atoms", "order"),
    [(Octahedron("Pt", 5, 1), 24), (Decahedron("Pt", 3, 2, 0), 10)],
)
def test_point_group_of_symmetric_clusters(atoms, order):
    turn = Rotation.from_euler("zyx", [17, -31, 48], degrees=True)
    positions = turn.apply(atoms.positions) + [3.0, -1.0, 2.0]
    group = point_group(positions)
    assert len(group) == order
    centred = positions - positions.mean(axis=0)
    for element in group:  # every element maps the atoms onto themselves
        moved = element.apply(centred)
        distance = np.linalg.norm(moved[:, None] - centred[None], axis=2).min(axis=1)
        assert distance.max() < 1e-3


def test_point_group_of_an_asymmetric_model_is_the_identity():
    positions = np.random.default_rng(0).normal(0, 5.0, (60, 3))
    group = point_group(positions)
    assert len(group) == 1 and group[0].magnitude() == 0
    with pytest.raises(ValueError, match="positions_A"):
        point_group(positions[:2])
