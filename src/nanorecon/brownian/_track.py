"""Linking detections into particle tracks; cutting and flagging overlaps and field exits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

__all__ = [
    "LEFT_FIELD",
    "NOT_DETECTED",
    "OVERLAP",
    "SHORT_TRACK",
    "TRACK_COLUMNS",
    "flag_tracks",
    "link_detections",
    "track_summary",
]

#: columns of the track table ([Å] from the centre of pixel (0, 0); drift of the frame [Å])
TRACK_COLUMNS = [
    "frame",
    "track",
    "x_A",
    "y_A",
    "score",
    "detected",
    "drift_x_A",
    "drift_y_A",
    "status",
    "reason",
]

#: reasons recorded per frame of a track
OVERLAP = "overlap"
LEFT_FIELD = "left field of view"
NOT_DETECTED = "not detected (gap filled)"
SHORT_TRACK = "short track"


def link_detections(
    detections: pd.DataFrame,
    *,
    max_step_A: float,
    memory: int = 3,
    drift_A: np.ndarray | None = None,
    max_gap_frames: int = 0,
) -> pd.DataFrame:
    """Link per-frame detections into tracks (frame-to-frame Hungarian assignment).

    Each active track predicts its next position as its last position plus the stage drift
    between the two frames; detections are assigned to tracks by minimum total distance
    (:func:`scipy.optimize.linear_sum_assignment`), pairs further apart than `max_step_A` times
    √(frames since the last detection) (diffusion grows as √t) are not linked. A track missing
    for more than `memory` frames ends; unassigned detections start new tracks. Then longer gaps
    are closed as in u-track: the ends of tracks are assigned, again by minimum total distance
    (drift corrected), to the starts of tracks that begin at most `max_gap_frames` frames later
    within the same √t gate, and the pairs are joined (a particle whose fringes fade for a while,
    off every zone axis, stays one track). Frames a track skipped are filled by linear
    interpolation and marked ``detected = False``.

    Parameters
    ----------
    detections : DataFrame
        ``frame, x_A, y_A, score`` (:func:`detect_particles`).
    max_step_A : float
        Largest displacement between consecutive frames after drift correction [Å].
    memory : int, optional
        Frames a track may go undetected and still continue (gap closing).
    drift_A : ndarray of shape (n_frames, 2), optional
        Stage drift (x, y) per frame [Å] (:func:`estimate_drift`).
    max_gap_frames : int, optional
        Longest run of undetected frames a track may bridge in the gap-closing pass (0: no
        gap closing beyond `memory`).

    Returns
    -------
    DataFrame
        ``frame, track, x_A, y_A, score, detected, drift_x_A, drift_y_A`` sorted by track and
        frame; tracks numbered from 0 in order of their first frame.
    """
    if max_step_A <= 0 or memory < 0 or max_gap_frames < 0:
        raise ValueError("max_step_A must be positive, memory and max_gap_frames non-negative")
    frames = detections["frame"].to_numpy(dtype=np.int64)
    n_frames = int(frames.max()) + 1 if frames.size else 0
    if drift_A is None:
        drift = np.zeros((n_frames, 2))
    else:
        drift = np.asarray(drift_A, dtype=float)
        if drift.shape[0] < n_frames:
            raise ValueError(f"drift_A has {drift.shape[0]} frames, detections reach {n_frames}")
    tracks: list[list[tuple[int, float, float, float]]] = []
    active: list[int] = []
    by_frame = {int(f): g for f, g in detections.groupby("frame", sort=True)}
    for f in sorted(by_frame):
        group = by_frame[f]
        pos = group[["x_A", "y_A"]].to_numpy(dtype=float)
        scores = group["score"].to_numpy(dtype=float)
        active = [t for t in active if f - tracks[t][-1][0] <= memory + 1]
        assigned = np.full(len(pos), -1)
        if active and len(pos):
            last = np.array([tracks[t][-1][1:3] for t in active])
            gaps = np.array([f - tracks[t][-1][0] for t in active], dtype=float)
            predicted = last + drift[f] - drift[[tracks[t][-1][0] for t in active]]
            cost = np.hypot(*(predicted[:, None, :] - pos[None, :, :]).transpose(2, 0, 1))
            limit = max_step_A * np.sqrt(gaps)[:, None]
            big = 1e6
            rows, cols = linear_sum_assignment(np.where(cost <= limit, cost, big))
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] <= limit[r, 0]:
                    assigned[c] = active[r]
        for j in range(len(pos)):
            if assigned[j] < 0:
                tracks.append([])
                active.append(len(tracks) - 1)
                assigned[j] = len(tracks) - 1
            tracks[assigned[j]].append((f, pos[j, 0], pos[j, 1], scores[j]))
    if max_gap_frames > memory:
        tracks = _close_gaps(
            tracks, drift, max_step_A=max_step_A, memory=memory, max_gap_frames=max_gap_frames
        )
    rows = []
    for t, points in enumerate(tracks):
        arr = np.array(points, dtype=float)
        f_all = np.arange(int(arr[0, 0]), int(arr[-1, 0]) + 1)
        detected = np.isin(f_all, arr[:, 0].astype(np.int64))
        # interpolate gaps in the drift-corrected frame, then put the drift back
        corr = arr[:, 1:3] - drift[arr[:, 0].astype(np.int64)]
        xs = np.interp(f_all, arr[:, 0], corr[:, 0]) + drift[f_all, 0]
        ys = np.interp(f_all, arr[:, 0], corr[:, 1]) + drift[f_all, 1]
        score = np.interp(f_all, arr[:, 0], arr[:, 3])
        score[~detected] = np.nan
        rows.append(
            pd.DataFrame(
                {
                    "frame": f_all,
                    "track": t,
                    "x_A": xs,
                    "y_A": ys,
                    "score": score,
                    "detected": detected,
                    "drift_x_A": drift[f_all, 0],
                    "drift_y_A": drift[f_all, 1],
                }
            )
        )
    columns = TRACK_COLUMNS[:8]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    return pd.concat(rows, ignore_index=True)[columns]


def _close_gaps(
    tracks: list[list[tuple[int, float, float, float]]],
    drift: np.ndarray,
    *,
    max_step_A: float,
    memory: int,
    max_gap_frames: int,
) -> list[list[tuple[int, float, float, float]]]:
    """Join track ends to later track starts (one assignment over all of them, u-track style).

    Only gaps longer than `memory` are bridged: shorter ones were open to the frame-by-frame
    linking, which chose not to join them.
    """
    n = len(tracks)
    if n < 2:
        return tracks
    first = np.array([t[0][0] for t in tracks], dtype=np.int64)
    last = np.array([t[-1][0] for t in tracks], dtype=np.int64)
    # drift-corrected positions of every track's last and first detection
    end = np.array([t[-1][1:3] for t in tracks]) - drift[last]
    start = np.array([t[0][1:3] for t in tracks]) - drift[first]
    gap = first[None, :] - last[:, None]  # (ends, starts), frames from end to start
    distance = np.hypot(*(end[:, None, :] - start[None, :, :]).transpose(2, 0, 1))
    allowed = (gap > memory + 1) & (gap <= max_gap_frames + 1)
    allowed &= distance <= max_step_A * np.sqrt(np.maximum(gap, 1))
    if not allowed.any():
        return tracks
    rows, cols = linear_sum_assignment(np.where(allowed, distance, 1e9))
    successor = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if allowed[r, c]}
    joined, absorbed = [], set(successor.values())
    for t in range(n):  # tracks are in order of their first frame; chains start at heads
        if t in absorbed:
            continue
        chain = list(tracks[t])
        while t in successor:
            t = successor[t]
            chain.extend(tracks[t])
        joined.append(chain)
    return joined


def flag_tracks(
    tracks: pd.DataFrame,
    *,
    diameter_A: float,
    image_shape_px: Sequence[int],
    pixel_size_A: float,
    min_frames: int = 5,
) -> pd.DataFrame:
    """Mark frames that cannot give a clean particle image, and cut tracks at them.

    Per frame (``status`` is ``"ok"`` or ``"rejected"``, ``reason`` says why):

    * ``"overlap"`` — another track's centre is closer than `diameter_A` (the two particles
      touch or overlap, and their identities may swap);
    * ``"left field of view"`` — the particle's disc (diameter `diameter_A`) is not wholly
      inside the frame; the track is ended at the first such frame after which it never comes
      back in view;
    * ``"not detected (gap filled)"`` — an interpolated position;
    * ``"short track"`` — fewer than `min_frames` good frames in the track.

    A track is cut into separate tracks at every overlap episode, so that a possible swap of
    identities never mixes two particles in one track.

    Parameters
    ----------
    tracks : DataFrame
        Output of :func:`link_detections`.
    diameter_A : float
        Particle diameter [Å].
    image_shape_px : (int, int)
        (Y, X) of the frames [px].
    pixel_size_A : float
        [Å].
    min_frames : int, optional
        Fewest good frames of a kept track.

    Returns
    -------
    DataFrame
        :data:`TRACK_COLUMNS`, tracks renumbered from 0 by first frame.
    """
    if diameter_A <= 0 or pixel_size_A <= 0:
        raise ValueError("diameter_A and pixel_size_A must be positive")
    out = tracks.copy().reset_index(drop=True)
    reason = np.full(len(out), "", dtype=object)
    ny, nx = (int(v) for v in image_shape_px)
    r = 0.5 * diameter_A
    x, y = out["x_A"].to_numpy(), out["y_A"].to_numpy()
    p = pixel_size_A
    outside = (
        (x - r < -p / 2) | (x + r > (nx - 0.5) * p) | (y - r < -p / 2) | (y + r > (ny - 0.5) * p)
    )
    reason[~out["detected"].to_numpy(dtype=bool)] = NOT_DETECTED
    reason[outside] = LEFT_FIELD
    overlap = np.zeros(len(out), dtype=bool)
    for _, group in out.groupby("frame"):
        if len(group) < 2:
            continue
        xy = group[["x_A", "y_A"]].to_numpy()
        d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        overlap[group.index[(d < diameter_A).any(axis=1)]] = True
    reason[overlap] = OVERLAP
    out["reason"] = reason
    # cut: a new segment starts after each overlap episode; frames after the last in-view
    # frame of a track that left the field are dropped except the first (the exit record)
    pieces = []
    for _, group in out.groupby("track", sort=False):
        group = group.sort_values("frame")
        flags = group["reason"].to_numpy()
        out_of_view = flags == LEFT_FIELD
        if out_of_view[-1]:
            inside = np.flatnonzero(~out_of_view)
            first_exit = inside[-1] + 1 if inside.size else 0
            group = group.iloc[: first_exit + 1]
            flags = flags[: first_exit + 1]
        was_overlap = flags == OVERLAP
        segment = np.cumsum(np.r_[False, was_overlap[:-1] & ~was_overlap[1:]])
        for _, piece in group.groupby(segment):
            pieces.append(piece)
    pieces.sort(key=lambda g: (int(g["frame"].iloc[0]), float(g["x_A"].iloc[0])))
    for i, piece in enumerate(pieces):
        piece["track"] = i
        good = (piece["reason"] == "").sum()
        if good < min_frames:
            piece.loc[piece["reason"] == "", "reason"] = SHORT_TRACK
    if not pieces:
        empty = out.assign(status=pd.Series(dtype=object))
        return empty[TRACK_COLUMNS]
    result = pd.concat(pieces, ignore_index=True)
    result["status"] = np.where(result["reason"] == "", "ok", "rejected")
    return result[TRACK_COLUMNS].sort_values(["track", "frame"], ignore_index=True)


def track_summary(tracks: pd.DataFrame) -> pd.DataFrame:
    """One row per track: frames, good frames, mean score and how the track ended.

    Returns
    -------
    DataFrame
        ``track, first_frame, last_frame, n_frames, n_ok, mean_score, end_reason, status``;
        `status` is ``"ok"`` for a track with good frames, else ``"rejected"`` with the most
        common reason in `end_reason`.
    """
    rows = []
    for track, group in tracks.groupby("track"):
        group = group.sort_values("frame")
        n_ok = int((group["status"] == "ok").sum())
        last = str(group["reason"].iloc[-1])
        reasons = group.loc[group["reason"] != "", "reason"]
        if n_ok == 0 and not reasons.empty:
            last = str(reasons.mode().iloc[0])
        rows.append(
            {
                "track": int(track),
                "first_frame": int(group["frame"].iloc[0]),
                "last_frame": int(group["frame"].iloc[-1]),
                "n_frames": len(group),
                "n_ok": n_ok,
                "mean_score": float(group["score"].mean()),
                "end_reason": last or "end of detections",
                "status": "ok" if n_ok > 0 else "rejected",
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "track",
            "first_frame",
            "last_frame",
            "n_frames",
            "n_ok",
            "mean_score",
            "end_reason",
            "status",
        ],
    )
