"""Owns the deployment settings: one frozen object per environment, read from CDK context once and validated.

``-c env=dev`` (default) or ``-c env=prod`` picks a row of ``ENVIRONMENTS``; any field can be overridden
with ``-c FIELD=VALUE`` (e.g. ``-c endpoint_max_concurrency=10``). The stacks take these values as constructor
arguments, so the same code builds both environments.

Other context keys, read in ``infra/app.py``: ``model_tarball`` (default: params.yaml ``export.path``),
``serving_dir`` (default ``serving/``), ``github_repo`` (OWNER/REPO, enables the bootstrap stack),
``github_oidc_provider_arn`` (import an existing provider instead of creating one), ``github_environments``
(the GitHub environments whose jobs may assume the deploy role, default ``dev,prod``), ``data_bucket``,
``mlflow_tracking_server_arn`` and ``mlflow_artifact_uri`` (what the deploy role may read and log to), and
``alarm_email`` (subscribed to the serving stack's alarm topic).

Canary: every model change reaches the endpoint as a blue/green deployment with CANARY traffic shifting
(AWS: "Use canary traffic shifting", https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green-canary.html):
``canary_percent`` of the traffic goes to the new fleet for ``canary_wait_s`` seconds, then all of it for
another ``canary_wait_s`` (the final baking period); a rollback alarm firing in either period sends all traffic
back to the old fleet. AWS: "the canary size should be less than or equal to 50% of the new fleet's capacity".
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# AWS, "ProductionVariantServerlessConfig" (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
# API_ProductionVariantServerlessConfig.html): MemorySizeInMB "Valid values are in 1 GB increments: 1024 MB,
# 2048 MB, 3072 MB, 4096 MB, 5120 MB, or 6144 MB"; MaxConcurrency "Minimum value of 1. Maximum value of 200.";
# ProvisionedConcurrency "Should be less than or equal to MaxConcurrency" (1..200 when set; 0 here means unset).
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200
# AWS, "Configure Lambda function memory" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html):
# "You can configure memory between 128 MB and 10,240 MB in 1-MB increments."
LAMBDA_MEMORY_MB = (128, 10240)
# The rollback alarms (infra/monitoring) look at one-minute periods and need up to three of them to fire; a
# baking period shorter than that would end before they could.
ALARM_PERIOD_S = 60
ROLLBACK_ALARM_WINDOW_S = 3 * ALARM_PERIOD_S
# canary_wait_s is both SageMaker waits. AWS, "TrafficRoutingConfig" (SageMaker API Reference, .../sagemaker/latest/
# APIReference/API_TrafficRoutingConfig.html): WaitIntervalInSeconds "Minimum value of 0. Maximum value of 3600", and
# CanarySize "must be less than or equal to 50%"; "BlueGreenUpdatePolicy": TerminationWaitInSeconds, the same 0..3600.


@dataclass(frozen=True)
class EnvironmentSettings:
    """Everything that differs between environments."""

    name: str
    endpoint_memory_mb: int
    endpoint_max_concurrency: int
    endpoint_provisioned_concurrency: int
    lambda_memory_mb: int
    throttle_rate: float
    throttle_burst: int
    api_key_required: bool
    max_records: int
    alarm_model_latency_ms: int
    alarm_error_count: int
    alarm_client_error_count: int
    alarm_overhead_latency_ms: int
    alarm_model_setup_ms: int
    alarm_concurrency_utilization: float
    canary_percent: int
    canary_wait_s: int
    # Monitoring: capture predict traffic to Firehose (off: no stream permission, no capture), the share of
    # requests captured, and how long captures are kept in the bucket (their last version is deleted a day later).
    capture_enabled: bool
    capture_share: float
    capture_retention_days: int

    def __post_init__(self) -> None:
        if self.endpoint_memory_mb not in SERVERLESS_MEMORY_MB:
            raise ValueError(
                f"endpoint_memory_mb must be one of {SERVERLESS_MEMORY_MB}, got {self.endpoint_memory_mb}"
            )
        if not 1 <= self.endpoint_max_concurrency <= SERVERLESS_MAX_CONCURRENCY:
            raise ValueError(f"endpoint_max_concurrency must be 1..{SERVERLESS_MAX_CONCURRENCY}, "
                             f"got {self.endpoint_max_concurrency}")
        if not LAMBDA_MEMORY_MB[0] <= self.lambda_memory_mb <= LAMBDA_MEMORY_MB[1]:
            raise ValueError(f"lambda_memory_mb must be {LAMBDA_MEMORY_MB[0]}..{LAMBDA_MEMORY_MB[1]}, "
                             f"got {self.lambda_memory_mb}")
        if not 0 <= self.endpoint_provisioned_concurrency <= self.endpoint_max_concurrency:
            raise ValueError("endpoint_provisioned_concurrency must be 0..endpoint_max_concurrency")
        if not math.isfinite(self.throttle_rate) or self.throttle_rate <= 0 or self.throttle_burst < 1 \
                or self.max_records < 1:
            raise ValueError("throttle_rate, throttle_burst and max_records must be positive")
        if not 1 <= self.canary_percent <= 50:
            raise ValueError(f"canary_percent must be 1..50 (AWS: at most half the new fleet), got {self.canary_percent}")
        if not ROLLBACK_ALARM_WINDOW_S <= self.canary_wait_s <= 3600:
            raise ValueError(f"canary_wait_s must be {ROLLBACK_ALARM_WINDOW_S}..3600 (long enough for the rollback "
                             f"alarms, at most SageMaker's WaitIntervalInSeconds), got {self.canary_wait_s}")
        if not 0 < self.alarm_concurrency_utilization <= 1:
            raise ValueError("alarm_concurrency_utilization must be in (0, 1]: a share of max concurrency")
        if min(self.alarm_model_latency_ms, self.alarm_error_count, self.alarm_client_error_count,
               self.alarm_overhead_latency_ms, self.alarm_model_setup_ms) < 1:
            raise ValueError("alarm thresholds must be positive")
        if not 0 <= self.capture_share <= 1:
            raise ValueError(f"capture_share must be 0..1, got {self.capture_share}")
        if self.capture_retention_days < 1:
            raise ValueError(f"capture_retention_days must be at least 1, got {self.capture_retention_days}")


ENVIRONMENTS: Mapping[str, EnvironmentSettings] = {
    "dev": EnvironmentSettings(
        name="dev",
        endpoint_memory_mb=1024,
        endpoint_max_concurrency=5,
        endpoint_provisioned_concurrency=0,
        lambda_memory_mb=256,
        throttle_rate=10,
        throttle_burst=20,
        api_key_required=False,
        max_records=100,
        alarm_model_latency_ms=2000,
        alarm_error_count=10,
        alarm_client_error_count=50,
        alarm_overhead_latency_ms=5000,
        # The cold start happens inside the first InvokeEndpoint, whose read timeout is the handler's
        # DEFAULT_READ_TIMEOUT_S (10 s): a cold start near it makes the caller's first attempt time out and retry
        # (a retry that may meet a cold start of its own, then a 504), so the alarm fires before that.
        alarm_model_setup_ms=8000,
        alarm_concurrency_utilization=0.8,
        canary_percent=50,
        canary_wait_s=300,
        capture_enabled=True,
        capture_share=1.0,
        capture_retention_days=30,
    ),
    "prod": EnvironmentSettings(
        name="prod",
        endpoint_memory_mb=2048,
        endpoint_max_concurrency=20,
        endpoint_provisioned_concurrency=1,  # no cold start for the first request after a quiet spell
        lambda_memory_mb=512,
        throttle_rate=50,
        throttle_burst=100,
        api_key_required=True,
        max_records=100,
        alarm_model_latency_ms=1000,
        alarm_error_count=1,
        alarm_client_error_count=20,
        alarm_overhead_latency_ms=2000,
        alarm_model_setup_ms=8000,
        alarm_concurrency_utilization=0.8,
        canary_percent=10,
        canary_wait_s=600,
        capture_enabled=True,
        capture_share=1.0,
        capture_retention_days=90,
    ),
}


def _parse(raw: Any, kind: type) -> Any:
    # Context from `-c key=value` arrives as a string; from cdk.json or a test it may already be typed. Nothing
    # is coerced: int(7.9) would deploy 7, and True is an int to Python but no count or size to anyone.
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ValueError(f"expected a {'whole ' if kind is int else ''}number, got {raw!r}")
    if kind is int:
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, int) or (isinstance(raw, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", raw)):
            return int(raw)
        raise ValueError(f"expected a whole number, got {raw!r}")
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def context_keys() -> frozenset[str]:
    """The context keys read here: ``env`` and every settings field but ``name`` (which ``env`` picks)."""
    return frozenset({"env"} | {f.name for f in dataclasses.fields(EnvironmentSettings) if f.name != "name"})


def settings_from_context(get: Callable[[str], Any]) -> EnvironmentSettings:
    """The settings for context ``env`` with per-field context overrides.

    Args:
        get: looks a context key up, returning None when absent (``node.try_get_context``).
    """
    env = get("env") or "dev"
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown env {env!r}: expected one of {sorted(ENVIRONMENTS)}")
    base = ENVIRONMENTS[env]
    types = {"int": int, "float": float, "bool": bool}
    overrides = {}
    for field in dataclasses.fields(base):
        raw = get(field.name) if field.name != "name" else None
        if raw is not None:
            try:
                overrides[field.name] = _parse(raw, types[str(field.type)])
            except ValueError as error:
                raise ValueError(f"context {field.name}: {error}") from None
    return dataclasses.replace(base, **overrides)
