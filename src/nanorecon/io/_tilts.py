"""Read IMOD-style tilt-angle files (``.tlt`` / ``.rawtlt``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

__all__ = ["read_tilt_angles"]

log = logging.getLogger(__name__)


def read_tilt_angles(path: str | Path) -> np.ndarray:
    """Read tilt angles, one number [deg] per line, blank lines ignored.

    Parameters
    ----------
    path : str or Path
        IMOD ``.tlt`` or ``.rawtlt`` file, angles in the order of the images.

    Returns
    -------
    angles_deg : ndarray of shape (N,)
        float64 tilt angles [deg].

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an unparsable line, a NaN/Inf, an angle outside [-90, 90] deg, or an empty file;
        the message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tilt-angle file {path} does not exist or is not a file")
    angles: list[float] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise ValueError(
                    f"tilt-angle file {path}, line {number}: {text[:40]!r} is not a number; "
                    "the file must hold one angle [deg] per line"
                ) from None
            if not math.isfinite(value):
                raise ValueError(
                    f"tilt-angle file {path}, line {number}: {text!r} is not a finite angle"
                )
            if not -90.0 <= value <= 90.0:
                raise ValueError(
                    f"tilt-angle file {path}, line {number}: {value:g} is outside [-90, 90] deg; "
                    "angles must be in degrees (are these radians or milliradians? convert them)"
                )
            angles.append(value)
    if not angles:
        raise ValueError(f"tilt-angle file {path} holds no angles; write one angle per line")
    out = np.asarray(angles, dtype=np.float64)
    span = float(np.ptp(out))
    if out.size >= 3 and 0 < float(np.abs(out).max()) <= math.pi / 2 and span < math.pi:
        # a whole series within ±1.6 deg is implausible; ±1.6 rad is a typical range
        log.warning("tilt angles in %s span only %.3g deg; are these radians?", path, span)
    return out
