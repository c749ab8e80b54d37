"""Bad input gives one clear line, a non-zero exit, and leaves the registry and any tarball unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from registry import export, promote, release
from tests.conftest import foreign_sqlite

# Every test here uses the session's real training and MLflow store.
pytestmark = pytest.mark.slow


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: "), f"expected one error line, got:\n{err}"
    assert "Traceback" not in err
    return err


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def existing_tarball(store):
    """A production version exported to export.path, as a release would leave it."""
    assert promote.main(store.args("--version", store.good[0])) == 0
    path = store.params.export.path
    return path, _sha(path)


@pytest.mark.parametrize("command", [promote.main, export.main])
def test_unknown_model_name(store, tmp_path, capsys, command):
    raw = yaml.safe_load(store.params_file.read_text())
    raw["model"]["name"] = "no-such-model"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    assert command(["--params", str(params_file)]) == 1
    assert "registered model 'no-such-model' not found" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", [promote.main, export.main])
def test_unknown_version(store, capsys, command, existing_tarball):
    path, digest = existing_tarball
    before = store.snapshot()
    assert command(store.args("--version", "99")) == 1
    assert f"version 99 of model '{store.name}' not found" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before
    assert _sha(path) == digest


def test_export_without_production_alias(store, capsys):
    assert export.main(store.args()) == 1
    assert "has no 'production' alias yet" in _one_line(capsys.readouterr().err)
    assert not store.params.export.path.exists()


def test_rollback_without_production_alias(store, capsys):
    before = store.snapshot()
    assert promote.main(store.args("--rollback")) == 1
    assert "has no 'production' alias yet" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before


def test_rollback_without_previous_alias(store, capsys, existing_tarball):
    path, digest = existing_tarball
    before = store.snapshot()
    capsys.readouterr()
    assert promote.main(store.args("--rollback")) == 1
    assert "no 'previous' version to roll back to" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before
    assert _sha(path) == digest


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("argv", [["--history"], ["--rollback"], []], ids=["history", "rollback", "promote"])
def test_unreachable_registry_fails_fast_in_one_line(store, monkeypatch, capsys, argv):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    code = promote.main(store.args(*argv))
    assert code == 1
    assert time.monotonic() - started < 10, "MLflow's own retries must not run"
    assert "is unreachable" in _one_line(capsys.readouterr().err)


def test_a_store_file_that_is_not_a_database_fails_in_one_line(store, monkeypatch, capsys, tmp_path):
    (tmp_path / "notes.db").write_text("hello\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'notes.db'}")
    assert promote.main(store.args("--dry-run")) == 1
    assert "cannot be read as a SQLite database (file is not a database)" in _one_line(capsys.readouterr().err)
    assert (tmp_path / "notes.db").read_text() == "hello\n"


@pytest.mark.parametrize("command", [promote.main, export.main])
def test_a_store_with_a_damaged_page_fails_in_one_line_and_is_not_written(store, monkeypatch, capsys, tmp_path,
                                                                          command):
    # A copy of the session's real store whose experiments table has a damaged page: MLflow alone reads no
    # "Default" experiment there, fails to insert one (a unique-key clash) and raises a SQLAlchemy traceback.
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(store.uri.removeprefix("sqlite:///")) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'experiments'").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[(root - 1) * page_size + 8:(root - 1) * page_size + 64] = b"\xff" * 56  # its cell pointers
    db.write_bytes(bytes(data))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert command(store.args("--history") if command is promote.main else store.args()) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"{db} is damaged (SQLite's quick check: On tree page {root} " in err, err
    assert db.read_bytes() == bytes(data), "checked read-only"


@pytest.mark.parametrize("content", ["zero-bytes", "other-tables"])
@pytest.mark.parametrize("command", [promote.main, export.main, release.main])
def test_a_sqlite_file_that_is_no_mlflow_store_is_refused_and_left_byte_identical(store, monkeypatch, capsys,
                                                                                 tmp_path, content, command):
    # Given MLFLOW_TRACKING_URI naming a 0-byte mlflow.db or another program's SQLite database
    db = foreign_sqlite(tmp_path / "mlflow.db", content)
    before = db.read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    # When a registry command opens it (MLflow created its ~60 tables there, then said the model was missing)
    argv = {promote.main: ["--history"], export.main: [], release.main: ["--out", str(tmp_path / "v.txt")]}[command]
    assert command(store.args(*argv)) == 1
    # Then one line says what the file is, and the file is exactly as it was
    assert "not an MLflow store; left as it is" in _one_line(capsys.readouterr().err)
    assert db.read_bytes() == before, "no MLflow tables created in it"


def test_a_locked_store_is_one_line_without_mlflows_error_log(store, monkeypatch, capsys, tmp_path):
    # Given a copy of the store whose writes another connection holds (reads still pass: the check passes)
    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(store.uri.removeprefix("sqlite:///"))) as source, \
            contextlib.closing(sqlite3.connect(db)) as copy:
        source.backup(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        # When a promotion's first write waits out SQLite's busy timeout (MLflow's 20 s)
        code = promote.main(store.args("--version", store.good[0], "--no-export"))
        holder.execute("ROLLBACK")
    # Then our line alone: MLflow logged the SQL error and its traceback first (66 lines)
    assert code == 1
    assert "database is locked" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("uri", "message"), [
    ("./mlruns", "registry ./mlruns: The filesystem tracking backend (e.g., './mlruns') is in maintenance mode"),
    ("sqlite:///{root}/mlfow.db", "mlfow.db does not exist (train first: make train"),
    ("sqlite:///{root}/mlflow.db\r", "has surrounding spaces or a control character"),
    ("sqlite:mlflow.db", "a SQLite store is sqlite:///PATH"),
], ids=["file-store", "mistyped-file", "crlf-env-file", "two-slashes-short"])
@pytest.mark.parametrize("command", [promote.main, export.main])
def test_a_tracking_uri_mlflow_cannot_use_is_one_line_and_creates_no_store(store, monkeypatch, capsys, tmp_path,
                                                                          uri, message, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(root=tmp_path))
    assert command(store.args("--history") if command is promote.main else store.args()) == 1
    assert message in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == [], "nothing made: no empty store, no mlruns folder"


def test_export_with_unreachable_registry(store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    assert export.main(store.args()) == 1
    assert "is unreachable" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("content", "message"), [
    (None, "artifacts/booster.ubj is missing from the artifact store"),
    (b"garbled bytes, not a booster", "corrupt model files"),
], ids=["missing", "garbled"])
def test_damaged_candidate_is_refused_before_any_change(store, damaged, capsys, existing_tarball, content,
                                                       message):
    path, digest = existing_tarball
    before = store.snapshot()
    damaged(store.good[1], "booster.ubj", content)
    capsys.readouterr()
    assert promote.main(store.args("--version", store.good[1], "--force")) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"version {store.good[1]} of '{store.name}'" in err and message in err
    assert store.snapshot() == before
    assert _sha(path) == digest


def test_corrupt_schema_is_refused_by_export(store, damaged, capsys, existing_tarball):
    path, digest = existing_tarball
    damaged(store.good[0], "schema.json", b"{not json")
    capsys.readouterr()
    assert export.main(store.args()) == 1
    assert "corrupt model files" in _one_line(capsys.readouterr().err)
    assert _sha(path) == digest
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temp file left behind"


@pytest.mark.parametrize("seed", [12, 39, 64])  # corruptions that crashed XGBoost's reader (SIGSEGV) before
def test_a_booster_that_would_crash_xgboost_is_one_line_from_export(store, damaged, existing_tarball, seed):
    import os
    import random
    import subprocess
    import sys

    from tests.registry.conftest import REPO

    path, digest = existing_tarball
    data, rng = bytearray(store.artifact_file(store.good[0], "booster.ubj").read_bytes()), random.Random(seed)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    damaged(store.good[0], "booster.ubj", bytes(data))

    # In a child process: were the check to miss, the crash must fail this test, not end the session.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-m", "registry.export", *store.args()], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 1, done.stderr[-2000:]
    assert "not a valid XGBoost model" in _one_line(done.stderr)
    assert _sha(path) == digest


def test_damaged_production_blocks_the_gate_but_not_force(store, damaged, capsys):
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    damaged(store.good[0], "booster.ubj", b"\x00" * 64)
    before = store.snapshot()
    capsys.readouterr()
    assert promote.main(store.args("--version", store.good[1], "--no-export")) == 1
    assert "use --force" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before
    assert promote.main(store.args("--version", store.good[1], "--no-export", "--force")) == 0
    assert store.aliases() == {"production": store.good[1], "previous": store.good[0]}


@pytest.mark.parametrize("command", [promote.main, export.main, release.main])
def test_a_version_past_the_registrys_integer_column_is_a_usage_error(store, capsys, command, existing_tarball,
                                                                     tmp_path):
    # MLflow keeps version numbers in a 32-bit column: 2**31 was answered with SQLite's overflow message
    path, digest = existing_tarball
    before = store.snapshot()
    extra = ["--out", str(tmp_path / "release.json")] if command is release.main else []
    assert command(store.args("--version", str(2**31), *extra)) == 2
    assert "is not in the range 1<=x<=2147483647" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before
    assert _sha(path) == digest
    assert not (tmp_path / "release.json").exists()


@pytest.mark.parametrize("argv", [
    ["--rollback", "--version", "1"], ["--rollback", "--force"], ["--history", "--force"], ["--version", "0"],
])
def test_conflicting_or_invalid_options_are_usage_errors(store, capsys, argv):
    before = store.snapshot()
    assert promote.main(store.args(*argv)) == 2
    _one_line(capsys.readouterr().err)
    assert store.snapshot() == before


def test_missing_params_file(store, tmp_path, capsys):
    assert export.main(["--params", str(tmp_path / "nope.yaml")]) == 1
    assert "file not found" in _one_line(capsys.readouterr().err)


def _with_export_path(store, tmp_path, path) -> list[str]:
    raw = yaml.safe_load(store.params_file.read_text())
    raw["export"]["path"] = str(path)
    params_file = tmp_path / "params-export.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    return ["--params", str(params_file)]


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_an_export_path_that_cannot_be_written_is_refused_before_any_alias_moves(store, tmp_path, capsys, action):
    # Given production and previous set, and an export path that is a folder
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    assert promote.main(store.args("--version", store.good[1], "--no-export", "--force")) == 0
    folder = tmp_path / "a-folder"
    folder.mkdir()
    before = store.snapshot()
    capsys.readouterr()
    # When a promotion or a rollback would export there
    argv = ["--version", store.weak, "--force"] if action == "promote" else ["--rollback"]
    assert promote.main([*_with_export_path(store, tmp_path, folder), *argv]) == 1
    # Then it is refused in one line and nothing changed: aliases, gate tags, history
    assert f"cannot write {folder}: it is a directory" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", [promote.main, export.main])
def test_an_export_path_that_is_a_fifo_is_refused_not_replaced(store, tmp_path, capsys, command):
    # A FIFO (or, as root, /dev/null) at the path: renaming the tarball over it replaced the node itself.
    fifo = tmp_path / "model.tar.gz"
    os.mkfifo(fifo)
    before = store.snapshot()
    argv = ["--version", store.good[0]]
    assert command([*_with_export_path(store, tmp_path, fifo), *argv]) == 1
    assert f"cannot write {fifo}: not a regular file" in _one_line(capsys.readouterr().err)
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the FIFO is still a FIFO"
    assert store.snapshot() == before


@pytest.mark.parametrize("kind", ["text", "fifo"])
def test_an_export_path_that_is_not_a_tarball_is_refused_when_only_the_export_is_left(store, tmp_path, capsys,
                                                                                       kind):
    # Given the version already in production: that path went straight to the export, unchecked, and replaced
    # whatever stood at export.path (the tracking store itself, a text file, a FIFO) with exit 0
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    target = tmp_path / "notes.txt"
    target.write_text("mine\n") if kind == "text" else os.mkfifo(target)
    before = store.snapshot()
    capsys.readouterr()
    assert promote.main([*_with_export_path(store, tmp_path, target), "--version", store.good[0]]) == 1
    assert f"cannot write {target}" in _one_line(capsys.readouterr().err)
    assert (target.read_text() == "mine\n") if kind == "text" else stat.S_ISFIFO(target.stat().st_mode)
    assert store.snapshot() == before


def test_a_dry_run_of_the_version_already_in_production_writes_no_tarball(store, capsys):
    # Given production set without an export (so the tarball is missing)
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    path = store.params.export.path
    assert not path.exists()
    capsys.readouterr()
    # When a dry run names that version, then it says what it would do and writes nothing
    assert promote.main(store.args("--version", store.good[0], "--dry-run")) == 0
    assert "dry run: would export" in capsys.readouterr().out
    assert not path.exists()
    assert not path.parent.exists() or not any(path.parent.glob(f".{path.name}*")), "no temp file either"


@pytest.mark.parametrize("data", ["missing.csv", "a-folder"])
@pytest.mark.parametrize("command", ["promote", "release"])
def test_a_data_file_that_cannot_be_read_is_one_line(store, tmp_path, capsys, command, data):
    # Given params whose data file is missing (a fresh clone before dvc pull) or is a folder
    (tmp_path / "a-folder").mkdir()
    raw = yaml.safe_load(store.params_file.read_text())
    raw["data"]["path"] = str(tmp_path / data)
    params_file = tmp_path / "params-data.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    before = store.snapshot()
    out = tmp_path / "release" / "version.txt"
    # When the gate runs on it
    argv = ["--params", str(params_file), *(["--dry-run"] if command == "promote" else ["--out", str(out)])]
    code = promote.main(argv) if command == "promote" else release.main(argv)
    # Then one line names the file, and nothing changed or was written
    assert code == 1
    err = _one_line(capsys.readouterr().err)
    assert str(tmp_path / data) in err and ("data file not found" in err or "cannot read the data file" in err)
    assert store.snapshot() == before and not out.exists()


def test_a_release_out_path_under_a_file_is_one_line(store, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert release.main(store.args("--out", str(tmp_path / "a-file" / "version.txt"))) == 1
    assert "cannot write" in _one_line(capsys.readouterr().err)


def test_a_corrupt_reference_profile_is_refused_by_export(store, damaged, capsys, existing_tarball):
    path, digest = existing_tarball
    damaged(store.good[0], "profile.json", b'{"format": "not a profile"}')
    capsys.readouterr()
    assert export.main(store.args()) == 1
    err = _one_line(capsys.readouterr().err)
    assert "corrupt model files" in err and "profile" in err
    assert _sha(path) == digest


@pytest.mark.parametrize("module", ["registry.export", "registry.promote"])
@pytest.mark.parametrize("epoch", ["soon", "1e3", "99999999999999999"])
def test_a_source_date_epoch_that_is_no_date_stops_a_fresh_process_in_one_line(store, existing_tarball, epoch,
                                                                                 module):
    # numpy reads SOURCE_DATE_EPOCH while it is imported (f2py) and raised a traceback before any command ran;
    # only a fresh interpreter shows it (this one imported numpy long ago).
    path, digest = existing_tarball
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch, "MLFLOW_TRACKING_URI": store.uri}
    done = subprocess.run([sys.executable, "-m", module, *store.args()], env=env, capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(export.__file__).resolve().parents[1])
    assert done.returncode == 1
    assert f"SOURCE_DATE_EPOCH must be whole seconds since 1970 (before year 10000), got '{epoch}'" in \
        _one_line(done.stderr)
    assert _sha(path) == digest


@pytest.mark.parametrize("epoch", ["soon", "-5", "99999999999999999"])
def test_a_source_date_epoch_that_is_no_date_is_one_line(store, monkeypatch, capsys, existing_tarball, epoch):
    path, digest = existing_tarball
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    capsys.readouterr()
    assert export.main(store.args()) == 1
    assert "SOURCE_DATE_EPOCH must be whole seconds since 1970" in _one_line(capsys.readouterr().err)
    assert _sha(path) == digest


@pytest.mark.parametrize("epoch", [" 5", "5\n", "+5", "1_000", "\u0663", "\uff15"],
                         ids=["space", "newline", "plus", "underscore", "arabic-indic", "fullwidth"])
def test_a_source_date_epoch_int_would_take_but_is_not_ascii_digits_is_refused_naming_it(
        store, monkeypatch, capsys, existing_tarball, epoch):
    # int() strips spaces and takes "+", "_" and any script's digits; the reproducible-builds spec says digits
    path, digest = existing_tarball
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    capsys.readouterr()
    assert export.main(store.args()) == 1
    assert f"SOURCE_DATE_EPOCH must be whole seconds since 1970 (before year 10000), got {epoch!r}" in \
        _one_line(capsys.readouterr().err)
    assert _sha(path) == digest


def test_a_history_tag_that_is_not_ours_is_left_out_not_a_traceback(store, capsys):
    # Given a hand-made tag that looks numbered to str.isdigit() ("²") but is no number int() reads
    store.client().set_registered_model_tag(store.name, "history.²", '{"action": "promote"}')
    # When the history is shown and a promotion appends to it
    assert promote.main(store.args("--history")) == 0
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    # Then that tag is somebody else's: one entry, numbered 1, after the aliases moved
    capsys.readouterr()
    assert promote.main(store.args("--history")) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1 "), rows
    assert store.aliases() == {"production": store.good[0]}


@pytest.mark.parametrize("reason", ["ok\n3  2026-01-01T00:00:00Z  rollback  rollback  2  1  mallory", "\x1b[31mred",
                                    "x" * 1001, "é" * 200, "\U0001f680" * 100],
                         ids=["newline", "escape", "too-long", "too-long-stored-as-escapes", "emoji"])
def test_a_reason_that_would_forge_history_rows_or_overflow_a_tag_is_a_usage_error(store, capsys, reason):
    before = store.snapshot()
    assert promote.main(store.args("--version", store.good[0], "--force", "--reason", reason)) == 2
    err = capsys.readouterr().err
    assert "--reason" in err and "Traceback" not in err
    assert store.snapshot() == before, "nothing was promoted"


def test_a_version_whose_test_rmse_is_not_a_number_is_never_the_default_candidate(store, capsys):
    # Given the default candidate as the versions' test RMSE tags choose it
    assert promote.main(store.args("--dry-run")) == 0
    chosen = capsys.readouterr().out.strip().splitlines()[-1]
    client = store.client()
    original = client.get_model_version(store.name, store.weak).tags["test_rmse"]
    try:
        for bad in ("nan", "-inf", "inf"):
            # When the weak version's score is edited into something that is no score
            client.set_model_version_tag(store.name, store.weak, "test_rmse", bad)
            assert promote.main(store.args("--dry-run")) == 0
            # Then it is the worst, not a number that wins every comparison it loses
            assert capsys.readouterr().out.strip().splitlines()[-1] == chosen, bad
    finally:
        client.set_model_version_tag(store.name, store.weak, "test_rmse", original)


@pytest.mark.parametrize("damage", ["not-utf8", "a-folder"])
def test_a_data_dvc_that_cannot_be_read_is_one_line(store, capsys, damage):
    dvc_file = store.root / "data.dvc"
    original = dvc_file.read_bytes()
    before = store.snapshot()
    try:
        dvc_file.unlink()
        if damage == "a-folder":
            dvc_file.mkdir()
        else:
            dvc_file.write_bytes(b"outs:\n- md5: \xff\xfe\n")
        assert promote.main(store.args("--dry-run")) == 1
        err = _one_line(capsys.readouterr().err)
        assert "data.dvc: cannot read DVC's record of the data" in err
        assert store.snapshot() == before
    finally:
        if dvc_file.is_dir():
            dvc_file.rmdir()
        dvc_file.write_bytes(original)


def test_a_version_whose_artifact_folder_is_gone_says_so_in_one_line(store, capsys, tmp_path):
    folder = store.artifact_file(store.good[1], "booster.ubj").parent
    folder.rename(tmp_path / "moved")
    try:
        assert export.main(store.args("--version", store.good[1], "--out", str(tmp_path / "m.tar.gz"))) == 1
        err = _one_line(capsys.readouterr().err)
        assert "No such artifact" in err and "gone from the artifact store" in err, err
        assert not (tmp_path / "m.tar.gz").exists()
    finally:
        (tmp_path / "moved").rename(folder)


def _runless_version(store) -> str:
    """A version registered from a good version's files but with no training run, which MLflow allows."""
    client = store.client()
    source = client.get_model_version_download_uri(store.name, store.good[1])
    return client.create_model_version(store.name, source).version


