"""Owns what keeps ``up`` and ``down`` whole: one of them at a time per state folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from core.cli import UserError


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Hold ``state_dir`` (an existing folder) for one ``up`` or ``down`` at a time.

    A flock on the folder itself: the kernel drops it when the process ends, however it ends, so it is never
    stale and leaves no file behind.

    Raises:
        UserError: another command holds it.
    """
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise UserError(f"cannot use {state_dir} as the stack's state folder ({err.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `python -m team` command is starting or stopping the stack in {state_dir}; "
                            f"wait for it to finish") from None
        yield
    finally:
        os.close(fd)
