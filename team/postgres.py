"""Owns the team stack's PostgreSQL: a throwaway cluster on loopback with the ``mlflow`` and ``optuna`` databases.

Debian's server binaries (``initdb`` + ``pg_ctl``); run as root, the server (which refuses root) runs as the
``postgres`` user with its data in a fresh folder under the system temp dir.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from core.cli import UserError

PG_USER = "team"
DATABASES = ("mlflow", "optuna")
# Written into a cluster's folder when it is made: `down` deletes no folder without it.
MARKER = "team-stack-cluster"


def pg_url(port: int, password: str, database: str) -> str:
    """A SQLAlchemy URL through psycopg 3 (``postgresql://`` alone would ask for psycopg2)."""
    return f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{port}/{database}"


def pg_binary(name: str) -> str:
    """``name`` from PATH, else from Debian's versioned folder (which is not on PATH), newest first.

    Raises:
        UserError: no PostgreSQL server is installed.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise UserError(f"PostgreSQL's {name} was not found; install the server with `make team-deps`")
    return candidates[-1]


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def as_owner(owner: str | None) -> dict:
    return {"user": owner, "group": pwd.getpwnam(owner).pw_gid} if owner else {}


def start(state_dir: Path, port: int, password: str, started: dict, record=lambda started: None) -> None:
    """initdb a fresh cluster and start it with pg_ctl, noting in ``started`` what to clean up (and passing it to
    ``record`` once the cluster's folder is made, before anything runs in it).

    Args:
        state_dir: an absolute path; the cluster's folder (``pg_data``'s parent) is noted absolute, so that
            ``down`` from another directory stops and deletes this one.
    """
    owner = None
    if os.geteuid() == 0:
        # The server refuses to run as root, and pytest's and the repo's folders are not readable by others.
        owner = "postgres" if _user_exists("postgres") else "nobody"
        root = Path(tempfile.mkdtemp(prefix="team-pg-")).resolve()
        started["pg_tmp_root"] = str(root)
        (root / MARKER).touch()
        os.chown(root, pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid)
    else:
        root = state_dir / "postgres"
        if root.exists() and not (root / MARKER).is_file():
            raise UserError(f"{root} is not a cluster folder this stack made; move it out of the way")
        # A cluster left by a crashed `up` (`down` deletes it too); its server may still run.
        stop(str(root / "data"), None)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / MARKER).touch()
    data, sockets, log = root / "data", root / "sockets", root / "postgres.log"
    started["pg_owner"], started["pg_data"] = owner, str(data)
    record(started)
    pwfile = root / "pwfile"
    owner_args = as_owner(owner)
    sockets.mkdir()
    # Made 0600 from the start (not written, then chmod-ed): never readable by others, not even for an instant.
    with os.fdopen(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
        out.write(password)
    if owner:
        for path in (sockets, pwfile):
            os.chown(path, pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid)
    done = subprocess.run([pg_binary("initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                           "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"],
                          capture_output=True, text=True, **owner_args)
    pwfile.unlink()
    if done.returncode != 0:  # killed (the OOM killer, a signal) it may say nothing at all
        said = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"initdb failed: {said[-1]}" if said else f"initdb failed with exit code {done.returncode}")
    # Loopback only; the socket lives in our own folder, not /var/run/postgresql (absent or root-owned here).
    # Every worker and the mlflow server keep a connection pool: room for a team's worth of them.
    options = f"-c listen_addresses=127.0.0.1 -c max_connections=300 -p {port} -k {sockets}"
    done = subprocess.run([pg_binary("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
                           "start"], capture_output=True, text=True, **owner_args)
    if done.returncode != 0:
        raise UserError(f"PostgreSQL did not start (pg_ctl exit {done.returncode}); last lines of {log}:\n"
                        f"{log_tail(log)}")


def cluster_folder(data: str, expected: Path) -> Path | None:
    """``data``'s parent when it is ``expected`` (the state dir's ``postgres`` or the recorded temp folder) and
    holds the marker ``start`` writes: the only folder the stack ever stops a server in or deletes."""
    path = Path(data)
    if not path.is_absolute() or path.name != "data" or path.parent != expected:
        return None
    return path.parent if (path.parent / MARKER).is_file() else None


def stop(data: str, owner: str | None) -> None:
    """Stop the server of the cluster in ``data`` (an absolute path), if one runs."""
    if Path(data, "postmaster.pid").exists():
        subprocess.run([pg_binary("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"], capture_output=True,
                       **as_owner(owner))


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def create_databases(port: int, password: str) -> None:
    import psycopg  # only `up` needs the driver

    with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=password, dbname="postgres",
                         autocommit=True) as conn:
        for name in DATABASES:
            conn.execute(f'CREATE DATABASE "{name}"')


def study_sessions(port: int, password: str) -> int:
    """How many sessions are connected to the ``optuna`` database: trainings and workers (clients reach MLflow
    through its server, whose own sessions are on ``mlflow``). 0 when the server does not answer."""
    import psycopg

    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=password, dbname="postgres",
                             connect_timeout=10) as conn:
            # Client sessions only: an autovacuum worker on the database is PostgreSQL's own.
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'optuna' "
                                "AND backend_type = 'client backend'").fetchone()[0]
    except psycopg.OperationalError:
        return 0
