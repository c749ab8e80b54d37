"""Owns the test fixtures' building blocks for the container: a small real model bundle and a real server."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import xgboost as xgb

from experiments.data import infer_schema
from experiments.generate import generate
from serving import bundle, codecs
from serving.predictor import Predictor, SchemaError, records_from_frame, save_model_dir

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY = 6 * 1024 * 1024  # the launcher's default (serving/serve)
BIG_ROWS, BAD_ROW = 10_000, 9_876  # a big batch, and where a bad value goes in it (near the end)
SERVE = ROOT / "serving" / "serve"
TARGET = "Exam_Score"
METADATA = {
    "registered_name": "student-score", "version": "7", "run_id": "0123456789abcdef",
    "data_hash": "d41d8cd98f00b204e9800998ecf8427e", "git_commit": "abc1234",
    "metrics": {"rmse": 2.1}, "exported_at": "2025-01-01T00:00:00Z",
}


def fast_path_taken(monkeypatch: Any, cls: type, method: str) -> list[bool]:
    """Wrap ``cls.method`` (a fast path that returns a matrix, or None to leave the batch to the slow one) so that
    each call appends whether it returned a matrix; the real method still runs."""
    taken: list[bool] = []
    original = getattr(cls, method)

    def spy(self: Any, *args: Any) -> Any:
        matrix = original(self, *args)
        taken.append(matrix is not None)
        return matrix

    monkeypatch.setattr(cls, method, spy)
    return taken


def sample_records(rows: int = 300, seed: int = 7) -> tuple[list[dict[str, Any]], list[float]]:
    frame = generate(rows, seed)
    return records_from_frame(frame.drop(columns=TARGET)), frame[TARGET].astype(float).tolist()


def build_model_dir(path: Path, *, metadata: Mapping[str, Any] = METADATA, expected_shift: float = 0.0,
                    booster: str = "gbtree") -> Path:
    """Train a quick real booster on generated data and write a verified bundle directory.

    ``expected_shift`` moves the self-test's recorded prediction, to build a model whose self-test fails;
    ``booster`` is XGBoost's (gbtree or gblinear, the two the search space offers).
    """
    frame = generate(300, 7)
    schema = infer_schema(frame, TARGET)
    records = records_from_frame(frame.drop(columns=TARGET))
    matrix = schema.encode(records)
    settings = {"max_depth": 3} if booster == "gbtree" else {}
    model = xgb.train({"booster": booster, "eta": 0.3, "nthread": 1, "seed": 0, **settings},
                      xgb.DMatrix(matrix, label=frame[TARGET].to_numpy()), num_boost_round=20)
    example = records[0]
    expected = float(model.predict(xgb.DMatrix(schema.encode([example])))[0]) + expected_shift
    save_model_dir(path, model, dataclasses.replace(schema, example=example, expected=expected))
    bundle.write_metadata(path, metadata)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server ignored SIGTERM for {timeout}s:\n{self.output()}") from None


def start_server(model_dir: Path, log: Path, *, args: tuple[str, ...] = ("serve",),
                 env: Mapping[str, str] | None = None, ready_timeout: float = 60.0) -> Server:
    """Run the real launcher (gunicorn on a free loopback port) and wait until it answers /ping."""
    port = free_port()
    environ = {
        **os.environ,
        # The launcher's shebang is `env python3`: the venv's interpreter must come first, as in the image.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SM_MODEL_DIR": str(model_dir), "SERVING_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_GUNICORN_WORKERS": "2", "TMPDIR": str(log.parent),
        **(env or {}),
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen([str(SERVE), *args], env=environ, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            # Any HTTP answer means a worker has loaded (or failed to load) its model and is serving.
            requests.get(f"{server.url}/ping", timeout=2)
            return server
        except requests.RequestException:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"server did not answer /ping within {ready_timeout}s:\n{server.output()}")


@contextmanager
def running(model_dir: Path, log: Path, **kwargs: Any) -> Iterator[Server]:
    server = start_server(model_dir, log, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def post_answer(client: Any, body: bytes, media_type: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer of posting ``body`` to ``/invocations`` through werkzeug's test client."""
    response = client.post("/invocations", data=body, content_type=media_type)
    return response.status_code, response.get_json()


def general_answer(predictor: Predictor, body: bytes, media_type: str) -> tuple[int, dict[str, Any]]:
    """What the general path (``serving.codecs``, then the record checks) answers for ``body``: the answer a fast
    path must give word for word."""
    try:
        predictions = predictor.predict(codecs.decode(media_type, body, predictor.schema))
    except SchemaError as err:
        return 400, {"error": str(err), "field": err.field, "row": err.row}
    return 200, {"predictions": predictions.tolist()}
