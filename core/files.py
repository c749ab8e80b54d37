"""Owns writing output files safely: a folder checked writable before a long job, a file replaced all at once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` (its folder created if missing), sync it, then rename it
    over ``path``.

    On any failure (a full disk, a file size limit) the temp file is removed and ``path`` is as it was.

    Raises:
        OSError: the folder cannot be created or written, or the write failed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if missing and prove a file can be made in it (a probe, removed at once).

    For a check before work that ends by writing there: the failure comes first, not after the work.

    Raises:
        OSError: the folder cannot be created, or nothing can be written into it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe."):
        pass
