"""Write outputs atomically: build under a temporary sibling name, rename on success."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutputPathError", "atomic_output", "check_output_writable"]


class OutputPathError(OSError):
    """An output path that cannot be written; the message names the folder and the fix."""


def check_output_writable(path: str | Path) -> Path:
    """Check that ``path`` can be created, without creating anything.

    The nearest existing ancestor must be a writable folder (missing folders below it are
    created later).

    Parameters
    ----------
    path : str or Path
        The output file or folder.

    Returns
    -------
    Path
        ``path`` made absolute.

    Raises
    ------
    OutputPathError
        If an ancestor is a file, or the folder is not writable (permissions, read-only mount).
    """
    path = Path(path).expanduser().absolute()
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"output path {path} must name a file or folder to create")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(
            f"cannot write {path}: {ancestor} is a file, not a folder; remove or rename that "
            "file, or choose an output path in a folder"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        # access() also reports read-only mounts (EROFS), for root as well
        raise OutputPathError(
            f"cannot write {path}: folder {ancestor} is not writable (permissions or a "
            "read-only file system); choose another output folder or fix its permissions"
        )
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` when the block succeeds.

    The temporary is ``.{name}.tmp-<random>`` in the same folder (so the rename is atomic on one
    file system). On success an existing file or folder at ``path`` is replaced; on any
    exception (including KeyboardInterrupt) the temporary is removed and an existing output is
    left untouched. The block creates the temporary itself (a file or a folder).

    Parameters
    ----------
    path : str or Path
        Final output path.

    Yields
    ------
    Path
        The temporary path to write to.

    Raises
    ------
    OutputPathError
        If the output folder cannot be written (checked before the block runs).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "result.txt"
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    final = check_output_writable(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(
            f"cannot create output folder {final.parent} ({err.strerror}); choose another "
            "output folder"
        ) from None
    token = secrets.token_hex(4)
    tmp = final.parent / f".{final.name}.tmp-{token}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary output {tmp}")
        old = final.parent / f".{final.name}.old-{token}"
        replaced = final.exists() or final.is_symlink()
        if replaced:
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            if replaced:
                os.replace(old, final)
            raise
        if replaced:
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise
