"""The per-particle summary row flags lattices no real particle has."""

import numpy as np
import pandas as pd

from nanorecon.summary import particle_row

ATOMS = pd.DataFrame({"element": ["Pt"] * 200})


def _lattice(a_A: float, residual_A: float) -> dict:
    return {
        "structure": "fcc",
        "lattice_parameter_A": a_A,
        "bulk_lattice_parameter_A": 3.9242,
        "deviation_from_bulk_percent": 100 * (a_A / 3.9242 - 1),
        "rms_residual_A": residual_A,
    }


def test_plausible_particle_is_ok():
    row = particle_row("p0", atoms=ATOMS, lattice=_lattice(3.99, 0.12))
    assert row["status"] == "ok"
    assert np.isclose(row["deviation_from_bulk_percent"], 1.677, atol=1e-3)


def test_implausible_lattice_is_suspect():
    # a map built from wrong orientations: few atoms, no lattice to speak of
    row = particle_row("p2", atoms=ATOMS, lattice=_lattice(6.96, 1.03))
    assert row["status"].startswith("suspect: ")
    assert "+77.4 % from bulk" in row["status"] and "103 pm" in row["status"]
    assert particle_row("p3", atoms=ATOMS, lattice=_lattice(3.93, 0.6))["status"] == (
        "suspect: atoms 60 pm RMS from their lattice sites"
    )
    # the half maps disagree at the atoms: most candidates fail the reproducibility test
    # (demo p003: 575 of 745 rejected; p001 84 of 401, the tomography particle 10 of 680)
    assert particle_row("p5", atoms=ATOMS, lattice=_lattice(3.96, 0.25), n_rejected=575)[
        "status"
    ] == ("suspect: 575 of 775 atom candidates rejected (half maps disagree)")
    assert (
        particle_row("p6", atoms=ATOMS, lattice=_lattice(3.96, 0.25), n_rejected=84)["status"]
        == "ok"
    )
    # what is missing is reported first
    assert particle_row("p4", lattice=_lattice(6.96, 1.03))["status"] == "missing atoms"
