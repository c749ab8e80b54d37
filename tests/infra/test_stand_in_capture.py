"""The stand-in captures through the real handler: every record it answers leaves a capture record behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.api.runtime import capture
from infra.local import cli
from tests.infra import test_stand_in

RECORD = test_stand_in.RECORD
# The fake container and the handler's environment, as the stand-in's own tests use them.
container = test_stand_in.container
chain_env = test_stand_in.chain_env

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _fresh_sender():
    capture.sender.cache_clear()
    yield
    capture.sender.cache_clear()


def _captured(folder: Path) -> list[dict]:
    return [json.loads(line) for path in folder.rglob("*.jsonl") for line in path.read_text().splitlines()]


def test_n_records_in_n_capture_records_out_with_the_version_that_answered(container: str, chain_env: None,
                                                                          tmp_path: Path) -> None:
    body = json.dumps([RECORD, dict(RECORD, Hours_Studied=30), RECORD])
    assert cli.main(["--container-url", container, "--port", "0", "--request", body,
                     "--capture-dir", str(tmp_path)]) == 0
    records = _captured(tmp_path)
    assert [r["row"] for r in records] == [0, 1, 2]
    assert {(r["model_name"], r["model_version"]) for r in records} == {("student-score", "3")}
    assert records[1]["record"]["Hours_Studied"] == 30 and records[1]["prediction"] == 63.0
    assert (tmp_path / "capture" / "model=student-score" / "version=3").is_dir()


def test_a_refused_request_leaves_a_refusal_behind(container: str, chain_env: None, tmp_path: Path) -> None:
    assert cli.main(["--container-url", container, "--port", "0", "--request",
                     json.dumps(dict(RECORD, Gender="Robot")), "--capture-dir", str(tmp_path)]) == 1
    (record,) = _captured(tmp_path)
    assert record["kind"] == "refusal" and record["status"] == 400 and "Gender" in record["error"]


def test_capture_off_leaves_nothing(container: str, chain_env: None, tmp_path: Path) -> None:
    assert cli.main(["--container-url", container, "--port", "0", "--request", json.dumps(RECORD),
                     "--capture", "off", "--capture-dir", str(tmp_path)]) == 0
    assert not list(tmp_path.rglob("*.jsonl"))
