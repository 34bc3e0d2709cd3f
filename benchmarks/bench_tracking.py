"""Tracking accuracy and time on the demo-sized movie (4 Pt particles, 384², 300 frames, 400 fps).

Run: ``.venv/bin/python benchmarks/bench_tracking.py``. Prints how many of each particle's in-view
frames (its whole disc inside the field) its main track covers, the position RMS error and the
drift error.
"""

from __future__ import annotations

import time

import numpy as np

from nanorecon.brownian import track_movie
from nanorecon.simulate import MovieSpec, ParticleSpec, simulate_movie

DIAMETER_A = 25.0


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
    tracking = track_movie(
        lambda start, stop: frames[start:stop],
        len(frames),
        frames.shape[1:],
        p,
        diameter_A=DIAMETER_A,
    )
    tracks, drift, n_refl = tracking.tracks, tracking.drift_A, tracking.n_reflections
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
        visible = truth[(truth["particle"] == particle) & truth["in_view"]]["frame"]
        in_view = len(visible)
        main_track = mine["track"].mode().iloc[0] if len(mine) else -1
        # in-view frames of the particle that its main track covers (detected or gap-filled)
        right = mine[
            (mine["track"] == main_track)
            & (mine["d_px"] < 0.5 * DIAMETER_A / p)
            & mine["frame"].isin(visible)
        ]
        ok = mine[mine["status"] == "ok"]
        rms = float(np.sqrt(np.mean(ok["d_px"] ** 2))) if len(ok) else float("nan")
        print(
            f"particle {particle}: {right['frame'].nunique()}/{in_view} in-view frames on track "
            f"{main_track} ({len(set(mine['track']))} tracks), position RMS {rms:.2f} px"
        )


if __name__ == "__main__":
    main()
