"""A model that kills the worker loading it: the master stops the next workers from loading it again, cleans up
what the dead one unpacked, and the container says why on /ping (serving/load_guard.py)."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
import requests

from serving import bundle, layout, load_guard, wsgi
from tests.serving.serving_helpers import build_model_dir, running


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches TMPDIR on first use
    monkeypatch.setenv(load_guard.CRASHED_ENV, "")  # unset for the guard; whatever it sets is undone after
    return folder


def _die_loading(scratch: Path) -> int:
    """A child that starts loading (its mark and an unpack folder made) and is killed by a signal meanwhile."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        with load_guard.loading():
            (scratch / f"{load_guard.unpack_prefix()}x" / "booster.ubj").parent.mkdir()
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    return pid


def test_a_worker_that_dies_loading_stops_the_next_from_loading(scratch: Path, model_dir: Path) -> None:
    # Given a worker that died by a signal while loading
    pid = _die_loading(scratch)
    assert {p.name for p in scratch.iterdir()} == {f"serving-loading-{pid}", f"model-{pid}-x"}
    # When the master hears of its exit
    load_guard.worker_exited(pid)
    # Then what it left is gone, and the next worker serves 503 with the reason instead of loading
    assert list(scratch.iterdir()) == []
    ping = wsgi.create(str(model_dir), 1024).test_client().get("/ping")
    assert ping.status_code == 503
    assert f"a worker (pid {pid}) died while loading the model" in ping.get_json()["error"]


def test_a_worker_that_loaded_or_refused_the_model_leaves_nothing_to_act_on(scratch: Path, model_dir: Path) -> None:
    assert wsgi.create(str(model_dir), 1024).test_client().get("/ping").status_code == 200
    assert wsgi.create(str(scratch), 1024).test_client().get("/ping").status_code == 503  # no model: ModelError
    load_guard.worker_exited(os.getpid())
    assert list(scratch.iterdir()) == [] and load_guard.crashed() is None


def _tarball(tmp_path: Path) -> Path:
    """A sound model.tar.gz in a folder, as SageMaker mounts it at /opt/ml/model."""
    served = tmp_path / "opt_ml_model"
    served.mkdir()
    bundle.pack(build_model_dir(tmp_path / "model"), served / layout.TARBALL_FILE)
    return served


# Every process of the container gets this on its path: loading the booster dies by SIGSEGV in native code (a read
# of address 0), as XGBoost's reader does on some corrupt files the check does not know. A corrupt booster itself
# (test_booster_file's "vector leaves") is no stand-in here: whether XGBoost segfaults or raises on it depends on the
# heap, and in a gunicorn worker it once raised (CI, 12-05).
_NATIVE_CRASH = "import ctypes\nimport serving.booster_file as b\nb.check = lambda data: ctypes.string_at(0)\n"


@pytest.mark.slow
def test_the_container_answers_503_instead_of_a_crash_loop(tmp_path: Path) -> None:
    # Given a container whose every process dies natively while loading the booster (a sitecustomize on its path)
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(_NATIVE_CRASH)
    served = _tarball(tmp_path)
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": os.pathsep.join([str(patch), str(root)]), "SAGEMAKER_GUNICORN_WORKERS": "1"}
    # When the real container serves it
    with running(served, tmp_path / "run" / "server.log", env=env) as server:
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"{server.url}/ping", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        time.sleep(2)  # a crash loop would keep booting workers meanwhile
        log = server.output()
    # Then /ping says why, only the first workers died (no loop), and nothing unpacked is left behind
    assert answer is not None and answer.status_code == 503, log[-3000:]
    assert "died while loading the model" in answer.json()["error"]
    assert "was sent SIG" in log, "the model really crashed a worker"
    assert log.count("Booting worker") <= 2, log[-3000:]
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(("model-", "serving-loading-"))]
