"""Where an export may write: only a missing path or an earlier model tarball, checked before anything is written."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest
import yaml
from moto import mock_aws

from registry import export, promote

# Every test here uses the session's real training and MLflow store.
pytestmark = pytest.mark.slow


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def _with_export_path(store, tmp_path: Path, path: Path) -> list[str]:
    raw = yaml.safe_load(store.params_file.read_text())
    raw["export"]["path"] = str(path)
    params_file = tmp_path / "params-export.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    return ["--params", str(params_file)]


def _tar_gz(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("content", ["sqlite", "gzip", "tarball"])
def test_an_existing_file_that_is_not_a_model_tarball_is_not_replaced(store, tmp_path, capsys, content):
    # Given a tracking store (a copy of the real one), a gzip that is no tar, or a tarball of something else
    out = tmp_path / "target"
    if content == "sqlite":
        # Through SQLite, not shutil: closing another handle on the live store drops this process's locks on it.
        with contextlib.closing(sqlite3.connect(store.root / "mlflow.db")) as source, \
                contextlib.closing(sqlite3.connect(out)) as copy:
            source.backup(copy)
    else:
        out.write_bytes(gzip.compress(b"notes") if content == "gzip" else _tar_gz(**{"notes.txt": b"notes"}))
    before = _sha(out)
    # When a version is exported there
    code = export.main(store.args("--version", store.good[0], "--out", str(out)))
    # Then it is refused in one line and the file is as it was
    assert code == 1
    assert f"cannot write {out}: it exists and is not a model tarball" in _one_line(capsys.readouterr().err)
    assert _sha(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"], "no temp file left beside it"


def test_a_registered_versions_artifact_is_not_overwritten(store, damaged, capsys):
    # Given --out pointing into the artifact store (damaged() restores the file should the export overwrite it)
    booster = store.artifact_file(store.good[0], "booster.ubj")
    damaged(store.good[0], "booster.ubj", booster.read_bytes())
    before = _sha(booster)
    code = export.main(store.args("--version", store.good[1], "--out", str(booster)))
    assert code == 1
    assert "is not a model tarball" in _one_line(capsys.readouterr().err)
    assert _sha(booster) == before


def test_an_earlier_tarball_is_still_replaced(store, tmp_path):
    out = tmp_path / "model.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 0
    first = _sha(out)
    assert export.main(store.args("--version", store.good[1], "--out", str(out))) == 0
    assert _sha(out) != first


def test_promotion_refuses_an_export_path_holding_another_file_before_any_alias_moves(store, tmp_path, capsys):
    # Given export.path set to the params file itself
    params_copy = tmp_path / "params.yaml"
    shutil.copyfile(store.params_file, params_copy)
    argv = _with_export_path(store, tmp_path, params_copy)
    before, content = store.snapshot(), params_copy.read_bytes()
    capsys.readouterr()
    assert promote.main([*argv, "--version", store.good[0]]) == 1
    assert "is not a model tarball" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before and params_copy.read_bytes() == content


def test_a_symlinked_destination_is_refused(store, tmp_path, capsys):
    # Given link.tar.gz -> shared/model.tar.gz holding version good[0]
    target = tmp_path / "shared" / "model.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(target))) == 0
    before = _sha(target)
    link = tmp_path / "link.tar.gz"
    link.symlink_to(Path("shared") / "model.tar.gz")
    # When another version is exported to the link, then it is refused and both stay as they were
    assert export.main(store.args("--version", store.good[1], "--out", str(link))) == 1
    assert f"cannot write {link}: it is a symbolic link" in _one_line(capsys.readouterr().err)
    assert link.is_symlink() and _sha(target) == before


def test_an_over_long_file_name_is_one_line(store, tmp_path, capsys):
    out = tmp_path / f"{'a' * 300}.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 1
    assert "File name too long" in _one_line(capsys.readouterr().err)


def test_a_name_too_long_for_the_temp_file_is_refused_before_promotion_moves_an_alias(store, tmp_path, capsys):
    # Given an export.path of 245 characters: it can exist, but pack's temp name beside it (longer) cannot
    out = tmp_path / f"{'a' * 238}.tar.gz"
    argv = _with_export_path(store, tmp_path, out)
    before = store.snapshot()
    capsys.readouterr()
    # When a version is promoted (and exported), then it is refused before production moves
    assert promote.main([*argv, "--version", store.good[0]]) == 1
    assert f"cannot write {out}: File name too long" in _one_line(capsys.readouterr().err)
    assert store.snapshot() == before


def test_a_failed_export_creates_no_folders(store, tmp_path, capsys):
    out = tmp_path / "nd" / "a" / "b" / "m.tar.gz"
    assert export.main(store.args("--version", "99", "--out", str(out))) == 1
    _one_line(capsys.readouterr().err)
    assert not (tmp_path / "nd").exists()


def test_an_over_long_folder_to_create_is_refused_before_exporting(store, tmp_path, capsys):
    out = tmp_path / ("d" * 300) / "m.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 1
    assert "File name too long" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["/", "/.", ""], ids=["slash", "dot", "existing-folder"])
def test_an_out_path_that_names_a_folder_is_a_usage_error_and_writes_nothing(store, tmp_path, capsys, suffix):
    # Given --out dist/ (pathlib drops the slash: the export wrote a tarball named "dist"), or a folder itself
    folder = tmp_path / "dist"
    if not suffix:
        folder.mkdir()
    # When the export is asked to write there, then one line refuses it and nothing is written
    assert export.main(store.args("--version", store.good[0], "--out", f"{folder}{suffix}")) == 2
    assert "Invalid value for '--out': " in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == ([] if suffix else [folder])
    assert not folder.exists() or not any(folder.iterdir())


def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.mark.parametrize(("uri", "problem"), [
    ("s3://models/a#b", "'?' and '#' would start a query or fragment"),
    ("s3://models/k?versionId=3", "'?' and '#' would start a query or fragment"),
    ("s3://models:443/k", "a port is not part of a bucket name"),
    ("s3://Models/k", "'Models' is not a valid bucket name"),
    ("s3://user@models/k", "'user@models' is not a valid bucket name"),
    ("s3://192.168.1.1/k", "'192.168.1.1' is not a valid bucket name"),
    ("s3://models/" + "k" * 1100, "the key is longer than S3's 1024 bytes"),
])
def test_an_s3_uri_the_upload_would_not_honour_is_refused_before_anything_is_written(store, tmp_path, capsys,
                                                                                      monkeypatch, uri, problem):
    _fake_aws(monkeypatch)
    out = tmp_path / "model.tar.gz"
    with mock_aws():  # were the URI let through, the upload must still not reach the network
        assert export.main(store.args("--version", store.good[0], "--out", str(out), "--s3-uri", uri)) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"--s3-uri {uri!r}: {problem}" in err
    assert not out.exists()


@pytest.mark.parametrize(("out_name", "uri"), [
    ("model.tar.gz", "s3://models/caf\udce9/model.tar.gz"),   # a Latin-1 "café" in argv, surrogate-escaped
    ("caf\udce9.tar.gz", "s3://models/releases/"),            # the key ends in "/": the file's name completes it
], ids=["in-the-uri", "from-the-file-name"])
def test_an_s3_key_that_is_not_utf8_is_refused_before_anything_is_written(store, tmp_path, capsys, monkeypatch,
                                                                          out_name, uri):
    # Given a key S3 cannot hold (keys are UTF-8): the upload raised UnicodeEncodeError after the export
    _fake_aws(monkeypatch)
    out = tmp_path / out_name
    with mock_aws():
        code = export.main(store.args("--version", store.good[0], "--out", str(out), "--s3-uri", uri))
    # Then one line names the key, and no tarball was written
    assert code == 1
    assert "is not UTF-8 text (S3 keys are)" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("AWS_ENDPOINT_URL", "not a url", "Invalid endpoint"),
    ("AWS_MAX_ATTEMPTS", "x", "invalid literal"),
    ("AWS_RETRY_MODE", "bogus", "Invalid value"),
])
def test_an_aws_setting_boto3_refuses_is_one_line_before_exporting(store, tmp_path, capsys, monkeypatch,
                                                                     variable, value, reason):
    _fake_aws(monkeypatch)
    monkeypatch.setenv(variable, value)
    out = tmp_path / "model.tar.gz"
    with mock_aws():
        code = export.main(store.args("--version", store.good[0], "--out", str(out),
                                      "--s3-uri", "s3://models/m.tar.gz"))
    assert code == 1
    err = _one_line(capsys.readouterr().err)
    assert "cannot set up the S3 client" in err and reason in err
    assert not out.exists(), "nothing exported when the upload could never happen"
