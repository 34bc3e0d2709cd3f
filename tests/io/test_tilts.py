"""IMOD tilt-angle files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nanorecon.io import read_tilt_angles


def test_reads_angles_skipping_blank_lines(tmp_path: Path):
    path = tmp_path / "a.tlt"
    path.write_text("  -60.0\n\n-0.5\n  \n  30\n61.25\n")
    angles = read_tilt_angles(path)
    np.testing.assert_array_equal(angles, [-60.0, -0.5, 30.0, 61.25])
    assert angles.dtype == np.float64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10\n20 30\n", r"line 2: '20 30' is not a number; the file must hold one angle"),
        ("10\nabc\n", r"line 2: 'abc' is not a number"),
        ("10\nnan\n", r"line 2: 'nan' is not a finite angle"),
        ("-60\n0\n120\n", r"line 3: 120 is outside \[-90, 90\] deg; .*are these radians"),
        ("\n\n", r"holds no angles"),
    ],
)
def test_bad_tilt_files(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.rawtlt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_tilt_angles(path)
    assert str(path) in str(info.value)


def test_missing_tilt_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="x.tlt does not exist"):
        read_tilt_angles(tmp_path / "x.tlt")
