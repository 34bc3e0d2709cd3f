"""Simulator timings at CI size and at scale (run: python benchmarks/bench_simulate.py).

Targets: CI-sized tomography (2 nm Pt, 31 tilts, 64 × 64) and movie (2 particles, 40 frames,
160 × 160) in about a second or two each; a 2.5 nm particle with 71 tilts of 128 × 128 in a few
seconds; 4 particles (2.2–2.9 nm) × 300 frames of 384 × 384 well under a minute on 2 cores.
"""

from __future__ import annotations

import time

from nanorecon.simulate import (
    MovieSpec,
    ParticleSpec,
    TomographySpec,
    simulate_movie,
    simulate_tilt_series,
)


def _tomography(diameter_nm: float, n_tilts: int, size_px: int) -> tuple[tuple[float, float], str]:
    spec = TomographySpec(
        particle=ParticleSpec(shape="octahedron", diameter_nm=diameter_nm),
        tilt_step_deg=140.0 / (n_tilts - 1),
        image_size_px=size_px,
    )
    start, cpu = time.perf_counter(), time.process_time()
    result = simulate_tilt_series(spec)
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, f"{len(result.atoms)} atoms, images {result.images.shape}"


def _movie(
    diameters_nm: list[float], n_frames: int, size_px: int
) -> tuple[tuple[float, float], str]:
    shapes = ["octahedron", "decahedron", "icosahedron", "sphere"]
    spec = MovieSpec(
        particles=[
            ParticleSpec(shape=shapes[i % 4], diameter_nm=d) for i, d in enumerate(diameters_nm)
        ],
        n_frames=n_frames,
        image_shape_px=(size_px, size_px),
    )
    start, cpu = time.perf_counter(), time.process_time()
    result = simulate_movie(spec)
    for _ in result.frames():
        pass
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, f"{len(result.atoms)} atoms, frames {result.shape}"


def main() -> None:
    simulate_tilt_series(TomographySpec(tilt_step_deg=70.0, image_size_px=32))  # warm imports
    cases = [
        ("tomography CI: 2 nm Pt, 31 tilts, 64×64", "~1-2 s", lambda: _tomography(2.0, 31, 64)),
        (
            "movie CI: 2 particles, 40 frames, 160×160",
            "~1-2 s",
            lambda: _movie([1.6, 1.6], 40, 160),
        ),
        ("tomography: 2.5 nm, 71 tilts, 128×128", "few s", lambda: _tomography(2.5, 71, 128)),
        (
            "movie: 4 particles 2.2-2.9 nm, 300 frames, 384×384",
            "< 60 s",
            lambda: _movie([2.2, 2.5, 2.7, 2.9], 300, 384),
        ),
    ]
    # CPU time (all threads) shows the cost when other jobs share the cores
    print(f"{'case':55s} {'target':>8s} {'wall [s]':>9s} {'cpu [s]':>8s}  details")
    for name, target, run in cases:
        (wall, cpu), details = run()
        print(f"{name:55s} {target:>8s} {wall:9.2f} {cpu:8.2f}  {details}")


if __name__ == "__main__":
    main()
