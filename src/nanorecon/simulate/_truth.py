"""Ground-truth tables shared by both modalities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nanorecon.geometry import quaternions_from_rotations

from ._particles import Particle
from ._specs import ParticleSpec


def atoms_table(particles: Sequence[Particle]) -> pd.DataFrame:
    """One row per atom: ``particle, x_A, y_A, z_A, element`` (particle frame, Å)."""
    frames = [
        pd.DataFrame(
            {
                "particle": np.full(p.n_atoms, i, dtype=np.int64),
                "x_A": p.positions_A[:, 0],
                "y_A": p.positions_A[:, 1],
                "z_A": p.positions_A[:, 2],
                "element": p.elements,
            }
        )
        for i, p in enumerate(particles)
    ]
    return pd.concat(frames, ignore_index=True)


def particles_table(particles: Sequence[Particle], specs: Sequence[ParticleSpec]) -> pd.DataFrame:
    """One row per particle: shape, size, chemistry, lattice parameter, strain, orientation."""
    rows = []
    for i, (p, spec) in enumerate(zip(particles, specs, strict=True)):
        symbols, counts = np.unique(p.elements, return_counts=True)
        q = quaternions_from_rotations(p.crystal_rotation)
        rows.append(
            {
                "particle": i,
                "shape": p.shape,
                "diameter_nm": p.diameter_nm,
                "requested_diameter_nm": spec.diameter_nm,
                "n_atoms": p.n_atoms,
                "elements": ":".join(symbols),
                "composition": ":".join(f"{c / p.n_atoms:.4f}" for c in counts),
                "lattice_parameter_A": p.lattice_parameter_A,
                "surface_strain": p.surface_strain,
                "strain_decay_length_A": spec.strain_decay_length_A,
                "static_displacement_A": spec.static_displacement_A,
                "qx": q[0],
                "qy": q[1],
                "qz": q[2],
                "qw": q[3],
            }
        )
    return pd.DataFrame(rows)
