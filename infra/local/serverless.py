"""Owns the stand-in endpoint's serverless capacity: max concurrency, warm and cold instances, throttles, counts.

What it copies from "Deploy models with Amazon SageMaker Serverless Inference"
(https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html, sections "Concurrent invocations"
and "Minimizing cold starts"):
- "If the endpoint is invoked before it finishes processing the first request, then it handles the second
  request concurrently": every invocation in flight holds one unit of concurrency, served by one instance
  (the page recommends "only one worker in the container", so an instance takes one invocation at a time);
- "any endpoint invocations beyond the maximum are throttled": the answer is ``ThrottlingException``
  (see ``throttle_response``), counted here;
- an on-demand endpoint scales to zero, and "A cold start can also occur if your concurrent requests exceed
  the current concurrent request usage": an invocation that finds no idle warm instance starts one, which
  takes ``cold_start_s`` (the container's start plus the platform's share, ``OverheadLatency`` in CloudWatch)
  and then stays warm;
- with Provisioned Concurrency "SageMaker AI keeps the endpoint warm and ready to respond in milliseconds,
  for the number of Provisioned Concurrency that you allocated": that many instances are warm from the start.
What it leaves out: scale-in after an idle spell (AWS publishes no idle time, so an instance stays warm for
the stand-in's life) and the account-wide concurrency quota shared by all serverless endpoints.

Retries are counted from the ``amz-sdk-request: attempt=N; max=M`` header botocore's standard retry mode puts
on every attempt (``botocore/handlers.py``, ``add_retry_headers``), so a test can see a retry storm.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.settings import EnvironmentSettings, settings_from_context

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
ATTEMPT = re.compile(r"(?:^|;)\s*attempt=(\d+)")
# SageMaker's common errors list ThrottlingException as HTTP 400 (API Reference, "Common Errors":
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html). The body's message is null:
# clients report "Status Code: 400; Error Code: ThrottlingException" with a null message
# (aws/amazon-kinesis-video-streams-parser-library#187, opensearch-project/ml-commons#2429), which botocore
# prints as "An error occurred (ThrottlingException) when calling the InvokeEndpoint operation ...: None"
# (aws-samples/amazon-sagemaker-nlu-search#4). It is not in botocore's sagemaker-runtime model: botocore
# reads the code from the x-amzn-ErrorType header and retries it as throttling in standard mode.
THROTTLE_STATUS = 400
THROTTLE_CODE = "ThrottlingException"


def throttle_response() -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and body of SageMaker Runtime's throttled ``InvokeEndpoint``."""
    return THROTTLE_STATUS, {"x-amzn-ErrorType": THROTTLE_CODE}, {"message": None}


@dataclass(frozen=True)
class ServerlessConfig:
    """The endpoint's ``ServerlessConfig`` (as deployed) and the stand-in's cold-start delay."""

    max_concurrency: int
    provisioned_concurrency: int = 0
    cold_start_s: float = 0.0

    def __post_init__(self) -> None:
        # The same ranges as ProductionVariantServerlessConfig (MaxConcurrency 1..200, PC <= MaxConcurrency).
        if not 1 <= self.max_concurrency <= 200:
            raise ValueError(f"max_concurrency must be 1..200, got {self.max_concurrency}")
        if not 0 <= self.provisioned_concurrency <= self.max_concurrency:
            raise ValueError("provisioned_concurrency must be 0..max_concurrency")
        if not 0 <= self.cold_start_s <= 180:  # serverless: /ping must pass within 3 minutes
            raise ValueError(f"cold_start_s must be 0..180, got {self.cold_start_s}")


@dataclass(frozen=True)
class Slot:
    """One invocation's hold on an instance; ``cold`` when the instance had to start for it."""

    cold: bool


class Capacity:
    """Thread-safe concurrency accounting for one serverless endpoint."""

    def __init__(self, config: ServerlessConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle_warm = config.provisioned_concurrency
        self._counts = {"attempts": 0, "retries": 0, "invocations": 0, "throttled": 0, "cold_starts": 0,
                        "peak_concurrency": 0}

    def _acquire(self, headers: Mapping[str, str]) -> Slot | None:
        attempt = ATTEMPT.search(headers.get("amz-sdk-request") or "")
        with self._lock:
            self._counts["attempts"] += 1
            if attempt and int(attempt.group(1)) > 1:
                self._counts["retries"] += 1
            if self._in_flight >= self.config.max_concurrency:
                self._counts["throttled"] += 1
                return None
            self._in_flight += 1
            self._counts["invocations"] += 1
            self._counts["peak_concurrency"] = max(self._counts["peak_concurrency"], self._in_flight)
            if self._idle_warm:
                self._idle_warm -= 1
                return Slot(cold=False)
            self._counts["cold_starts"] += 1
            return Slot(cold=True)

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._idle_warm += 1  # a cold instance is warm once it has answered

    @contextmanager
    def invocation(self, headers: Mapping[str, str]) -> Iterator[Slot | None]:
        """Hold an instance for one invocation; yields None when the endpoint throttles it."""
        slot = self._acquire(headers)
        try:
            yield slot
        finally:
            if slot is not None:
                self._release()

    def stats(self) -> dict[str, Any]:
        """Counts since start (CloudWatch's ``Invocations`` and friends, for the stand-in)."""
        with self._lock:
            return {
                **self._counts,
                "in_flight": self._in_flight,
                "warm_instances": self._in_flight + self._idle_warm,
                "max_concurrency": self.config.max_concurrency,
                "provisioned_concurrency": self.config.provisioned_concurrency,
                "cold_start_s": self.config.cold_start_s,
            }


def deployed_settings(context: Mapping[str, Any]) -> EnvironmentSettings:
    """The settings the CDK app deploys for ``context`` (``env`` and per-field overrides), on top of cdk.json's.

    The same merge as ``infra/app.py``'s ``build_app``, so the stand-in and the stack read one source.
    """
    defaults = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    merged = {**defaults, **context}
    return settings_from_context(merged.get)


def settings_for(env: str, pairs: Sequence[str]) -> EnvironmentSettings:
    """``deployed_settings`` for ``--env`` and ``FIELD=VALUE`` pairs; ValueError names a bad or unknown one."""
    fields = {field.name for field in dataclasses.fields(EnvironmentSettings)} - {"name"}
    context: dict[str, str] = {"env": env}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key:
            raise ValueError(f"expected FIELD=VALUE, got {pair!r}")
        if key not in fields:  # settings_from_context would silently ignore it
            raise ValueError(f"unknown setting {key!r}: expected one of {sorted(fields)}")
        context[key] = value
    return deployed_settings(context)


def serverless_config(settings: EnvironmentSettings, *, cold_start_s: float) -> ServerlessConfig:
    """The stand-in endpoint's capacity for these deployment settings."""
    return ServerlessConfig(
        max_concurrency=settings.endpoint_max_concurrency,
        provisioned_concurrency=settings.endpoint_provisioned_concurrency,
        cold_start_s=cold_start_s,
    )
