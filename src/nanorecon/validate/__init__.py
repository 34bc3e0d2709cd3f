"""Validation of traced atomic models against ground truth: rigid alignment allowing a mirror,
one-to-one matching, and recall / precision / position, species, lattice-parameter and strain
errors."""

from ._align import Alignment, align_models, match_atoms
from ._score import score_model
from ._symmetry import is_centrosymmetric, point_group

__all__ = [
    "Alignment",
    "align_models",
    "is_centrosymmetric",
    "match_atoms",
    "point_group",
    "score_model",
]
