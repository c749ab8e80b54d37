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
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

from core import liveness
from core.cli import UserError
from team import guard, postgres, starting, tools
from team.state import BUCKET, Endpoints, State, check_removable, read_state, remove_state, write_state

# The moto server accepts any key pair; only the mlflow server process ever sees these.
S3_ENV = {"AWS_ACCESS_KEY_ID": "team-local", "AWS_SECRET_ACCESS_KEY": "team-local",
          "AWS_DEFAULT_REGION": "us-east-1"}
# One process serves requests from a thread pool, enough for a handful of workers on a 2-core machine; each
# extra process costs seconds of start-up importing the server. A shared server would use more.
MLFLOW_WORKERS = 1


def _free_ports(count: int, taken: int = 0) -> list[int]:
    """``count`` distinct free loopback ports, none of them ``taken``: each held until all are chosen."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] != taken:
                ports.append(sock.getsockname()[1])
        return ports


def _check_port(port: int) -> None:
    """Refuse a port another process listens on, before anything starts (SO_REUSEADDR as servers bind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise UserError(f"mlflow server cannot listen on 127.0.0.1:{port} ({err.strerror}); "
                            f"choose another port") from None


def _prepare(state_dir: Path) -> Path:
    """The logs folder, once the folder ``state_dir`` is known to be one ``up`` can record its state in.

    Raises:
        UserError: it is not (checked before anything starts, so nothing is left running unrecorded).
    """
    if (state := read_state(state_dir)) is not None:
        gone = state.exited()
        raise UserError(f"a team stack is already running from {state_dir} (`python -m team down` first)" if not gone
                        else f"{state_dir} records a team stack that stopped ({gone}); `python -m team down` clears it")
    if starting.read(state_dir) is not None:
        raise UserError(f"an `up` from {state_dir} was killed while starting; `python -m team down` stops it first")
    logs = state_dir / "logs"
    try:
        logs.mkdir(exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot use {logs} as the stack's logs folder ({err.strerror})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".write-check-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write in the state folder {state_dir} ({err.strerror})") from None
    return logs


def _alive(pid: int) -> bool:
    try:
        with contextlib.suppress(PermissionError):  # another user's process: alive
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
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

    # Its pooled connection closed now: `down` takes a session on the study database for a running worker.
    optuna.storages.RDBStorage(url).engine.dispose()


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
        UserError: a stack is already running from ``state_dir`` or another command is starting or stopping it
            there, the state cannot be recorded there, ``mlflow_port`` is taken or a tool is missing (all said
            before anything starts), a component did not start, or SIGTERM or SIGHUP came.
    """
    state_dir = state_dir.resolve()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot use {state_dir} as the stack's state folder ({err.strerror})") from None
    with guard.exclusive(state_dir), guard.stop_signals_raise():
        return _start(state_dir, mlflow_port, timeout_s)


def _start(state_dir: Path, mlflow_port: int, timeout_s: float) -> Endpoints:
    logs = _prepare(state_dir)
    tools.check()
    if mlflow_port:
        _check_port(mlflow_port)
    pg_port, moto_port, *free = _free_ports(2 if mlflow_port else 3, taken=mlflow_port)
    mlflow_port = mlflow_port or free[0]
    password = secrets.token_hex(16)
    started: dict = {}
    try:
        postgres.start(state_dir, pg_port, password, started, functools.partial(starting.record, state_dir))
        postgres.create_databases(pg_port, password)
        _create_optuna_schema(postgres.pg_url(pg_port, password, "optuna"))
        moto = _spawn([str(tools.moto_server()), "-H", "127.0.0.1", "-p", str(moto_port)], logs / "moto.log")
        started["moto_pid"], started["moto_start"] = moto.pid, liveness.of(moto.pid).start
        starting.record(state_dir, started)
        _wait_for(lambda: _port_open(moto_port), "moto server", 60, moto, logs / "moto.log")
        s3_endpoint = f"http://127.0.0.1:{moto_port}"
        _create_bucket(s3_endpoint)
        # The job runner serves GenAI scorers, which this project does not use; it would cost a process.
        # The store's URL holds the password: in the environment (its owner's alone), not on the command line,
        # which every user on the machine can read (ps, /proc/PID/cmdline).
        env = os.environ | S3_ENV | {"MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
                                     "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                                     "MLFLOW_BACKEND_STORE_URI": postgres.pg_url(pg_port, password, "mlflow")}
        env.pop("MLFLOW_TRACKING_URI", None)
        server = _spawn([sys.executable, "-m", "mlflow", "server",
                         "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts",
                         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", str(MLFLOW_WORKERS)],
                        logs / "mlflow.log", env=env)
        started["mlflow_pid"], started["mlflow_start"] = server.pid, liveness.of(server.pid).start
        starting.record(state_dir, started)
        _wait_for(lambda: _health(mlflow_port), "mlflow server", timeout_s, server, logs / "mlflow.log")
        state = State(pg_data=started["pg_data"], pg_port=pg_port, pg_password=password,
                      pg_owner=started["pg_owner"], pg_tmp_root=started.get("pg_tmp_root"),
                      moto_pid=started["moto_pid"], moto_port=moto_port, mlflow_pid=started["mlflow_pid"],
                      mlflow_port=mlflow_port, moto_start=started["moto_start"], mlflow_start=started["mlflow_start"])
        write_state(state_dir, state)
    except BaseException:
        _stop(started, state_dir)
        raise
    finally:
        starting.forget(state_dir)
    return state.endpoints()


def _stop_group(pid: int | None, start: str, what: str, timeout_s: float = 15.0) -> str | None:
    """SIGTERM (then SIGKILL) the process group ``pid`` leads, if that pid is still the process that started then.

    Returns:
        One line when a live ``pid`` was left alone because its start time cannot be checked (none recorded, or
        none readable): it is treated as gone, since it may be any process by now.
    """
    if not pid or not _alive(pid):
        return None
    if not start or not liveness.of(pid).start:
        return (f"{what} (pid {pid}) not signalled: its start time cannot be checked, so the pid may be another "
                f"process's by now; stop it by hand if it is still the stack's")
    if liveness.alive(liveness.Owner(socket.gethostname(), pid, start)) is False:
        return None
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
    return None


def _stop(started: dict, state_dir: Path) -> list[str]:
    """Stop whatever of the stack ``started`` names, in reverse order of starting.

    Only a cluster folder the stack made is stopped and deleted: ``state_dir/postgres`` (or the recorded temp
    folder, as root) holding ``postgres.MARKER``.

    Returns:
        One line for each thing left alone.
    """
    notes = [note for note in (_stop_group(started.get("mlflow_pid"), started.get("mlflow_start", ""), "mlflow server"),
                               _stop_group(started.get("moto_pid"), started.get("moto_start", ""), "moto server"))
             if note]
    data, temp_root = started.get("pg_data"), started.get("pg_tmp_root")
    expected = Path(temp_root) if temp_root else state_dir / "postgres"
    folder = postgres.cluster_folder(data, expected) if data else None
    if folder is not None:
        postgres.stop(data, started.get("pg_owner"))
        shutil.rmtree(folder, ignore_errors=True)
    elif data and Path(data).parent.exists():
        notes.append(f"left {Path(data).parent} alone: not a cluster folder this stack made (stop its server "
                     f"with `pg_ctl -D {data} stop` if one runs)")
    elif temp_root and (Path(temp_root) / postgres.MARKER).is_file():  # made, and no cluster in it yet
        shutil.rmtree(temp_root, ignore_errors=True)
    return notes


def down(state_dir: Path, *, force: bool = False) -> list[str] | None:
    """Stop the stack started from ``state_dir`` and delete its database.

    Returns:
        None when no stack was running (nor starting), else one line for each thing left alone (see ``_stop``).

    Raises:
        UserError: a training or worker is connected to the study database (unless ``force``), the state file
            cannot be deleted (said before anything stops), or another command is starting or stopping the stack.
    """
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        return None
    with guard.exclusive(state_dir):
        state = read_state(state_dir)
        if state is None:  # none, or what an `up` killed while starting (SIGKILL) recorded it had started
            notes = None if (started := starting.read(state_dir)) is None else _stop(started, state_dir)
            starting.forget(state_dir)
            return notes
        if not force and (sessions := postgres.study_sessions(state.pg_port, state.pg_password)):
            raise UserError(f"{sessions} session(s) connected to the stack's study database: a training or worker "
                            f"is running; stop it first, or `down --force` (make team-down FORCE=1) deletes its "
                            f"study and runs")
        check_removable(state_dir)
        notes = _stop(asdict(state), state_dir)
        remove_state(state_dir)
        starting.forget(state_dir)
    return notes
