"""Owns what keeps ``up`` and ``down`` whole: one of them at a time per state folder, and ``up`` stopping what
it started when it is told to stop by a signal rather than Ctrl-C."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from core.cli import UserError

# What a closed terminal, `kill` or a CI job's timeout sends. Python turns only SIGINT into an exception; on
# these it would die on the spot, leaving PostgreSQL, moto and mlflow server running and recorded nowhere.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While this holds, SIGTERM and SIGHUP raise ``UserError`` (in the main thread), so a ``try`` can clean up;
    SIGINT (Ctrl-C) raises ``KeyboardInterrupt`` as it always does.

    The first of them ignores any that follow until this ends: a second Ctrl-C or ``kill``, while the clean-up
    waits for the servers to stop, must not cut it short. Elsewhere than in the main thread (where Python
    delivers signals) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        for sig in (*STOP_SIGNALS, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise UserError(f"stopped by {signal.Signals(signum).name} while starting; what had started was stopped")

    previous = {sig: signal.signal(sig, interrupt) for sig in (*STOP_SIGNALS, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
