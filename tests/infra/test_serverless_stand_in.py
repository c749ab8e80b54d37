"""Tests for the stand-in endpoint under load: max concurrency, ThrottlingException, cold starts, settings.

The endpoint runs for real on loopback in front of a container the test can hold (``slow_container.py``), so
the number of invocations in flight is decided by the test, not by the machine's speed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local import cli
from infra.local.endpoint import STATS_PATH, EndpointServer, start_endpoint
from infra.local.serverless import ServerlessConfig, serverless_config, settings_for
from infra.settings import ENVIRONMENTS
from tests.infra.slow_container import SlowContainer, running

NAME = "student-score-local"
RECORD = {"Hours_Studied": 23, "Attendance": 84, "Gender": "Male"}


@pytest.fixture
def held() -> Iterator[SlowContainer]:
    with running(gated=True) as container:
        yield container


def endpoint_for(container: SlowContainer, **config: Any) -> EndpointServer:
    return start_endpoint(endpoint_name=NAME, container_url=container.url, serverless=ServerlessConfig(**config))


def invoke_raw(endpoint: EndpointServer, *, attempt: int = 1) -> requests.Response:
    return requests.post(
        f"{endpoint.url}/endpoints/{NAME}/invocations",
        data=json.dumps(RECORD),
        headers={"Content-Type": "application/json", "amz-sdk-request": f"attempt={attempt}; max=2"},
        timeout=30,
    )


def stats(endpoint: EndpointServer) -> dict[str, Any]:
    return requests.get(f"{endpoint.url}{STATS_PATH}", timeout=5).json()


def wait_for(endpoint: EndpointServer, key: str, value: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = stats(endpoint)
        if current[key] >= value:
            return current
        time.sleep(0.02)
    raise AssertionError(f"stats never reached {key}={value}: {current}")


def test_an_invocation_beyond_max_concurrency_is_boto3s_throttling_exception(held: SlowContainer) -> None:
    # Given an endpoint with max_concurrency 1 whose one instance is busy
    endpoint = endpoint_for(held, max_concurrency=1)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(invoke_raw, endpoint)
        wait_for(endpoint, "in_flight", 1)
        # When boto3 (retries off) invokes it
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        with pytest.raises(ClientError) as caught:
            client.invoke_endpoint(EndpointName=NAME, Body=json.dumps(RECORD), ContentType="application/json")
        held.gate.set()
        assert busy.result().status_code == 200
    # Then it is SageMaker's throttle: HTTP 400, code ThrottlingException, a null message
    response = caught.value.response
    assert response["Error"]["Code"] == "ThrottlingException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Message"] is None
    assert stats(endpoint)["throttled"] == 1
    endpoint.shutdown()


def test_instances_scale_up_to_max_concurrency_each_with_a_cold_start_then_throttle(held: SlowContainer) -> None:
    endpoint = endpoint_for(held, max_concurrency=3, cold_start_s=0.05)
    with ThreadPoolExecutor(5) as pool:
        # When five invocations arrive together at an endpoint with no warm instance
        answers = [pool.submit(invoke_raw, endpoint) for _ in range(5)]
        seen = wait_for(endpoint, "throttled", 2)
        # Then three instances start (three cold starts) and the two beyond the maximum are throttled at once
        assert seen["in_flight"] == 3
        assert seen["cold_starts"] == 3
        held.gate.set()
        statuses = sorted(answer.result().status_code for answer in answers)
    assert statuses == [200, 200, 200, 400, 400]
    after = stats(endpoint)
    assert after["peak_concurrency"] == 3
    assert after["warm_instances"] == 3
    # And a later invocation finds a warm instance: no new cold start
    assert invoke_raw(endpoint).status_code == 200
    assert stats(endpoint)["cold_starts"] == 3
    endpoint.shutdown()


def test_a_cold_start_delays_only_the_invocation_that_starts_an_instance() -> None:
    with running() as container:
        endpoint = endpoint_for(container, max_concurrency=2, cold_start_s=1.0)
        started = time.monotonic()
        assert invoke_raw(endpoint).status_code == 200
        first = time.monotonic() - started
        started = time.monotonic()
        assert invoke_raw(endpoint).status_code == 200
        second = time.monotonic() - started
        counts = stats(endpoint)
        endpoint.shutdown()
    assert first >= 1.0, "the first invocation waited for its instance to start"
    assert second < 0.5, f"the second found its instance warm, yet took {second:.2f} s"
    assert counts["cold_starts"] == 1
    assert counts["invocations"] == 2


def test_provisioned_concurrency_is_warm_from_the_start(held: SlowContainer) -> None:
    endpoint = endpoint_for(held, max_concurrency=3, provisioned_concurrency=1, cold_start_s=0.05)
    with ThreadPoolExecutor(2) as pool:
        answers = [pool.submit(invoke_raw, endpoint) for _ in range(2)]
        seen = wait_for(endpoint, "in_flight", 2)
        held.gate.set()
        assert [a.result().status_code for a in answers] == [200, 200]
    assert seen["cold_starts"] == 1, "one provisioned instance was warm; only the second invocation started one"
    endpoint.shutdown()


def test_a_provisioned_instance_answers_without_a_cold_start() -> None:
    with running() as container:
        endpoint = endpoint_for(container, max_concurrency=2, provisioned_concurrency=1, cold_start_s=1.0)
        started = time.monotonic()
        assert invoke_raw(endpoint).status_code == 200
        took = time.monotonic() - started
        counts = stats(endpoint)
        endpoint.shutdown()
    assert took < 0.5, f"a provisioned instance is warm, yet the call took {took:.2f} s"
    assert counts["cold_starts"] == 0


def test_retries_are_counted_from_botocores_attempt_header() -> None:
    with running() as container:
        endpoint = endpoint_for(container, max_concurrency=1)
        invoke_raw(endpoint, attempt=1)
        invoke_raw(endpoint, attempt=2)
        counts = stats(endpoint)
        endpoint.shutdown()
    assert (counts["attempts"], counts["retries"]) == (2, 1)


def test_the_stand_in_reads_the_settings_the_stack_deploys() -> None:
    for env, deployed in ENVIRONMENTS.items():
        config = serverless_config(settings_for(env, []), cold_start_s=1.0)
        assert config.max_concurrency == deployed.endpoint_max_concurrency
        assert config.provisioned_concurrency == deployed.endpoint_provisioned_concurrency
    assert settings_for("dev", ["endpoint_max_concurrency=2"]).endpoint_max_concurrency == 2


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["endpoint_max_concurency=2"], "unknown setting 'endpoint_max_concurency'"),
        (["endpoint_max_concurrency"], "expected FIELD=VALUE"),
        (["endpoint_max_concurrency=two"], "endpoint_max_concurrency"),
        (["endpoint_max_concurrency=500"], "endpoint_max_concurrency must be 1..200"),
    ],
    ids=["misspelt", "no-value", "not-a-number", "out-of-range"],
)
def test_a_bad_setting_is_refused_by_name(pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_for("dev", pairs)


def test_the_cli_refuses_a_bad_setting_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--container-url", "http://127.0.0.1:9", "-c", "endpoint_max_concurency=2", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "unknown setting 'endpoint_max_concurency'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "config",
    [{"max_concurrency": 0}, {"max_concurrency": 201}, {"max_concurrency": 2, "provisioned_concurrency": 3},
     {"max_concurrency": 2, "cold_start_s": -1}],
    ids=["zero", "above-200", "provisioned-above-max", "negative-cold-start"],
)
def test_a_serverless_config_outside_sagemakers_ranges_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ServerlessConfig(**config)


@pytest.mark.parametrize(
    ("url", "message"),
    [("notaurl", "'notaurl' is not http(s)://HOST[:PORT]"), ("ftp://127.0.0.1:9", "is not http(s)://HOST[:PORT]"),
     ("http://127.0.0.1:99999", "is not a URL (Port out of range"), ("http://[::1", "is not a URL"),
     ("http://127.0.0.1:9/invocations", "has a path or query; give the container's root")],
    ids=["no-scheme", "ftp", "port-out-of-range", "bad-ipv6", "with-a-path"],
)
def test_a_bad_container_url_is_refused_in_one_line_before_anything_starts(
        url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--container-url", url, "--port", "0", "--ready-timeout", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: Invalid value for --container-url: ") and message in err and "\n" not in err


def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", "abc"]) == 2
    assert capsys.readouterr().err.strip() == "error: Invalid value for '--port': 'abc' is not a valid integer range."


def test_a_container_url_is_taken_with_or_without_a_trailing_slash() -> None:
    assert cli.container_root("http://127.0.0.1:8080/") == cli.container_root("http://127.0.0.1:8080") \
        == "http://127.0.0.1:8080"
