"""Owns the connection to MLflow: where the tracking store is, whether it answers, and the experiment to log to."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from core.cli import UserError, first_line
from core.files import is_special

# MLflow 3's UI opens an experiment on the view its kind names; without it, on the GenAI overview (traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def quiet_mlflow() -> None:
    """Keep command output to our own lines: MLflow's progress bars, hints and migrations are for notebooks."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    # The SQL store logs a database error (SQL, parameters, traceback: 66 lines for a locked SQLite file) and
    # then raises it, which every command reports in one line; the log only repeats it.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def tracking_uri(default: str) -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team server), else the params.yaml default (embedded SQLite).

    Raises:
        UserError: the URI has surrounding spaces or a control character (a secret or env file's trailing
            newline: MLflow would make a store named ``mlflow.db\r`` or fail deep in http.client).
    """
    override = os.environ.get("MLFLOW_TRACKING_URI")
    uri = override or default
    if uri != uri.strip() or any(ord(c) < 32 or ord(c) == 127 for c in uri):
        where = "MLFLOW_TRACKING_URI" if override else "mlflow.tracking_uri"
        raise UserError(f"{where} {uri!r} has surrounding spaces or a control character (a trailing newline?)")
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of an embedded SQLite store's URI (``sqlite:///path[?options]``), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def check_reachable(uri: str, timeout_s: float = 5.0, *, must_exist: bool = False) -> None:
    """Fail fast, in one line, when a tracking server does not answer (MLflow itself would retry for minutes).

    ``must_exist``: a command that only reads what training wrote (promote, export, monitoring) refuses a SQLite
    file that is not there, or is there without MLflow's tables (an empty file, another program's database),
    rather than letting MLflow create its tables in it.

    Raises:
        UserError: an http(s) server whose /health does not answer or a URL that is none, a database server
            whose port does not answer, ``sqlite:`` without ``///``, or a SQLite file in a missing folder, a
            folder, FIFO or device where the file should be, a file SQLite cannot read, or (``must_exist``) no
            file at all or one that is no MLflow store.
    """
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as reply:  # noqa: S310
                if reply.status != 200:
                    raise UserError(f"MLflow tracking server {shown_uri(uri)} answered /health with {reply.status}")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"MLflow tracking server {shown_uri(uri)} is unreachable ({reason})") from None
        except (ValueError, http.client.InvalidURL) as err:  # a port that is no number, "Invalid IPv6 URL"
            raise UserError(f"MLflow tracking URI {shown_uri(uri)} is not a valid URL ({err})") from None
    elif (db := sqlite_file(uri)) is not None:
        folder = db.parent
        if not folder.is_dir():
            raise UserError(f"MLflow tracking store {uri}: folder {folder} does not exist")
        if db.is_dir():
            raise UserError(f"MLflow tracking store {uri}: {db} is a folder, not a database file")
        if is_special(db):  # opening a FIFO waits for a writer forever; /dev/null reads as an empty database
            raise UserError(f"MLflow tracking store {uri}: {db} is not a regular file (a FIFO, device or socket)")
        if db.exists():
            _check_sqlite(uri, db, timeout_s, must_be_store=must_exist)
        elif must_exist:
            raise UserError(f"MLflow tracking store {uri}: {db} does not exist (train first: make train, or "
                            f"check MLFLOW_TRACKING_URI and mlflow.tracking_uri)")
    elif uri.startswith("sqlite:"):
        raise UserError(f"MLflow tracking URI {uri}: a SQLite store is sqlite:///PATH (three slashes, then the file)")
    elif (server := database_server(uri)) is not None:
        _check_port(uri, *server, timeout_s)


# SQLAlchemy's database URLs MLflow's SQL store takes besides SQLite (dialect[+driver]), with the default port.
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def database_server(uri: str) -> tuple[str, int] | None:
    """``(host, port)`` of a database server URL (``postgresql://user:password@host:port/db``), else None."""
    scheme, sep, _ = uri.partition("://")
    port = DATABASE_PORTS.get(scheme.split("+", 1)[0])
    if not sep or port is None:
        return None
    try:
        parts = urllib.parse.urlsplit(uri)
        return parts.hostname or "localhost", parts.port or port
    except ValueError as err:
        raise UserError(f"MLflow tracking URI {shown_uri(uri)}: not a valid database URL ({err})") from None


def _check_port(uri: str, host: str, port: int, timeout_s: float) -> None:
    """A database server whose port does not take a connection (the SQL store would retry for over a minute)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise UserError(f"MLflow tracking store {shown_uri(uri)}: {host}:{port} is unreachable "
                        f"({err.strerror or err})") from None


def shown_uri(uri: str) -> str:
    """``uri`` fit for a message or a log: a password in it masked (``user:***@host``)."""
    try:
        password = urllib.parse.urlsplit(uri).password
    except ValueError:  # "Invalid IPv6 URL": whatever sits between "://" and "@" may hold one
        scheme, sep, rest = uri.partition("://")
        return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if sep and "@" in rest else uri
    if password is None:
        return uri
    return uri.replace(f":{password}@", ":***@", 1)


def store_failed(uri: str, doing: str, err: BaseException) -> UserError:
    """One line naming the store, what it was doing and why it failed: the database's own reason (``database is
    locked``) rather than the SQLAlchemy text MLflow wraps it in, or the first line of the HTTP client's."""
    cause = getattr(err.__cause__, "orig", None) or err
    return UserError(f"MLflow tracking store {shown_uri(uri)}: {doing} failed ({first_line(cause)})")


