"""Owns the team stack's state file: what ``up`` started, written whole and read back refusing anything else."""

from __future__ import annotations

import json
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from core import liveness
from core.cli import UserError
from core.files import replace_atomically
from team import postgres

STATE_FILE = "stack.json"
BUCKET = "team-artifacts"


@dataclass(frozen=True)
class Endpoints:
    """What clients need: the tracking URI and the Optuna storage URL (plus the S3 endpoint for inspection)."""

    tracking_uri: str
    optuna_storage: str
    s3_endpoint: str
    artifacts: str


@dataclass
class State:
    pg_data: str
    pg_port: int
    pg_password: str
    pg_owner: str | None
    pg_tmp_root: str | None
    moto_pid: int
    moto_port: int
    mlflow_pid: int
    mlflow_port: int
    # When each process started (core.liveness): a pid the kernel has since given to another process is not ours
    # to signal. Empty in a state written before they were recorded.
    moto_start: str = ""
    mlflow_start: str = ""

    def __post_init__(self) -> None:
        for name, kind in (("pg_data", str), ("pg_port", int), ("pg_password", str), ("moto_pid", int),
                           ("moto_port", int), ("mlflow_pid", int), ("mlflow_port", int), ("moto_start", str),
                           ("mlflow_start", str)):
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value <= 0):
                raise TypeError(f"{name} is {value!r}")
        for name in ("pg_owner", "pg_tmp_root"):
            if not (getattr(self, name) is None or isinstance(getattr(self, name), str)):
                raise TypeError(f"{name} is {getattr(self, name)!r}")
        # A relative folder would be taken from whatever directory `down` runs in: never the stack's.
        for name in ("pg_data", "pg_tmp_root"):
            if getattr(self, name) is not None and not Path(getattr(self, name)).is_absolute():
                raise ValueError(f"{name} is {getattr(self, name)!r}, not an absolute path")

    def exited(self) -> str | None:
        """What of the recorded stack is no longer running (after a reboot, a crash, a kill), or None.

        A pid whose start time was not recorded (an older state) cannot be told from a reused one: it counts as
        running, and so does PostgreSQL when its pid file cannot be read.
        """
        if self.mlflow_start and liveness.alive(liveness.Owner(socket.gethostname(), self.mlflow_pid,
                                                               self.mlflow_start)) is False:
            return f"its mlflow server, pid {self.mlflow_pid}, has exited"
        try:
            pg_pid = int(Path(self.pg_data, "postmaster.pid").read_text(encoding="utf-8").split()[0])
        except FileNotFoundError:
            return f"its PostgreSQL in {self.pg_data} is not running"
        except (OSError, ValueError, IndexError):
            return None
        if liveness.alive(liveness.Owner(socket.gethostname(), pg_pid, "")) is False:
            return f"its PostgreSQL, pid {pg_pid}, has exited"
        return None

    def endpoints(self) -> Endpoints:
        return Endpoints(tracking_uri=f"http://127.0.0.1:{self.mlflow_port}",
                         optuna_storage=postgres.pg_url(self.pg_port, self.pg_password, "optuna"),
                         s3_endpoint=f"http://127.0.0.1:{self.moto_port}", artifacts=f"s3://{BUCKET}/mlflow")


def read_state(state_dir: Path) -> State | None:
    """The state ``up`` recorded in ``state_dir``; None when there is none.

    Raises:
        UserError: what is there is not a stack's state.
    """
    path = state_dir / STATE_FILE
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        raise UserError(f"{path} is not a regular file, so not a team stack's state; move it out of the way")
    try:
        return State(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, RecursionError) as err:  # cut off, edited, nested too deep, or from another
        # version (UnicodeError: a ValueError)
        raise UserError(f"{path} is not a team stack's state ({type(err).__name__}: {err}); stop its processes "
                        f"by hand if any run, then delete it") from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror})") from None


def write_state(state_dir: Path, state: State) -> None:
    """Write the state whole (a temp file renamed over it), readable by its owner only: it holds the password."""
    path = state_dir / STATE_FILE
    try:
        replace_atomically(path, json.dumps(asdict(state), indent=2).encode("utf-8"), mode=0o600)
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror}); stopped what was started") from None


def check_removable(state_dir: Path) -> None:
    """Check that the state file can be deleted from ``state_dir`` (a file made and deleted there), before ``down``
    stops anything: a stack stopped whose state cannot be deleted is recorded as running still.

    Raises:
        UserError: it cannot.
    """
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".delete-check-"):
            pass
    except OSError as err:
        raise UserError(f"cannot delete {state_dir / STATE_FILE} ({err.strerror}), so the stack would stay recorded "
                        f"after stopping; nothing was stopped: make {state_dir} writable, then `down` again") from None


def remove_state(state_dir: Path) -> None:
    """Delete the state file once the stack is stopped.

    Raises:
        UserError: it cannot be deleted after all (the folder changed since ``check_removable``).
    """
    try:
        (state_dir / STATE_FILE).unlink()
    except OSError as err:
        raise UserError(f"the stack was stopped, but {state_dir / STATE_FILE} cannot be deleted ({err.strerror}); "
                        f"`down` again once it can (the stopped stack is left alone)") from None


def endpoints(state_dir: Path) -> Endpoints:
    """The endpoints of the running stack.

    Raises:
        UserError: the stack is not up, or its mlflow server or PostgreSQL has exited.
    """
    state = read_state(state_dir)
    if state is None:
        raise UserError(f"no team stack is running from {state_dir} (start it with `python -m team up`)")
    if gone := state.exited():
        raise UserError(f"the team stack recorded in {state_dir} is not running ({gone}); `python -m team down` "
                        f"clears it, then `python -m team up`")
    return state.endpoints()
