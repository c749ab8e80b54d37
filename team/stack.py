"""Owns starting and stopping the team stack's three processes and the state file that remembers them.

The stack is what a team runs in production, shrunk onto loopback:

- **PostgreSQL** (Debian's server binaries, ``initdb`` + ``pg_ctl``): one cluster, two databases — ``mlflow``
  (the tracking and registry backend store) and ``optuna`` (the shared study storage workers join).
- **moto's server mode** as the S3 endpoint, holding the artifact bucket.
- **mlflow server** with ``--serve-artifacts``: it alone holds the (dummy) bucket credentials and proxies
  artifacts, so clients need nothing but ``MLFLOW_TRACKING_URI``.

Everything listens on 127.0.0.1 only, on free ports unless told otherwise. ``state_dir/stack.json`` records
ports, process ids and URLs so that ``down`` stops exactly what ``up`` started. Run as root, PostgreSQL (which
refuses root) runs as the ``postgres`` user with its data in a fresh folder under the system temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from core import liveness
from core.cli import UserError
from team import postgres

STATE_FILE = "stack.json"
BUCKET = "team-artifacts"
# The moto server accepts any key pair; only the mlflow server process ever sees these.
S3_ENV = {"AWS_ACCESS_KEY_ID": "team-local", "AWS_SECRET_ACCESS_KEY": "team-local",
          "AWS_DEFAULT_REGION": "us-east-1"}
# One process serves requests from a thread pool, enough for a handful of workers on a 2-core machine; each
# extra process costs seconds of start-up importing the server. A shared server would use more.
MLFLOW_WORKERS = 1


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

    def endpoints(self) -> Endpoints:
        return Endpoints(tracking_uri=f"http://127.0.0.1:{self.mlflow_port}",
                         optuna_storage=postgres.pg_url(self.pg_port, self.pg_password, "optuna"),
                         s3_endpoint=f"http://127.0.0.1:{self.moto_port}", artifacts=f"s3://{BUCKET}/mlflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_state(state_dir: Path) -> State | None:
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return State(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:  # cut off, edited, or from another version (UnicodeError: a ValueError)
        raise UserError(f"{path} is not a team stack's state ({type(err).__name__}: {err}); stop its processes "
                        f"by hand if any run, then delete it") from None


def endpoints(state_dir: Path) -> Endpoints:
    """The endpoints of the running stack.

    Raises:
        UserError: the stack is not up.
    """
    state = _read_state(state_dir)
    if state is None:
        raise UserError(f"no team stack is running from {state_dir} (start it with `python -m team up`)")
    return state.endpoints()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_for(check, what: str, timeout_s: float, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UserError(f"{what} exited with code {proc.returncode}; last lines of {log}:\n"
                            f"{postgres.log_tail(log)}")
        if check():
            return
        time.sleep(0.25)
    raise UserError(f"{what} did not become ready within {timeout_s:.0f}s; last lines of {log}:\n"
                    f"{postgres.log_tail(log)}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:  # noqa: S310
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _create_optuna_schema(url: str) -> None:
    # Done once here: two workers creating Optuna's tables at the same moment on an empty database can race.
    import optuna

    optuna.storages.RDBStorage(url)


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # A session of its own, so `down` can stop the server and every worker it forked as one process group.
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def _create_bucket(endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in S3_ENV.items()
                                                 if k != "AWS_DEFAULT_REGION"},
                 region_name=S3_ENV["AWS_DEFAULT_REGION"]).create_bucket(Bucket=BUCKET)


def up(state_dir: Path, *, mlflow_port: int = 0, timeout_s: float = 180.0) -> Endpoints:
    """Start PostgreSQL, moto and mlflow server; everything started is stopped again if a later step fails.

    Raises:
        UserError: a stack is already running from ``state_dir``, or a component did not start.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    if _read_state(state_dir) is not None:
        raise UserError(f"a team stack is already running from {state_dir} (`python -m team down` first)")
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    pg_port, moto_port = free_port(), free_port()
    mlflow_port = mlflow_port or free_port()
    password = secrets.token_hex(16)
    started: dict = {}
    try:
        postgres.start(state_dir, pg_port, password, started)
        postgres.create_databases(pg_port, password)
        _create_optuna_schema(postgres.pg_url(pg_port, password, "optuna"))
        moto = _spawn([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(moto_port)],
                      logs / "moto.log")
        started["moto_pid"], started["moto_start"] = moto.pid, liveness.of(moto.pid).start
        _wait_for(lambda: _port_open(moto_port), "moto server", 60, moto, logs / "moto.log")
        s3_endpoint = f"http://127.0.0.1:{moto_port}"
        _create_bucket(s3_endpoint)
        # The job runner serves GenAI scorers, which this project does not use; it would cost a process.
        env = os.environ | S3_ENV | {"MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
                                     "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        server = _spawn([sys.executable, "-m", "mlflow", "server",
                         "--backend-store-uri", postgres.pg_url(pg_port, password, "mlflow"),
                         "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts",
                         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", str(MLFLOW_WORKERS)],
                        logs / "mlflow.log", env=env)
        started["mlflow_pid"], started["mlflow_start"] = server.pid, liveness.of(server.pid).start
        _wait_for(lambda: _health(mlflow_port), "mlflow server", timeout_s, server, logs / "mlflow.log")
    except BaseException:
        _stop(started)
        raise
    state = State(pg_data=started["pg_data"], pg_port=pg_port, pg_password=password, pg_owner=started["pg_owner"],
                  pg_tmp_root=started.get("pg_tmp_root"), moto_pid=started["moto_pid"], moto_port=moto_port,
                  mlflow_pid=started["mlflow_pid"], mlflow_port=mlflow_port, moto_start=started["moto_start"],
                  mlflow_start=started["mlflow_start"])
    path = state_dir / STATE_FILE
    path.write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
    path.chmod(0o600)  # it holds the database password
    return state.endpoints()


def _stop_group(pid: int | None, start: str = "", timeout_s: float = 15.0) -> None:
    """SIGTERM (then SIGKILL) the process group ``pid`` leads, if that pid is still the process that started then."""
    if not pid or not _alive(pid) or liveness.alive(liveness.Owner(socket.gethostname(), pid, start)) is False:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _stop(started: dict) -> None:
    """Stop whatever of the stack ``started`` names, in reverse order of starting."""
    _stop_group(started.get("mlflow_pid"), started.get("mlflow_start", ""))
    _stop_group(started.get("moto_pid"), started.get("moto_start", ""))
    data = started.get("pg_data")
    if data and Path(data, "postmaster.pid").exists():
        subprocess.run([postgres.pg_binary("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True,
                       **postgres.as_owner(started.get("pg_owner")))
    if started.get("pg_tmp_root"):
        shutil.rmtree(started["pg_tmp_root"], ignore_errors=True)
    elif data:
        shutil.rmtree(Path(data).parent, ignore_errors=True)


def down(state_dir: Path) -> bool:
    """Stop the stack started from ``state_dir`` and delete its database; False when none was running."""
    state = _read_state(state_dir)
    if state is None:
        return False
    _stop(asdict(state))
    (state_dir / STATE_FILE).unlink()
    return True