# Tables every MLflow SQL store has had since the model registry (MLflow 1.2): its migrations' own and the first.
MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "registered_models"})


def _check_sqlite(uri: str, db: Path, timeout_s: float, *, must_be_store: bool = False) -> None:
    """Refuse a store file SQLite cannot read (another file, a damaged header or page) before MLflow meets it,
    and (``must_be_store``) one without MLflow's tables, in which MLflow would create them.

    Read-only. A damaged page would otherwise reach MLflow as whatever its query made of it: a missing
    ``Default`` experiment it then fails to insert (a unique-key clash), a SQLAlchemy traceback. SQLite's
    ``quick_check`` reads every page once (https://sqlite.org/pragma.html#pragma_quick_check): about 3 ms for
    a 1 MB store here, 0.3 s for 180 MB; a store that size belongs on a tracking server (README "Team mode").
    """
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=timeout_s)) as conn:
            verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]  # reads the header and schema first
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        raise UserError(f"MLflow tracking store {uri}: {db} cannot be read as a SQLite database ({err})") from None
    if verdict != "ok":
        first = " ".join(line for line in verdict.splitlines() if not line.startswith("***"))
        raise UserError(f"MLflow tracking store {uri}: {db} is damaged (SQLite's quick check: {first}); "
                        f"restore it from a backup")
    if must_be_store and not MLFLOW_TABLES <= tables:
        what = "an empty database" if not tables else "a database without MLflow's tables"
        raise UserError(f"MLflow tracking store {uri}: {db} is {what}, not an MLflow store; left as it is "
                        f"(train first: make train, or check MLFLOW_TRACKING_URI and mlflow.tracking_uri)")


def use_experiment(uri: str, name: str) -> str:
    """Point the fluent API at ``uri`` and return the id of experiment ``name`` (created if new).

    The experiment is tagged as a model-training one (``mlflow.experimentKind``), so ``mlflow ui`` lands on
    its runs rather than on MLflow 3's GenAI overview.
    """
    import mlflow  # here, not at the top: the CDK app and the smoke test import this package without MLflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # MLflow also writes the URI into MLFLOW_TRACKING_URI for child processes; in this project that variable
    # is the user's override (a team server), so it goes back to what the user set, or to unset.
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    experiment = mlflow.set_experiment(name)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client = mlflow.MlflowClient(uri)
        try:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        except mlflow.exceptions.MlflowException:
            # Two trainings starting at once on a new server both set it; the second insert is refused.
            if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment.experiment_id).tags:
                raise
    if (db := sqlite_file(uri)) is not None:
        write_ahead(db)
    return experiment.experiment_id


def write_ahead(db: Path) -> bool:
    """Put an embedded SQLite store in write-ahead-log mode, once; whether it is in that mode now.

    MLflow leaves SQLite in its default rollback-journal mode, where every commit syncs the database and its
    journal and a reader (``mlflow ui``) blocks the writer. In WAL mode a commit appends to one log: logging
    a trial's child run (three commits) took about a third less here (24 → 15 ms, 38 → 28 ms on a busy
    machine), and readers no longer block. The mode is stored in the file, so it is set once and holds for
    every later connection, MLflow's included.
    WAL needs every process on the same host (https://sqlite.org/wal.html), true of a file in the project;
    a team shares a server instead. A store another process holds open is left as it is, and works as before.
    """
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1.0)) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error:
        return False
    return mode == "wal"


def browse_hint(uri: str) -> str:
    """How to look at the runs in ``uri``: the server's own URL, or the ``mlflow ui`` command for a local store.

    A password in the URI is masked (``make run`` prints this line, and CI keeps its logs); the hint says so.
    """
    shown = shown_uri(uri)
    masked = "  (password masked: put yours back)" if shown != uri else ""
    if uri.startswith(("http://", "https://")):
        return f"browse: {shown}{masked}"
    return f"browse: {_mlflow_command()} ui --backend-store-uri {shown}  (then open http://127.0.0.1:5000){masked}"


def _mlflow_command() -> str:
    """MLflow's CLI beside this interpreter (``.venv/bin/mlflow``: it works without activating the venv)."""
    script = Path(sys.executable).parent / "mlflow"
    if not script.is_file():
        return "mlflow"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def git_commit() -> str:
    """The commit being trained, with ``-dirty`` when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.strip() + ("-dirty" if dirty.strip() else "")
