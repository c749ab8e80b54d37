"""Shared fixtures for the infra tests: a canned InvokeEndpoint server and the handler's environment."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.infra.runtime_stub import StubRuntime


@pytest.fixture
def stub_runtime() -> Iterator[StubRuntime]:
    server = StubRuntime()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch, stub_runtime: StubRuntime) -> Iterator[StubRuntime]:
    """The handler's environment pointed at the stub, with dummy credentials and a fresh client."""
    from infra.api.runtime import handler

    for name, value in {
        "ENDPOINT_NAME": "student-score-test",
        "SAGEMAKER_RUNTIME_ENDPOINT_URL": stub_runtime.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_READ_TIMEOUT_S": "2",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    handler.sagemaker_runtime.cache_clear()
    yield stub_runtime
    handler.sagemaker_runtime.cache_clear()
