"""The container under mixed load and under SIGKILL: no error, no growth, a killed worker replaced cleanly.

CI runs a short soak; ``make bench-reliability`` runs the 60 s one (benchmarks/reliability.py) and the README
reports its figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import load, soak
from tests.serving.serving_helpers import sample_records, start_server

pytestmark = pytest.mark.slow
SOAK_S = 8.0
# A worker's heap settles during the warm-up; a leak per request would grow it by far more than this in 8 s.
RSS_GROWTH_MB = 10.0


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bodies")
    records = sample_records(rows=100, seed=2)[0]
    paths = [folder / "one.json", folder / "hundred.json"]
    paths[0].write_text(json.dumps(records[0]))
    paths[1].write_text(json.dumps(records))
    return paths


def test_mixed_load_has_no_error_and_no_worker_growth(model_dir: Path, tmp_path: Path, bodies: list[Path]) -> None:
    load.wrk_path()  # fails with how to install wrk, rather than skipping
    server = start_server(model_dir, tmp_path / "server.log")
    try:
        result = soak.soak(server.url, server.process.pid, bodies, tmp_path, seconds=SOAK_S, warmup_s=2)
    finally:
        server.stop()

    assert result.requests > 0 and result.errors == 0, result
    assert result.growth_mb < RSS_GROWTH_MB, result


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_under_load_is_replaced_and_ping_waits_for_its_model(model_dir: Path, tmp_path: Path,
                                                                             bodies: list[Path], workers: int) -> None:
    server = start_server(model_dir, tmp_path / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": str(workers)})
    try:
        result = soak.sigkill_worker_under_load(server.url, server.process.pid, server.log,
                                                bodies[1].read_bytes(), seconds=6)
    finally:
        server.stop()

    # Messages are repr(result): pytest would cut the dict short, and the timings are what explains a failure.
    assert result["replaced"] and result["replacement_loaded_s"] is not None, repr(result)
    if workers == 1:  # nobody else could answer: /ping waits for the replacement's model, never says 200 before
        assert result["ping_200_before_loaded"] == 0, repr(result)
    else:  # the other worker keeps the container healthy meanwhile: every ping of that window says 200
        window = result["pings_before_loaded"]
        assert window and set(window) == {"200"}, repr(result)
    # Only what the killed worker held is lost (each client had one request in flight), and the load goes on.
    assert result["failed"] <= result["clients"], repr(result)
    assert result["ok_after_replacement"] > 0, repr(result)
