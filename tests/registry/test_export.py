"""Export of a registered version as model.tar.gz: layout, reproducibility, atomicity, S3 upload (moto)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from registry import export, promote
from serving import bundle
from serving.profile import read_profile

# Every test here uses the session's real training and MLflow store.
pytestmark = pytest.mark.slow


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_writes_the_sagemaker_layout_with_metadata(store, tmp_path):
    out = tmp_path / "model.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 0
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["booster.ubj", "metadata.json", "profile.json", "schema.json"]
    metadata = bundle.verify(bundle.unpack(out, tmp_path / "unpacked"))
    mv = store.client().get_model_version(store.name, store.good[0])
    assert metadata["registered_name"] == store.name
    assert metadata["version"] == store.good[0]
    assert metadata["run_id"] == mv.run_id
    assert metadata["data_hash"] == store.data_hash
    assert metadata["git_commit"] == mv.tags["git_commit"]
    assert set(metadata["metrics"]) == {"test_rmse", "test_mse", "test_mae", "test_r2"}
    assert metadata["metrics"]["test_rmse"] == pytest.approx(float(mv.tags["test_rmse"]), abs=1e-6)
    assert set(metadata["files"]) == {"booster.ubj", "schema.json", "profile.json"}, "checksums cover the profile"
    assert read_profile(tmp_path / "unpacked" / "profile.json")["features"], "the training's reference profile"


def test_a_version_trained_before_profiles_existed_still_exports(store, damaged, tmp_path):
    # Given a version whose artifacts have no profile.json (as every version registered before it existed)
    damaged(store.good[1], "profile.json", None)
    out = tmp_path / "model.tar.gz"
    assert export.main(store.args("--version", store.good[1], "--out", str(out))) == 0
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["booster.ubj", "metadata.json", "schema.json"]


def test_export_defaults_to_production_and_params_path(store, capsys):
    assert promote.main(store.args("--version", store.good[1], "--no-export")) == 0
    assert export.main(store.args()) == 0
    out = store.params.export.path
    assert out.is_file()
    with tarfile.open(out) as tar:
        metadata = json.load(tar.extractfile("metadata.json"))
    assert metadata["version"] == store.good[1]


def test_re_export_is_byte_identical(store, tmp_path):
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(first))) == 0
    assert export.main(store.args("--version", store.good[0], "--out", str(second))) == 0
    assert _sha(first) == _sha(second)


def test_exported_at_is_the_registration_time_or_source_date_epoch(store, tmp_path, monkeypatch):
    out = tmp_path / "m.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 0
    created = store.client().get_model_version(store.name, store.good[0]).creation_timestamp
    metadata = bundle.verify(bundle.unpack(out, tmp_path / "a"))
    assert metadata["exported_at"] == datetime.fromtimestamp(created // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 0
    assert bundle.verify(bundle.unpack(out, tmp_path / "b"))["exported_at"] == "2023-11-14T22:13:20Z"


def test_promotion_exports_by_default(store):
    assert promote.main(store.args("--version", store.good[0])) == 0
    with tarfile.open(store.params.export.path) as tar:
        assert json.load(tar.extractfile("metadata.json"))["version"] == store.good[0]


def test_interrupted_export_leaves_the_existing_tarball_and_no_temp_files(store, tmp_path, monkeypatch):
    # Given an exported tarball of one version
    out = tmp_path / "dist" / "model.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out))) == 0
    before = _sha(out)
    # When exporting another version is interrupted after the first file went into the archive
    real_addfile = tarfile.TarFile.addfile
    calls = []

    def addfile_then_interrupt(self, tarinfo, fileobj=None):
        real_addfile(self, tarinfo, fileobj)
        calls.append(tarinfo.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "addfile", addfile_then_interrupt)
    code = export.main(store.args("--version", store.good[1], "--out", str(out)))
    # Then the command stops, the old tarball is intact and nothing half-written is left beside it
    assert code == 130
    assert calls, "the interruption must happen mid-write"
    assert _sha(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.tar.gz"]


def test_an_export_of_production_that_a_promotion_overtakes_ends_holding_the_new_production(store, tmp_path,
                                                                                             monkeypatch, capsys):
    # Given production = the first version, and an export of production
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    out = tmp_path / "model.tar.gz"
    real_export, client = export.export_version, store.client()

    def promoted_meanwhile(registry, mv, path):
        # When a promotion moves production while the first export is downloading (its own export done first)
        if not out.exists():
            client.set_registered_model_alias(store.name, "production", store.good[1])
            real_export(registry, client.get_model_version(store.name, store.good[1]), path)
        return real_export(registry, mv, path)

    monkeypatch.setattr(export, "export_version", promoted_meanwhile)
    assert export.main(store.args("--out", str(out))) == 0
    # Then the tarball is not left holding the version production no longer names
    with tarfile.open(out) as tar:
        assert str(json.load(tar.extractfile("metadata.json"))["version"]) == store.good[1]
    assert "moved to version" in capsys.readouterr().out


def test_export_to_s3_uploads_the_same_bytes(store, tmp_path, monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    out = tmp_path / "model.tar.gz"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        code = export.main(store.args("--version", store.good[0], "--out", str(out),
                                      "--s3-uri", "s3://models/student-score/"))
        assert code == 0
        body = s3.get_object(Bucket="models", Key="student-score/model.tar.gz")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == _sha(out)


def test_upload_to_a_missing_bucket_is_one_line_and_keeps_the_local_file(store, tmp_path, monkeypatch, capsys):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    out = tmp_path / "model.tar.gz"
    with mock_aws():
        code = export.main(store.args("--version", store.good[0], "--out", str(out),
                                      "--s3-uri", "s3://no-such-bucket/m.tar.gz"))
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "upload to s3://no-such-bucket/m.tar.gz failed" in err
    assert out.is_file()


@pytest.mark.parametrize("uri", ["https://bucket/key", "s3:///key", "bucket/key"])
def test_malformed_s3_uri_is_refused_before_anything_is_written(store, tmp_path, capsys, uri):
    out = tmp_path / "model.tar.gz"
    assert export.main(store.args("--version", store.good[0], "--out", str(out), "--s3-uri", uri)) == 1
    assert "--s3-uri must look like s3://bucket/key" in capsys.readouterr().err
    assert not out.exists()
