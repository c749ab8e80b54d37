"""Owns the connection to MLflow: where the tracking store is, whether it answers, and the experiment to log to."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from core.cli import UserError

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


def tracking_uri(default: str) -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team server), else the params.yaml default (embedded SQLite)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def sqlite_file(uri: str) -> Path | None:
    """The database file of an embedded SQLite store's URI (``sqlite:///path[?options]``), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when a tracking server does not answer (MLflow itself would retry for minutes).

    Raises:
        UserError: an http(s) server whose /health does not answer, or a SQLite file in a missing folder, a
            folder where the file should be, or a file SQLite cannot read.
    """
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as reply:  # noqa: S310
                if reply.status != 200:
                    raise UserError(f"MLflow tracking server {uri} answered /health with {reply.status}")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"MLflow tracking server {uri} is unreachable ({reason})") from None
    elif (db := sqlite_file(uri)) is not None:
        folder = db.parent
        if not folder.is_dir():
            raise UserError(f"MLflow tracking store {uri}: folder {folder} does not exist")
        if db.is_dir():
            raise UserError(f"MLflow tracking store {uri}: {db} is a folder, not a database file")
        if db.exists():
            _check_sqlite(uri, db, timeout_s)


def _check_sqlite(uri: str, db: Path, timeout_s: float) -> None:
    """Refuse a store file SQLite cannot read (another file, a damaged header or page) before MLflow meets it.

    Read-only. A damaged page would otherwise reach MLflow as whatever its query made of it: a missing
    ``Default`` experiment it then fails to insert (a unique-key clash), a SQLAlchemy traceback. SQLite's
    ``quick_check`` reads every page once (https://sqlite.org/pragma.html#pragma_quick_check): about 3 ms for
    a 1 MB store here, 0.3 s for 180 MB; a store that size belongs on a tracking server (README "Team mode").
    """
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=timeout_s)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.Error as err:
        raise UserError(f"MLflow tracking store {uri}: {db} cannot be read as a SQLite database ({err})") from None
    if verdict != "ok":
        first = " ".join(line for line in verdict.splitlines() if not line.startswith("***"))
        raise UserError(f"MLflow tracking store {uri}: {db} is damaged (SQLite's quick check: {first}); "
                        f"restore it from a backup")


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
    """How to look at the runs in ``uri``: the server's own URL, or the ``mlflow ui`` command for a local store."""
    if uri.startswith(("http://", "https://")):
        return f"browse: {uri}"
    return f"browse: mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)"


def git_commit() -> str:
    """The commit being trained, with ``-dirty`` when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.strip() + ("-dirty" if dirty.strip() else "")
