"""Owns how the monitoring commands exit: 0 all is well, 1 an alarm (drift, worse live accuracy), 2 an error.

Errors are one ``error: ...`` line on stderr, never a traceback: a scheduled job must tell "the model drifted"
(1) apart from "the job could not tell" (2).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import click

from core.cli import UserError, run_cli

OK, ALARM, ERROR = 0, 1, 2


class CaptureSource(click.ParamType):
    """``--capture``: a folder or ``s3://bucket/prefix``. An empty value is refused: read as "not given", it fell
    back to params.yaml's folder, so a CI variable left unset analysed the wrong captures."""

    name = "capture"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not str(value).strip():
            self.fail("is empty; give a capture folder or s3://bucket/prefix, or leave the option out", param, ctx)
        return str(value)


class JobError(click.ClickException):
    """The job could not do its work: exit 2."""

    exit_code = ERROR


def job_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the ``UserError`` a command raises into ``JobError`` (exit 2, not ``run_cli``'s 1)."""
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as err:
            # A line break from the input (a version, a file name) would split the one line a scheduler shows.
            raise JobError(str(err).replace("\r", "\\r").replace("\n", "\\n")) from None
    return wrapper


def run_job(command: click.Command, argv: Sequence[str] | None) -> int:
    """Run a monitoring command; an unexpected failure is one line and exit 2 as well."""
    try:
        return run_cli(command, argv)
    except Exception as err:  # noqa: BLE001 - the exit code must still say "error", in one line
        print(f"error: unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
        return ERROR
