"""Atomic outputs: replace only on success, never leave temporaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_helpers import leftovers

from nanorecon.io import OutputPathError, _atomic, atomic_output


def test_success_replaces_existing_folder(tmp_path: Path):
    out = tmp_path / "res" / "raw.zarr"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("old")
    with atomic_output(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".raw.zarr.tmp-")
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert leftovers(out.parent) == ["raw.zarr"]


def test_folder_replaces_a_file(tmp_path: Path):
    out = tmp_path / "raw.zarr"
    out.write_text("a file")
    with atomic_output(out) as tmp:
        tmp.mkdir()
    assert out.is_dir()
    assert leftovers(tmp_path) == ["raw.zarr"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_keeps_existing_output_and_removes_temporary(tmp_path: Path, exc):
    out = tmp_path / "raw.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(type(exc)):
        with atomic_output(out) as tmp:
            tmp.mkdir()
            (tmp / "partial").write_text("x")
            raise exc
    assert (out / "keep.txt").read_text() == "keep"
    assert leftovers(tmp_path) == ["raw.zarr"]


def test_parent_is_a_file(tmp_path: Path):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    with pytest.raises(OutputPathError) as info:
        with atomic_output(blocker / "d1" / "raw.zarr"):
            pytest.fail("the block must not run")
    text = str(info.value)
    assert f"{blocker} is a file, not a folder" in text
    assert "remove or rename that file, or choose an output path in a folder" in text
    assert blocker.read_text() == "not a folder"


def test_unwritable_folder(tmp_path: Path, monkeypatch):
    # root may write anywhere and no read-only mount is at hand: access() is what the check
    # consults (it reports EROFS for read-only mounts, even for root), so emulate its answer
    monkeypatch.setattr(_atomic.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputPathError) as info:
        with atomic_output(tmp_path / "sub" / "raw.zarr"):
            pytest.fail("the block must not run")
    text = str(info.value)
    assert f"folder {tmp_path} is not writable" in text
    assert "choose another output folder or fix its permissions" in text
    assert leftovers(tmp_path) == []
