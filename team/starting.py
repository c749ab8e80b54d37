"""Owns the record of a stack still starting: what ``up`` has started so far, so that an ``up`` killed by SIGKILL
(which no handler sees) leaves its PostgreSQL cluster and servers findable by ``down``."""

from __future__ import annotations

import json
from pathlib import Path

from core.cli import UserError
from core.files import replace_atomically

# What an `up` has started so far, rewritten as each part starts and deleted once the stack's state is written (or what
# it started is stopped): an `up` killed by SIGKILL leaves it behind, for `down` to stop and delete its cluster.
FILE = "starting.json"
FIELDS = {"pg_data": str, "pg_owner": str, "pg_tmp_root": str, "moto_pid": int, "moto_start": str,
          "mlflow_pid": int, "mlflow_start": str}


def record(state_dir: Path, started: dict) -> None:
    """Record what a starting ``up`` has started so far (no password: nothing connects to a stack not yet up)."""
    try:
        replace_atomically(state_dir / FILE, json.dumps(started).encode("utf-8"), mode=0o600)
    except OSError as err:
        raise UserError(f"cannot write {state_dir / FILE} ({err.strerror}); stopped what was started") from None


def read(state_dir: Path) -> dict | None:
    """What an ``up`` killed while starting recorded in ``state_dir``; None when there is nothing.

    Raises:
        UserError: what is there is not such a record.
    """
    path = state_dir / FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        started = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(started, dict):
            raise TypeError("not an object")
        for name, value in started.items():
            kind = FIELDS.get(name)
            if kind is None or not (value is None or isinstance(value, kind) and not isinstance(value, bool)):
                raise TypeError(f"{name} is {value!r}")
            if name in ("pg_data", "pg_tmp_root") and value is not None and not Path(value).is_absolute():
                raise ValueError(f"{name} is {value!r}, not an absolute path")
        return started
    except (ValueError, TypeError, RecursionError, OSError) as err:
        raise UserError(f"{path} is not what a starting team stack records ({type(err).__name__}: {err}); stop "
                        f"its processes by hand if any run, then delete it") from None


def forget(state_dir: Path) -> None:
    """Delete the record of a starting ``up`` (once the stack is recorded whole, or stopped).

    Raises:
        UserError: it cannot be deleted.
    """
    try:
        (state_dir / FILE).unlink(missing_ok=True)
    except OSError as err:
        raise UserError(f"cannot delete {state_dir / FILE} ({err.strerror}); delete it by hand") from None
