"""Owns writing output files safely: a folder checked writable before a long job, a file replaced all at once."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def names_a_folder(written: str) -> bool:
    """Whether a path as the user wrote it can only be a folder's (``dist/``, ``dist/.``, ``..``): ``Path``
    drops the slash, so a command meaning to write a file would write one named ``dist``."""
    return os.path.basename(written) in ("", ".", "..")


def is_special(path: Path) -> bool:
    """Whether ``path`` exists but is not a regular file (a folder, FIFO, device or socket): reading a FIFO waits
    for a writer forever, and a rename over any of them replaces it."""
    return path.exists() and not path.is_file()


def check_replaceable(path: Path) -> None:
    """Refuse a ``path`` that exists but is not a regular file (a folder, device, FIFO or socket).

    A rename over it would replace it: ``--out /dev/null`` run as root turned the device into a tarball.

    Raises:
        OSError: with strerror "not a regular file".
    """
    if is_special(path):
        raise OSError(errno.EINVAL, "not a regular file (it would be replaced, not written to)", str(path))


def _written_beside(path: Path, data: bytes, mode: int) -> str:
    """``data`` in a synced temp file beside ``path`` (its folder created if missing), given ``mode`` once written
    (its owner's alone until then); the temp file's name. On a failure it is removed."""
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def replace_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to a temp file beside ``path`` (its folder created if missing), sync it, then rename it
    over ``path`` with ``mode`` (the temp file is its owner's alone until then).

    On any failure (a full disk, a file size limit) the temp file is removed and ``path`` is as it was.

    Raises:
        OSError: the folder cannot be created or written, ``path`` is not a regular file, or the write failed.
    """
    replace_together([(path, data)], mode=mode)


def replace_together(files: Sequence[tuple[Path, bytes]], *, mode: int = 0o644) -> None:
    """``replace_atomically`` for files that must change together (a table and its ledger): every one is written
    and synced beside its target before any is renamed over it, so a write that fails (a full disk, a name too
    long) changes none of them.

    Raises:
        OSError: as ``replace_atomically``; then none has changed and no temp file is left.
    """
    temps: list[str] = []
    try:
        for path, data in files:
            temps.append(_written_beside(path, data, mode))
        for (path, _), tmp in zip(files, temps, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if missing and prove a file can be made in it (a probe, removed at once).

    For a check before work that ends by writing there: the failure comes first, not after the work.

    Raises:
        OSError: the folder cannot be created, or nothing can be written into it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe."):
        pass


def check_writable_file(path: Path) -> None:
    """Prove, before a job that ends with ``replace_atomically(path, ...)``, that it could write there: ``path`` is
    no folder, FIFO or device, its folder is created if missing, and a file named as the temp file will be is
    made in it (and removed at once), so a name too long for the temp file fails now.

    Raises:
        OSError: as ``replace_atomically`` would.
    """
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent):
        pass
