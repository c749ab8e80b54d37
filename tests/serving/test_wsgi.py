"""Model loading in a worker: where the model comes from, and that a bad one never reports healthy."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from serving import bundle, layout, wsgi
from serving.layout import ModelError
from tests.serving.serving_helpers import build_model_dir


def _tar_only(model_tar: Path, tmp_path: Path) -> Path:
    model_dir = tmp_path / "opt_ml_model"
    model_dir.mkdir()
    shutil.copy(model_tar, model_dir / layout.TARBALL_FILE)
    return model_dir


def test_loads_an_unpacked_bundle(model_dir: Path) -> None:
    predictor, metadata = wsgi.load_model(model_dir)

    assert metadata["version"] == "7"
    assert predictor.self_test() == pytest.approx(predictor.schema.expected, abs=1e-4)


def test_loads_a_directory_holding_only_the_tarball_and_cleans_up(
        model_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile caches TMPDIR on first use

    _, metadata = wsgi.load_model(_tar_only(model_tar, tmp_path))

    assert metadata["registered_name"] == "student-score"
    assert list(scratch.iterdir()) == [], "the unpacked copy must be deleted once the model is in memory"


def test_refuses_a_tarball_with_a_wrong_checksum(model_dir: Path, tmp_path: Path) -> None:
    # metadata.json from the real bundle, but a different booster: what a corrupted upload looks like.
    tar_path = tmp_path / "opt_ml_model" / layout.TARBALL_FILE
    tar_path.parent.mkdir()
    other = build_model_dir(tmp_path / "other", expected_shift=0.0)
    (other / "booster.ubj").write_bytes((other / "booster.ubj").read_bytes() + b" ")
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, source in (("booster.ubj", other), ("schema.json", model_dir), ("metadata.json", model_dir)):
            data = (source / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with pytest.raises(ModelError, match=r"booster\.ubj: sha256 does not match"):
        wsgi.load_model(tar_path.parent)


def test_refuses_a_directory_without_metadata(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    (copy / layout.METADATA_FILE).unlink()

    with pytest.raises(ModelError, match="metadata.json not found"):
        wsgi.load_model(copy)


def test_refuses_a_model_whose_self_test_fails(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="self-test failed"):
        wsgi.load_model(build_model_dir(tmp_path / "m", expected_shift=5.0))


def test_refuses_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model found"):
        wsgi.load_model(tmp_path)


def test_app_of_an_unloadable_model_answers_503_with_the_reason(tmp_path: Path) -> None:
    app = wsgi.create(str(tmp_path), 1000)

    with app.test_client() as client:
        ping = client.get("/ping")
        invoke = client.post("/invocations", json=[{}])

    assert ping.status_code == 503
    assert "no model found" in ping.get_json()["error"]
    assert invoke.status_code == 503
    assert ping.headers["X-Model-Version"] == "unknown"


def test_app_of_a_model_failing_its_self_test_still_names_the_version(tmp_path: Path) -> None:
    app = wsgi.create(str(build_model_dir(tmp_path / "m", expected_shift=5.0)), 1000)

    with app.test_client() as client:
        ping = client.get("/ping")

    assert ping.status_code == 503
    assert "self-test failed" in ping.get_json()["error"]
    assert ping.headers["X-Model-Version"] == "7"


def test_trace_headers_survive_unprintable_metadata(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    meta = json.loads((copy / layout.METADATA_FILE).read_text())
    bundle.write_metadata(copy, {**meta, "registered_name": "bad\r\nX-Injected: 1", "data_hash": None})
    app = wsgi.create(str(copy), 1000)

    with app.test_client() as client:
        ping = client.get("/ping")

    assert ping.status_code == 200
    assert ping.headers["X-Model-Name"] == "bad??X-Injected: 1"
    assert "X-Injected" not in ping.headers
    assert ping.headers["X-Data-Hash"] == "unknown"
