"""Owns putting a job's files into its ``--out`` folder together: this run's whole set, or the last run's left as it was.

A job writes its files into a staging folder inside ``--out`` (the same file system, so a rename moves each one
at once) and they replace their namesakes only when all of them are written, the summary a workflow reads last.
Written in place, a report that failed after its summary left a new summary beside an earlier window's report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from core.cli import UserError
from core.files import check_replaceable


@contextmanager
def staged(out: Path, *, last: str, stale: Sequence[str] = ()) -> Iterator[Path]:
    """A folder to write the job's files into; when the block ends without an error they are moved into ``out``,
    and an ``OSError`` inside the block becomes a ``UserError`` naming ``out``.

    Args:
        out: the job's output folder (created if missing).
        last: the file moved last (the summary: a reader finds it only beside the files it describes).
        stale: files of an earlier run to remove from ``out`` (one this run does not write), before ``last`` moves.

    Raises:
        UserError: ``out`` cannot be written, or a file there is not a regular file (a folder or FIFO) to replace.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    except OSError as err:
        raise UserError(f"cannot write into {out}: {err.strerror or err}") from None
    try:
        try:
            yield staging
        except OSError as err:  # a full disk, a file size limit: nothing in ``out`` has changed
            raise UserError(f"cannot write into {out}: {err.strerror or err}") from None
        names = sorted((p.name for p in staging.iterdir()), key=lambda name: name == last)
        destination = out
        try:
            for name in [*names, *stale]:  # all checked before any moves: a folder in the way changes nothing
                destination = out / name
                check_replaceable(destination)
            for name in stale:
                destination = out / name
                destination.unlink(missing_ok=True)
            for name in names:
                destination = out / name
                os.replace(staging / name, destination)
        except OSError as err:
            raise UserError(f"cannot write {destination}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
