"""The whole tracking front end over a movie read block by block (arrays in, tables out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._detect import detect_particles
from ._drift import estimate_drift
from ._prepare import lattice_notch_filter, normalise_dose, power_spectrum_sum, remove_background
from ._track import flag_tracks, link_detections

__all__ = ["MovieTracking", "track_movie"]


@dataclass(frozen=True)
class MovieTracking:
    """Result of :func:`track_movie`."""

    tracks: pd.DataFrame
    detections: pd.DataFrame
    drift_A: np.ndarray
    n_reflections: int


def track_movie(
    read_frames: Callable[[int, int], np.ndarray],
    n_frames: int,
    image_shape_px: tuple[int, int],
    pixel_size_A: float,
    *,
    diameter_A: float,
    threshold: float = 3.5,
    memory: int = 10,
    max_gap_frames: int = 50,
    min_frames: int = 5,
    block_frames: int = 32,
    halo_frames: int = 4,
    progress: Callable[[int], None] | None = None,
) -> MovieTracking:
    """Detect and track every particle of a liquid-cell movie with bounded memory.

    Two passes over the movie in blocks: (1) the summed power spectrum of the dose-normalised
    frames locates the support's lattice reflections (:func:`lattice_notch_filter`); (2) per block,
    the stage drift is measured on those reflections (:func:`estimate_drift`; on the band-passed
    frames when fewer than two reflections are found), the background is removed and particles
    are detected (:func:`detect_particles`), with `halo_frames` extra frames on each side for the
    detector's temporal smoothing. Detections are then linked (:func:`link_detections`, step
    gate a quarter of the diameter per frame, gaps up to `max_gap_frames` closed) and the tracks
    flagged (:func:`flag_tracks`).

    Parameters
    ----------
    read_frames : callable
        ``read_frames(start, stop)`` returns frames ``start:stop`` as an array (n, Y, X).
    n_frames : int
        Frames in the movie.
    image_shape_px : (int, int)
        (Y, X) [px].
    pixel_size_A : float
        [Å].
    diameter_A : float
        Expected particle diameter [Å].
    threshold, memory, max_gap_frames, min_frames : optional
        Detection threshold [robust σ], frames a track may skip while it is linked frame by frame,
        longest gap the gap-closing pass bridges [frames], fewest good frames of a track.
    block_frames, halo_frames : int, optional
        Frames per block (the caller may round it to its storage chunks) and the halo [frames].
    progress : callable, optional
        Called with the number of frames processed after each block (twice per frame in all).

    Returns
    -------
    MovieTracking
        Tracks, the detections they were linked from, per-frame drift (n, 2) (x, y) [Å], and the
        number of notched lattice reflections.
    """
    if n_frames < 1:
        raise ValueError("the movie has no frames")
    step = max(1, int(block_frames))
    ranges = [(s, min(n_frames, s + step)) for s in range(0, n_frames, step)]
    report = progress or (lambda _frames: None)

    power = None
    for start, stop in ranges:
        part = power_spectrum_sum(normalise_dose(np.asarray(read_frames(start, stop))))
        power = part if power is None else power + part
        report(stop - start)
    notch, n_reflections = lattice_notch_filter(power, pixel_size_A, image_shape=image_shape_px)
    weights = 1.0 - notch if n_reflections >= 2 else None

    state, found = None, []
    for start, stop in ranges:
        lo, hi = max(0, start - halo_frames), min(n_frames, stop + halo_frames)
        block = normalise_dose(np.asarray(read_frames(lo, hi)))
        state = estimate_drift(
            block[start - lo : stop - lo], pixel_size_A, state=state, weights=weights
        )
        detections = detect_particles(
            remove_background(block, pixel_size_A, notch=notch),
            pixel_size_A,
            diameter_A=diameter_A,
            threshold=threshold,
            first_frame=lo,
        )
        found.append(detections[(detections["frame"] >= start) & (detections["frame"] < stop)])
        report(stop - start)
    drift_A = state.drift_A()
    detections = pd.concat(found, ignore_index=True)
    if detections.empty:
        return MovieTracking(detections.iloc[:0], detections, drift_A, n_reflections)
    linked = link_detections(
        detections,
        max_step_A=0.25 * diameter_A,
        memory=memory,
        drift_A=drift_A,
        max_gap_frames=max_gap_frames,
    )
    tracks = flag_tracks(
        linked,
        diameter_A=diameter_A,
        image_shape_px=image_shape_px,
        pixel_size_A=pixel_size_A,
        min_frames=min_frames,
    )
    return MovieTracking(tracks, detections, drift_A, n_reflections)
