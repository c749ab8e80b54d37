"""The predict Lambda's retry policy under real throttling: front door -> Lambda instances -> stand-in endpoint.

Several Lambda instances (processes, as Lambda runs them) send more concurrent invocations than the endpoint's
``max_concurrency``. The caller must see bounded latency and a 429 with Retry-After, never a hang past API
Gateway's 29 s, and the endpoint must see at most ``max_attempts`` attempts per request (no retry storm).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from infra.api.runtime import handler
from infra.local import cli, front_door
from infra.local.endpoint import STATS_PATH, EndpointServer, start_endpoint
from infra.local.front_door import HANDLER_MODULE, start_front_door
from infra.local.lambdas import LambdaPool
from infra.local.serverless import ServerlessConfig
from tests.infra.slow_container import SlowContainer, running

NAME = "student-score-local"
RECORD = {"Hours_Studied": 23, "Attendance": 84, "Gender": "Male"}
REQUESTS = 8
SERVICE_S = 0.5
GATEWAY_TIMEOUT_S = 29.0

pytestmark = pytest.mark.slow


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, EndpointServer, SlowContainer, LambdaPool]]:
    """One endpoint instance (max_concurrency 1) behind four Lambda instances; each invocation takes 0.5 s."""
    with running(delay_s=SERVICE_S) as container:
        endpoint = start_endpoint(
            endpoint_name=NAME, container_url=container.url, serverless=ServerlessConfig(max_concurrency=1)
        )
        for name, value in cli.handler_environment(endpoint_name=NAME, endpoint_url=endpoint.url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
        lambdas = LambdaPool(module=HANDLER_MODULE, instances=4)
        lambdas.warm()
        door = start_front_door(lambdas=lambdas)
        try:
            yield door.url, endpoint, container, lambdas
        finally:
            door.shutdown()
            door.server_close()
            lambdas.shutdown()
            endpoint.shutdown()
            endpoint.server_close()


def timed_post(url: str) -> tuple[float, requests.Response]:
    started = time.monotonic()
    answer = requests.post(url, json=RECORD, timeout=GATEWAY_TIMEOUT_S + 5)
    return time.monotonic() - started, answer


def test_throttling_ends_in_a_429_with_retry_after_bounded_latency_and_no_retry_storm(chain: Any) -> None:
    url, endpoint, _, _ = chain
    # When eight callers arrive together at an endpoint that serves one invocation per 0.5 s
    with ThreadPoolExecutor(REQUESTS) as pool:
        results = list(pool.map(lambda _: timed_post(url), range(REQUESTS)))
    counts = requests.get(f"{endpoint.url}{STATS_PATH}", timeout=5).json()
    statuses = sorted(answer.status_code for _, answer in results)
    # Then every caller gets an answer: a prediction or a 429 that says when to come back
    assert set(statuses) <= {200, 429}, statuses
    throttled = [answer for _, answer in results if answer.status_code == 429]
    # Botocore's standard mode retries a throttle once after at most 1 s, when at most three more invocations
    # of 0.5 s fit: so at least four of the eight must end throttled.
    assert len(throttled) >= REQUESTS - 4, statuses
    for answer in throttled:
        assert answer.headers["Retry-After"] == handler.RETRY_AFTER_S
        assert answer.json()["request_id"], "the Lambda's own answer, with its request id"
    # And nobody waits anywhere near API Gateway's 29 s, or past the client's own worst case
    worst = handler.worst_case_seconds(
        connect_timeout=handler.DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout=handler.DEFAULT_READ_TIMEOUT_S,
        max_attempts=handler.DEFAULT_MAX_ATTEMPTS,
    )
    slowest = max(seconds for seconds, _ in results)
    assert slowest < min(worst, GATEWAY_TIMEOUT_S), f"slowest answer took {slowest:.1f} s"
    # And the endpoint saw each request at most max_attempts times: a retry per throttle, no storm
    assert counts["attempts"] <= REQUESTS * handler.DEFAULT_MAX_ATTEMPTS, counts
    assert counts["retries"] == counts["attempts"] - REQUESTS, counts
    assert counts["throttled"] >= len(throttled) * handler.DEFAULT_MAX_ATTEMPTS, counts


def test_lambda_instances_take_events_at_once(chain: Any) -> None:
    url, endpoint, container, _ = chain
    # Given the container is held, two requests through the front door
    container.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        answers = [pool.submit(timed_post, url) for _ in range(2)]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            counts = requests.get(f"{endpoint.url}{STATS_PATH}", timeout=5).json()
            if counts["attempts"] >= 2:
                break
            time.sleep(0.02)
        container.gate.set()
        statuses = sorted(answer.result()[1].status_code for answer in answers)
    # Then both reached the endpoint while the first was still in flight: two Lambda instances at work
    assert counts["attempts"] >= 2
    assert 200 in statuses


def test_an_answer_later_than_the_integration_timeout_is_the_gateways_504(
    chain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, container, _ = chain
    monkeypatch.setattr(front_door, "INTEGRATION_TIMEOUT_S", 0.5)
    container.gate.clear()
    try:
        _, answer = timed_post(url)
    finally:
        container.gate.set()
    assert answer.status_code == 504
    assert answer.json() == {"message": "Endpoint request timed out"}
