"""Tracking accuracy and time on the demo-sized movie (4 Pt particles, 384², 300 frames, 400 fps).

Run: ``.venv/bin/python benchmarks/bench_tracking.py``. Prints the fraction of each particle's
in-view frames assigned to its track, the position RMS error and the drift error.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from nanorecon.brownian import (
    detect_particles,
    estimate_drift,
    flag_tracks,
    lattice_notch_filter,
    link_detections,
    normalise_dose,
    power_spectrum_sum,
    remove_background,
)
from nanorecon.simulate import MovieSpec, ParticleSpec, simulate_movie

DIAMETER_A = 25.0
BLOCK = 32


def main() -> None:
    spec = MovieSpec(
        particles=[
            ParticleSpec(shape="octahedron", diameter_nm=2.2),
            ParticleSpec(shape="decahedron", diameter_nm=2.5),
            ParticleSpec(shape="sphere", diameter_nm=2.7),
            ParticleSpec(shape="icosahedron", diameter_nm=2.9),
        ],
        n_frames=300,
        image_shape_px=(384, 384),
        frame_rate_hz=400.0,
        seed=1,
    )
    t0 = time.perf_counter()
    result = simulate_movie(spec)
    frames = np.stack(list(result.frames()))
    print(f"simulated {frames.shape} in {time.perf_counter() - t0:.1f} s")
    p = result.pixel_size_A
    t0 = time.perf_counter()
    power = sum(
        power_spectrum_sum(normalise_dose(frames[s : s + BLOCK])) for s in range(0, 300, BLOCK)
    )
    notch, n_refl = lattice_notch_filter(power, p, image_shape=frames.shape[1:])
    state, found = None, []
    for s in range(0, 300, BLOCK):
        lo, hi = max(0, s - 4), min(300, s + BLOCK + 4)
        block = normalise_dose(frames[lo:hi])
        state = estimate_drift(block[s - lo : s - lo + BLOCK], p, state=state, weights=1 - notch)
        det = detect_particles(
            remove_background(block, p, notch=notch), p, diameter_A=DIAMETER_A, first_frame=lo
        )
        found.append(det[(det["frame"] >= s) & (det["frame"] < s + BLOCK)])
    drift = state.drift_A()
    linked = link_detections(
        pd.concat(found), max_step_A=0.25 * DIAMETER_A, memory=10, drift_A=drift
    )
    tracks = flag_tracks(
        linked, diameter_A=DIAMETER_A, image_shape_px=frames.shape[1:], pixel_size_A=p
    )
    seconds = time.perf_counter() - t0
    truth = result.trajectory
    merged = tracks.merge(truth, on="frame", suffixes=("", "_true"))
    merged["d_px"] = (
        np.hypot(merged["x_A"] - merged["x_A_true"], merged["y_A"] - merged["y_A_true"]) / p
    )
    best = merged.loc[merged.groupby(["frame", "track"])["d_px"].idxmin()]
    print(
        f"tracking: {seconds:.1f} s ({300 / seconds:.0f} frames/s), {n_refl} graphene reflections"
    )
    print(f"drift error max {np.abs(drift - result.drift_A).max() / p:.2f} px")
    for particle in range(len(spec.particles)):
        mine = best[best["particle"] == particle]
        in_view = int(truth[(truth["particle"] == particle)]["in_view"].sum())
        main_track = mine["track"].mode().iloc[0] if len(mine) else -1
        right = mine[(mine["track"] == main_track) & (mine["d_px"] < 0.5 * DIAMETER_A / p)]
        ok = mine[mine["status"] == "ok"]
        rms = float(np.sqrt(np.mean(ok["d_px"] ** 2))) if len(ok) else float("nan")
        print(
            f"particle {particle}: {right['frame'].nunique()}/{in_view} in-view frames on track "
            f"{main_track} ({len(set(mine['track']))} tracks), position RMS {rms:.2f} px"
        )


if __name__ == "__main__":
    main()
