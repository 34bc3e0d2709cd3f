"""Benchmark: trace a 2.5 nm Pt particle map (0.35 Å voxels) and fit its lattice.

Prints the time and accuracy of each step.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "atoms"))

from synthetic_atoms import pt_particle, render_map

from nanorecon.atoms import trace_atoms
from nanorecon.lattice import analyse_lattice
from nanorecon.validate import score_model


def main() -> None:
    truth = pt_particle(length=10, cutoff=3, a_A=3.99, relaxation_A=-0.05, jitter_A=0.03, seed=0)
    volume = render_map(truth, voxel_size_A=0.35, resolution_A=0.7, noise=0.05, seed=1)
    t0 = time.perf_counter()
    traced = trace_atoms(volume, 0.35, elements=["Pt"])
    t1 = time.perf_counter()
    _, summary = analyse_lattice(traced)
    t2 = time.perf_counter()
    score = score_model(traced, truth)
    print(f"atoms {len(truth)}, map {volume.shape}")
    print(f"trace_atoms     {t1 - t0:.2f} s")
    print(f"analyse_lattice {t2 - t1:.2f} s")
    print(f"recall {score['recall']:.4f}  precision {score['precision']:.4f}")
    print(f"RMS error {score['rms_error_pm']:.2f} pm")
    a = summary["lattice_parameter_A"]
    print(f"lattice parameter {a:.4f} Å (true 3.99), error {100 * (a / 3.99 - 1):+.3f} %")


if __name__ == "__main__":
    main()
