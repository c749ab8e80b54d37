"""Owns the release path of a registered model: promotion through a quality gate, rollback and export.

An export is dated by ``$SOURCE_DATE_EPOCH`` when it is set (``registry/export.py``, the reproducible-builds
convention). numpy reads the same variable while it is imported (``numpy/f2py/rules.py``, reached through
MLflow's imports) and stops with a traceback on anything but a whole number, before a command could say what
is wrong; so the package checks it as it loads, ahead of every module that imports numpy, and stops in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime


def source_date(environ: Mapping[str, str] = os.environ) -> str | None:
    """``$SOURCE_DATE_EPOCH`` as ISO 8601 UTC, or None when it is unset or empty.

    Raises:
        ValueError: not ASCII digits, or past year 9999 (the message names the value).
    """
    epoch = environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        # The convention asks for an ASCII integer as ``date +%s`` prints it (reproducible-builds.org/specs/
        # source-date-epoch); int() alone also takes " 5", "+5", "1_000" and any script's digits (Arabic-Indic 3).
        if not (epoch.isascii() and epoch.isdigit()):
            raise ValueError(epoch)
        return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):  # not digits, or past year 9999
        raise ValueError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970 (before year 10000), "
                         f"got {epoch!r}") from None


try:
    source_date()
except ValueError as _err:
    raise SystemExit(f"error: {_err}") from None
