"""Owns how every command-line entry point reports errors: one line on stderr and a non-zero exit."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import click

from core.files import names_a_folder


class FiniteRange(click.FloatRange):
    """click's ``FloatRange``, refusing NaN too: every comparison with NaN is false, so its range check lets it by."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


class OutputFile(click.Path):
    """click's ``Path`` for a file a command writes: an existing folder is refused (``dir_okay=False``), and so is
    a name that can only be a folder's (``dist/``, ``dist/.``, ``..``): ``pathlib`` drops the slash, and the
    command wrote a file named ``dist``."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, str) and names_a_folder(value):
            self.fail(f"{value!r} names a folder, not a file (end it with the file's name)", param, ctx)
        return super().convert(value, param, ctx)


# A registered model version number. MLflow's registry keeps it in an Integer column
# (mlflow/store/model_registry/dbmodels/models.py, ``version = Column(Integer, ...)``): 32 bits in PostgreSQL and
# MySQL. A larger number is no version at all, and SQLite or psycopg would answer it with an overflow error.
MODEL_VERSION = click.IntRange(1, 2**31 - 1)


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


def run_cli(command: click.Command, argv: Sequence[str] | None = None) -> int:
    """Run a click command and return its exit code instead of exiting.

    Usage errors exit 2, ``UserError`` exits 1; both print a single ``error: ...`` line. A background thread's
    error (Optuna's heartbeat thread when its database goes away) is one ``error:`` line too, not a traceback.
    """
    threading.excepthook = _thread_error
    try:
        result = command.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.Abort:
        print("error: aborted", file=sys.stderr)
        return 130
    except click.ClickException as err:
        print(f"error: {err.format_message()}", file=sys.stderr)
        return err.exit_code
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def _thread_error(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    detail = first_line(args.exc_value) if args.exc_value is not None else args.exc_type.__name__
    name = args.thread.name if args.thread is not None else "a thread"
    print(f"error: in the background ({name}): {detail}", file=sys.stderr)


def first_line(err: BaseException) -> str:
    """What an error says, for a one-line message: its first non-blank line, or its type's name when it says nothing."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
