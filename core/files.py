"""Owns replacing a file all at once: readers see the old bytes or the new ones, never a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, sync it, then rename it over ``path``.

    On any failure (a full disk, a file size limit) the temp file is removed and ``path`` is as it was.

    Raises:
        OSError: the folder cannot be written, or the write failed.
    """
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
