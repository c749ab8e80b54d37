"""Owns telling whether the process that left a record behind (a training run, a promotion lock) still lives.

A record names its owner as ``host:pid:start``, where ``start`` is when that process started (Linux's
``/proc/PID/stat`` start time, in clock ticks since boot), so a pid the kernel has since given to another
process is not mistaken for the owner. On the owner's own host the answer is certain; from another host
it is unknown (None), and the caller falls back on how old the record's last sign of life is.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Owner:
    """A process: the host it runs on, its pid, and its start time (empty where the OS does not say)."""

    host: str
    pid: int
    start: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _stat(pid: int) -> list[str]:
    """Fields 3 onwards of ``/proc/PID/stat`` (state first), or [] where there is no such file."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[-1].split()


def _start_time(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def me() -> Owner:
    """This process."""
    return of(os.getpid())


def of(pid: int) -> Owner:
    """A process of this host, as a record names it (its start time empty when it is gone)."""
    return Owner(host=socket.gethostname(), pid=pid, start=_start_time(pid))


def parse(text: str | None) -> Owner | None:
    """The owner a record names, or None when it names none (or is not in this format)."""
    parts = (text or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
        return None
    return Owner(host=parts[0], pid=int(parts[1]), start=parts[2])


def alive(owner: Owner) -> bool | None:
    """True or False for a process of this host; None for another host's, which cannot be asked."""
    if owner.host != socket.gethostname():
        return None
    try:
        os.kill(owner.pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a pid past a C int (hand-edited)
        return False
    except PermissionError:  # another user's process: it exists
        pass
    fields = _stat(owner.pid)
    if fields and fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    started = fields[19] if len(fields) > 19 else ""
    return not (owner.start and started and started != owner.start)
