"""Property-based fuzzing of ``/invocations``: 10,000 generated bodies per run, no 5xx, no worker restart.

The cases and their checks are benchmarks/fuzz.py's and fuzz_checks.py's (``make bench-reliability`` runs the same at larger
volume): valid bodies must be answered with one prediction per record, a fault at a known field and row
must be named in the 400, everything else must be a 4xx in the API's JSON error shape. Most bodies go to
the app in-process, for volume; a share goes through a real gunicorn, where a worker restart would show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from benchmarks import fuzz, fuzz_checks
from benchmarks.soak import worker_pids
from serving.predictor import Predictor
from tests.serving.serving_helpers import start_server

IN_PROCESS = 9000
THROUGH_GUNICORN = 1000


def test_generated_bodies_in_process(client: FlaskClient, predictor: Predictor) -> None:
    def send(case: fuzz.Case) -> fuzz.Answer:
        response = client.post("/invocations", data=case.body, headers=case.headers)
        return fuzz.Answer(response.status_code, dict(response.headers), response.data)

    tally = fuzz_checks.run(send, predictor.schema, examples=IN_PROCESS)

    assert tally.tried >= IN_PROCESS, tally
    assert tally.server_errors == 0
    assert set(tally.by_kind) == {"json", "csv", "jsonlines", "junk", "nested", "empty"}, tally.by_kind
    assert {200, 400, 406, 415} <= set(tally.by_status), tally.by_status


@pytest.mark.slow
def test_generated_bodies_through_gunicorn_restart_no_worker(model_dir: Path, predictor: Predictor,
                                                              tmp_path: Path) -> None:
    server = start_server(model_dir, tmp_path / "server.log")
    session = requests.Session()

    def send(case: fuzz.Case) -> fuzz.Answer:
        response = session.post(f"{server.url}/invocations", data=case.body, headers=case.headers, timeout=30)
        return fuzz.Answer(response.status_code, dict(response.headers), response.content)

    try:
        before = worker_pids(server.process.pid)
        tally = fuzz_checks.run(send, predictor.schema, examples=THROUGH_GUNICORN)
        after = worker_pids(server.process.pid)
    finally:
        server.stop()

    assert tally.tried >= THROUGH_GUNICORN and tally.server_errors == 0, tally
    assert len(before) == 2 and after == before, "a worker died and was replaced"
    assert server.output().count("Booting worker") == 2, server.output()[-3000:]
