"""Owns the predict Lambda's capture: the sink the environment names, which requests are sampled, what is dropped.

Environment variables (set by ``infra/api/infrastructure.py``, or by the stand-in); capture is off unless one
of the first two is set:
- ``CAPTURE_STREAM``: the Amazon Data Firehose stream to put capture records to;
- ``CAPTURE_DIR``: a local folder to append them to instead (the stand-in's default);
- ``CAPTURE_SHARE``: the share of requests captured, 0..1 (default 1: all);
- ``CAPTURE_DROP_FIELDS``: comma-separated input fields never captured (personal data);
- ``CAPTURE_WAIT_MS``: how long an answer may wait for its capture to be delivered (default 0: never);
- ``CAPTURE_LINGER_MS``: how long the sender waits after a record for more to put in the same batch (default
  200): under load one put carries many records, so its CPU (botocore's, on the instance's share of a vCPU)
  is paid once per batch, not per request (benchmarks/capture.py measures both);
- ``FIREHOSE_ENDPOINT_URL``: the firehose client's ``endpoint_url`` (only the stand-in's moto sets it).

The record format, the sampling and the background sender are the wire contract's (``serving/contract.py``),
so the stand-in captures through exactly this code. Capture never changes an answer: records are queued for a
background thread and every failure is counted and logged, never raised. On Lambda, a send still in flight when
the instance is frozen resumes when it is thawed ("Background processes or callbacks that were initiated by
your Lambda function and did not complete when the function ended resume if Lambda reuses the execution
environment", AWS Lambda developer guide, "Understanding the Lambda execution environment lifecycle"); an
instance retired in between loses them, which ``CAPTURE_WAIT_MS`` trades latency against.
"""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

if __package__:
    from . import contract
else:
    import contract

logger = Logger(child=True)
DEFAULT_LINGER_MS = "200"
EXIT_FLUSH_S = 5.0
Build = Callable[[list[str]], Iterable[dict[str, Any]]]


@functools.cache
def sender() -> contract.CaptureSender | None:
    """The sender for the sink the environment names, created once per Lambda instance; None when capture is off."""
    stream, folder = os.environ.get("CAPTURE_STREAM"), os.environ.get("CAPTURE_DIR")
    if stream:
        client = boto3.client("firehose", endpoint_url=os.environ.get("FIREHOSE_ENDPOINT_URL") or None,
                              config=Config(connect_timeout=1, read_timeout=5,
                                            retries={"mode": "standard", "total_max_attempts": 3}))
        put = contract.firehose_put(client, stream)
    elif folder:
        put = contract.folder_put(folder)
    else:
        return None
    linger_s = float(os.environ.get("CAPTURE_LINGER_MS", DEFAULT_LINGER_MS)) / 1000
    active = contract.CaptureSender(put, linger_s=linger_s, on_error=logger.warning)
    # A process that ends normally (the stand-in, its Lambda instance processes) sends what is queued first.
    atexit.register(active.flush, EXIT_FLUSH_S)
    return active


def drop_fields() -> list[str]:
    return [name.strip() for name in os.environ.get("CAPTURE_DROP_FIELDS", "").split(",") if name.strip()]


def submit(request_id: str, build: Build) -> int:
    """Queue the records ``build(drop_fields)`` makes if the request is sampled.

    Returns:
        Records lost since the last call (earlier failed sends, a full queue, an error here); never raises.
    """
    failed = 0
    try:
        active = sender()
        if active is None:
            return 0
        failed = active.take_failed()
        if contract.sampled(request_id, float(os.environ.get("CAPTURE_SHARE", "1"))):
            failed += active.submit(contract.capture_line(record) for record in build(drop_fields()))
            wait_ms = float(os.environ.get("CAPTURE_WAIT_MS", "0"))
            if wait_ms > 0:
                active.flush(wait_ms / 1000)
                failed += active.take_failed()
    except Exception:  # a bug here must not become a 500: it is a log line and a counted loss
        logger.exception("capture failed")
        failed += 1
    return failed


def flush(timeout_s: float) -> bool:
    """Wait for queued records to be sent (the stand-in calls it before it stops); False on timeout."""
    active = sender()
    return True if active is None else active.flush(timeout_s)
