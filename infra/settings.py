"""Owns the deployment settings: one frozen object per environment, read from CDK context once and validated.

``-c env=dev`` (default) or ``-c env=prod`` picks a row of ``ENVIRONMENTS``; any field can be overridden
with ``-c FIELD=VALUE`` (e.g. ``-c endpoint_max_concurrency=10``). The stacks take these values as constructor
arguments, so the same code builds both environments.

Other context keys, read in ``infra/app.py``: ``model_tarball`` (default: params.yaml ``export.path``),
``serving_dir`` (default ``serving/``), ``github_repo`` (OWNER/REPO, enables the bootstrap stack),
``github_oidc_provider_arn`` (import an existing provider instead of creating one), ``data_bucket`` and
``mlflow_tracking_server_arn`` (what the deploy role may read and log to), ``alarm_topic_arn``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)


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
    # Monitoring: capture predict traffic to Firehose (off: no stream permission, no capture), the share of
    # requests captured, and how long captures are kept in the bucket.
    capture_enabled: bool
    capture_share: float
    capture_retention_days: int

    def __post_init__(self) -> None:
        if self.endpoint_memory_mb not in SERVERLESS_MEMORY_MB:
            raise ValueError(
                f"endpoint_memory_mb must be one of {SERVERLESS_MEMORY_MB}, got {self.endpoint_memory_mb}"
            )
        if not 1 <= self.endpoint_max_concurrency <= 200:
            raise ValueError(f"endpoint_max_concurrency must be 1..200, got {self.endpoint_max_concurrency}")
        if not 0 <= self.endpoint_provisioned_concurrency <= self.endpoint_max_concurrency:
            raise ValueError("endpoint_provisioned_concurrency must be 0..endpoint_max_concurrency")
        if not math.isfinite(self.throttle_rate) or self.throttle_rate <= 0 or self.throttle_burst < 1 \
                or self.max_records < 1:
            raise ValueError("throttle_rate, throttle_burst and max_records must be positive")
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
        capture_enabled=True,
        capture_share=1.0,
        capture_retention_days=90,
    ),
}


def _parse(raw: Any, kind: type) -> Any:
    # Context from `-c key=value` arrives as a string; from cdk.json or a test it may already be typed.
    if kind is bool and isinstance(raw, str):
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw.lower() == "true"
    return kind(raw)


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
