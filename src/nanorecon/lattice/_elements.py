"""Bulk reference values of the elements: lattice parameters, bond lengths.

Room-temperature measured values for common nanoparticle metals, ase's reference states otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ase.data import atomic_numbers, reference_states

# Atoms per conventional cell and nearest-neighbour distance in units of the lattice parameter.
_ATOMS_PER_CELL = {"fcc": 4, "bcc": 2, "sc": 1}
_NN_PER_A = {"fcc": 1.0 / np.sqrt(2.0), "bcc": np.sqrt(3.0) / 2.0, "sc": 1.0}


def atomic_number(element: str) -> int:
    """Atomic number of an element symbol (``"Pt"`` → 78)."""
    try:
        return int(atomic_numbers[element])
    except KeyError:
        raise ValueError(f"unknown element symbol {element!r}") from None


#: Room-temperature (≈ 293 K) X-ray lattice parameters [Å] of metals common in nanoparticle work, where
#: ase's reference states are rounded to 0.01 Å — too coarse for deviations from bulk of 0.1 %.
#: Values as tabulated by W. P. Davey, Phys. Rev. 25, 753 (1925) and the CRC Handbook of Chemistry and
#: Physics ("Lattice constants of the elements").
ROOM_TEMPERATURE_LATTICE_A = {
    "Pt": ("fcc", 3.9242),
    "Au": ("fcc", 4.0782),
    "Ag": ("fcc", 4.0853),
    "Pd": ("fcc", 3.8907),
    "Cu": ("fcc", 3.6149),
    "Ni": ("fcc", 3.5240),
    "Rh": ("fcc", 3.8034),
    "Ir": ("fcc", 3.8390),
    "Al": ("fcc", 4.0495),
    "Fe": ("bcc", 2.8665),
}


def _reference(element: str) -> dict:
    atomic_number(element)  # validates the symbol
    if element in ROOM_TEMPERATURE_LATTICE_A:
        symmetry, a = ROOM_TEMPERATURE_LATTICE_A[element]
        return {"symmetry": symmetry, "a": a}
    state = reference_states[atomic_number(element)]
    if state is None or "a" not in state:
        raise ValueError(f"ase has no bulk lattice parameter for {element!r}")
    return state


def bulk_nearest_neighbour_distance_A(element: str) -> float:
    """Nearest-neighbour distance of the element's bulk reference structure [Å].

    Examples
    --------
    >>> round(bulk_nearest_neighbour_distance_A("Pt"), 3)
    2.775
    """
    state = _reference(element)
    symmetry = state["symmetry"]
    a = float(state["a"])
    if symmetry in _NN_PER_A:
        return a * float(_NN_PER_A[symmetry])
    if symmetry == "hcp":
        return a
    if symmetry == "diamond":
        return a * np.sqrt(3.0) / 4.0
    raise ValueError(f"no nearest-neighbour rule for the {symmetry!r} structure of {element!r}")


def bulk_lattice_parameter_A(element: str, *, structure: str = "fcc") -> float:
    """Cubic lattice parameter of an element in the requested structure [Å].

    The element's own bulk value (ase reference state) when its structure matches; otherwise the
    value of equal atomic volume (e.g. Fe, bcc 2.87 Å, in an fcc lattice: 2.87 · 2^(1/3) = 3.62 Å),
    which is what a Vegard average over an fcc alloy needs.

    Examples
    --------
    >>> bulk_lattice_parameter_A("Pt")
    3.9242
    """
    if structure not in _ATOMS_PER_CELL:
        raise ValueError(f"structure must be one of {sorted(_ATOMS_PER_CELL)}, not {structure!r}")
    state = _reference(element)
    symmetry = state["symmetry"]
    a = float(state["a"])
    if symmetry == structure:
        return a
    if symmetry in _ATOMS_PER_CELL:
        volume = a**3 / _ATOMS_PER_CELL[symmetry]
    elif symmetry == "hcp":
        volume = np.sqrt(3.0) / 4.0 * a**2 * float(state.get("c/a", np.sqrt(8.0 / 3.0))) * a
    else:
        raise ValueError(f"no atomic volume rule for the {symmetry!r} structure of {element!r}")
    return float((volume * _ATOMS_PER_CELL[structure]) ** (1.0 / 3.0))


def vegard_lattice_parameter_A(
    elements: Iterable[str], *, fractions: Sequence[float] | None = None, structure: str = "fcc"
) -> float:
    """Composition-weighted (Vegard) average of the bulk lattice parameters [Å].

    Parameters
    ----------
    elements : iterable of str
        Element symbols; with ``fractions=None`` one entry per atom (the composition is counted).
    fractions : sequence of float, optional
        Atomic fractions matching ``elements`` (distinct symbols then).
    structure : {"fcc", "bcc", "sc"}, optional
        Lattice the alloy takes.
    """
    elements = list(elements)
    if not elements:
        raise ValueError("elements must not be empty")
    if fractions is None:
        symbols, counts = np.unique(np.asarray(elements, dtype=str), return_counts=True)
        weights = counts / counts.sum()
    else:
        symbols = np.asarray(elements, dtype=str)
        weights = np.asarray(fractions, dtype=float)
        if weights.shape != symbols.shape or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("fractions must be non-negative, one per element, not all zero")
        weights = weights / weights.sum()
    values = [bulk_lattice_parameter_A(str(s), structure=structure) for s in symbols]
    return float(np.dot(weights, values))


def nearest_neighbour_per_lattice_parameter(structure: str) -> float:
    """Nearest-neighbour distance of a cubic structure in units of its lattice parameter."""
    if structure not in _NN_PER_A:
        raise ValueError(f"structure must be one of {sorted(_NN_PER_A)}, not {structure!r}")
    return float(_NN_PER_A[structure])