def _purged_run_version(store) -> str:
    """A version of a good version's files whose training run was deleted and purged (``mlflow gc``)."""
    client = store.client()
    good = client.get_model_version(store.name, store.good[1])
    run = client.create_run(client.get_run(good.run_id).info.experiment_id)
    version = client.create_model_version(store.name, client.get_model_version_download_uri(store.name, good.version),
                                          run_id=run.info.run_id).version
    client.delete_run(run.info.run_id)
    done = subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", store.uri,
                           "--tracking-uri", store.uri, "--run-ids", run.info.run_id],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return version


@pytest.mark.parametrize(("make", "fragment"), [(_runless_version, "registered without a training run"),
                                                (_purged_run_version, "not found")], ids=["no run", "purged run"])
@pytest.mark.parametrize("argv", [["--force"], []], ids=["promote", "export"])
def test_a_version_whose_lineage_cannot_be_read_is_refused_before_anything_moves(
        store, capsys, existing_tarball, make, fragment, argv):
    path, digest = existing_tarball
    version = make(store)
    try:
        before = store.snapshot()
        capsys.readouterr()
        command = promote.main if argv else export.main
        assert command(store.args("--version", version, *argv)) == 1
        error = _one_line(capsys.readouterr().err)
        assert fragment in error and "is now production" not in error
        assert store.snapshot() == before, "the aliases must not move when the export cannot follow"
        assert _sha(path) == digest
    finally:
        store.client().delete_model_version(store.name, version)  # the session's store is shared
