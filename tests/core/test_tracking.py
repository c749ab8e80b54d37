"""The embedded tracking store: write-ahead logging set once, and a store another process holds left as it is."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from core import tracking
from tests.conftest import foreign_sqlite


def journal_mode(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_new_sqlite_store_is_put_in_wal_mode_and_logs_as_before(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    experiment_id = tracking.use_experiment(uri, "wal")

    assert journal_mode(db) == "wal"
    client = MlflowClient(uri)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "rmse", 2.5)
    client.set_terminated(run.info.run_id)
    # A second process-like reader, opened fresh, sees the committed run: nothing waits in the log unread.
    assert MlflowClient(uri).get_run(run.info.run_id).data.metrics == {"rmse": 2.5}
    assert tracking.use_experiment(uri, "wal") == experiment_id  # again: the mode holds, the experiment is found


def test_a_store_held_open_by_a_reader_keeps_its_mode_and_still_works(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)  # a store made before this change: SQLite's default mode
    experiment_id = client.create_experiment("held", tags={tracking.EXPERIMENT_KIND_TAG: tracking.MODEL_TRAINING})
    assert journal_mode(db) == "delete"

    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM experiments").fetchone()  # a shared lock, as `mlflow ui` reading
        assert tracking.write_ahead(db) is False
        assert tracking.use_experiment(uri, "held") == experiment_id
        reader.execute("COMMIT")

    assert journal_mode(db) == "delete"
    run = client.create_run(experiment_id)  # and it logs as before
    client.set_terminated(run.info.run_id)
    assert tracking.write_ahead(db) is True  # once nobody holds it
    assert journal_mode(db) == "wal"


def test_a_file_that_is_not_a_database_is_reported_not_raised(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 100)

    assert tracking.write_ahead(text) is False
    assert text.read_text() == "not a database\n" * 100


def teardown_module() -> None:
    mlflow.set_tracking_uri(None)


def test_a_sqlite_uri_names_its_file_options_or_not_and_other_stores_none() -> None:
    assert tracking.sqlite_file("sqlite:///mlflow.db") == Path("mlflow.db")
    assert tracking.sqlite_file("sqlite:////srv/ml/mlflow.db?timeout=20") == Path("/srv/ml/mlflow.db")
    assert tracking.sqlite_file("http://127.0.0.1:5000") is None
    assert tracking.sqlite_file("file:./mlruns") is None


def test_a_sqlite_store_in_a_missing_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}?timeout=20"
    with pytest.raises(tracking.UserError, match=r"^MLflow tracking store .*: folder .*nowhere does not exist$"):
        tracking.check_reachable(uri)
    assert not (tmp_path / "nowhere").exists()
    tracking.check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")  # an existing folder is fine


@pytest.mark.parametrize("damage", ["text", "folder", "truncated-header", "damaged-page"])
def test_a_store_file_sqlite_cannot_read_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "mlflow.db"
    if damage == "folder":
        db.mkdir()
    elif damage == "text":
        db.write_text("hello\n")
    elif damage == "damaged-page":  # the header and schema read fine; a table's page past them does not
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE t (x)")
            conn.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 500)
            conn.commit()
        data = bytearray(db.read_bytes())
        data[-4096 + 8:-4096 + 40] = b"\xff" * 32  # the last page's cell pointers
        db.write_bytes(bytes(data))
    else:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
        db.write_bytes(db.read_bytes()[:50])  # the 100-byte header cut short
    before = db.read_bytes() if db.is_file() else None
    with pytest.raises(tracking.UserError, match=r"^MLflow tracking store sqlite:///.*mlflow\.db: .*(folder|SQLite|damaged \(SQLite's quick check: On tree page)"):
        tracking.check_reachable(f"sqlite:///{db}")
    assert (db.read_bytes() if db.is_file() else None) == before, "checked read-only"


def test_a_readable_store_file_passes_and_is_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    before = db.read_bytes()
    tracking.check_reachable(f"sqlite:///{db}")
    assert db.read_bytes() == before


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000\n", "sqlite:///mlflow.db\r", " sqlite:///mlflow.db",
                                 "http://h\tst"])
def test_a_uri_with_a_trailing_newline_or_a_control_character_is_refused_naming_where_it_came_from(
        monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(tracking.UserError, match=r"^MLFLOW_TRACKING_URI .* has surrounding spaces or a control"):
        tracking.tracking_uri("sqlite:///mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(tracking.UserError, match=r"^mlflow\.tracking_uri "):
        tracking.tracking_uri(uri)
    assert tracking.tracking_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("uri", "message"), [
    ("http://[::1", r"is not a valid URL \(Invalid IPv6 URL\)"),
    ("http://127.0.0.1:notaport", r"is not a valid URL"),
    ("sqlite:mlflow.db", r"a SQLite store is sqlite:///PATH \(three slashes"),
    ("postgresql://u:secret@127.0.0.1:{port}/mlflow", r"127\.0\.0\.1:\d+ is unreachable"),
    ("mysql+pymysql://127.0.0.1:{port}/mlflow", r"127\.0\.0\.1:\d+ is unreachable"),
])
def test_a_uri_mlflow_would_fail_on_late_or_slowly_is_one_line_at_once(uri: str, message: str) -> None:
    uri = uri.format(port=_closed_port())
    started = time.monotonic()
    with pytest.raises(tracking.UserError, match=message) as err:
        tracking.check_reachable(uri, timeout_s=2.0)
    assert time.monotonic() - started < 5, "the SQL store's own retries take over a minute"
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


def test_a_reader_refuses_a_sqlite_file_that_is_not_there_and_creates_none(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlfow.db'}"  # a typo of mlflow.db
    with pytest.raises(tracking.UserError, match=r"mlfow\.db does not exist \(train first: make train"):
        tracking.check_reachable(uri, must_exist=True)
    tracking.check_reachable(uri)  # training may create it
    assert not (tmp_path / "mlfow.db").exists()


def test_a_database_server_that_answers_passes(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        tracking.check_reachable(f"postgresql://u:p@127.0.0.1:{server.getsockname()[1]}/mlflow")
    assert tracking.database_server("postgresql+psycopg2://u:p@db.example.com/mlflow") == ("db.example.com", 5432)
    assert tracking.database_server("sqlite:///mlflow.db") is None
    assert tracking.database_server("http://127.0.0.1:5000") is None


@pytest.mark.parametrize(("uri", "shown"), [
    ("postgresql://mlflow:s3cret@db.internal:5432/mlflow", "postgresql://mlflow:***@db.internal:5432/mlflow"),
    ("https://user:s3cret@mlflow.example.com", "https://user:***@mlflow.example.com"),
    ("postgresql://mlflow:s3cret@[::1/mlflow", "postgresql://***@[::1/mlflow"),
])
def test_the_browse_hint_never_prints_a_password(uri: str, shown: str) -> None:
    hint = tracking.browse_hint(uri)
    assert "s3cret" not in hint and shown in hint and hint.endswith("(password masked: put yours back)")


def test_the_browse_hint_of_a_store_without_a_password_is_the_uri_itself() -> None:
    assert tracking.browse_hint("http://127.0.0.1:5000") == "browse: http://127.0.0.1:5000"
    assert tracking.browse_hint("sqlite:///mlflow.db").endswith(
        "ui --backend-store-uri sqlite:///mlflow.db  (then open http://127.0.0.1:5000)")


@pytest.mark.parametrize("uri", ["http://user:s3cret@127.0.0.1:1", "postgresql://mlflow:s3cret@127.0.0.1:1/mlflow",
                                 "http://user:s3cret@127.0.0.1:notaport"])
def test_an_unreachable_store_is_named_without_its_password(uri: str) -> None:
    with pytest.raises(tracking.UserError) as raised:
        tracking.check_reachable(uri, timeout_s=1)
    assert "s3cret" not in str(raised.value) and ":***@127.0.0.1" in str(raised.value)


def test_a_store_path_that_is_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    # Given a FIFO where the store file should be (SQLite's open would wait for a writer forever)
    fifo = tmp_path / "mlflow.db"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            tracking.check_reachable(f"sqlite:///{fifo}")
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    checker = threading.Thread(target=check, daemon=True)
    checker.start()
    checker.join(timeout=10)
    if checker.is_alive():  # let the blocked open return, so the thread ends with the test
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not checker.is_alive() and outcome, "check_reachable waited on the FIFO"
    assert isinstance(outcome[0], tracking.UserError)
    assert re.fullmatch(r"MLflow tracking store sqlite:///.*mlflow\.db: .*mlflow\.db is not a regular file "
                        r"\(a FIFO, device or socket\)", str(outcome[0]))


def test_a_store_path_that_is_a_device_is_refused_in_one_line() -> None:
    # /dev/null reads as an empty database: MLflow went on to create its tables there and failed with a traceback
    with pytest.raises(tracking.UserError, match=r"^MLflow tracking store sqlite:////dev/null: /dev/null is not a "
                                                 r"regular file"):
        tracking.check_reachable("sqlite:////dev/null")


@pytest.mark.parametrize("content", ["zero-bytes", "other-tables"])
def test_a_reader_refuses_a_sqlite_file_that_is_no_mlflow_store_and_leaves_it_as_it_was(tmp_path: Path,
                                                                                          content: str) -> None:
    # Given a 0-byte mlflow.db (touched, or left by a failed copy) or another program's database
    db = foreign_sqlite(tmp_path / "mlflow.db", content)
    before = db.read_bytes()
    # When a command that only reads the store checks it, then it is refused and not changed
    what = "an empty database" if content == "zero-bytes" else "a database without MLflow's tables"
    with pytest.raises(tracking.UserError, match=rf"mlflow\.db is {what}, not an MLflow store; left as it is"):
        tracking.check_reachable(f"sqlite:///{db}", must_exist=True)
    assert db.read_bytes() == before


def test_a_reader_takes_a_real_mlflow_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # MLflow makes its tables
    tracking.check_reachable(uri, must_exist=True)
