"""Property-based fuzzing of the predict Lambda with generated API Gateway events: never a 5xx.

The events are benchmarks/fuzz_events.py's: records and lists (valid), wrappers, oversized lists, scalars,
deep nesting, lone surrogates raw and escaped, null or absent bodies, base64 bodies (some not UTF-8, some
not base64) and the Content-Type header in any casing. A valid request must come back 200 from the
endpoint; anything else must be a 4xx with an ``error``.
"""

from __future__ import annotations

from typing import Any

from benchmarks import fuzz_events
from infra.api.runtime import handler
from infra.local.events import LambdaContext, proxy_event
from tests.infra.runtime_stub import StubRuntime

EXAMPLES = 1000


def _send(changes: dict[str, Any]) -> dict[str, Any]:
    event = proxy_event(method="POST", path=handler.ROUTE, query="", body=b"", source_ip="127.0.0.1",
                        headers={"Content-Type": "application/json"})
    event.update(changes)
    if event["body"] == fuzz_events.ABSENT:
        del event["body"]
    event["multiValueHeaders"] = {k: [v] for k, v in (event["headers"] or {}).items()} or None
    return handler.lambda_handler(event, LambdaContext())


def test_generated_events_are_answered_without_a_5xx(handler_env: StubRuntime) -> None:
    tally = fuzz_events.run_events(_send, examples=EXAMPLES)

    assert tally.tried >= EXAMPLES and tally.server_errors == 0, tally
    assert tally.by_kind.get("valid", 0) > EXAMPLES / 5 and tally.by_kind.get("invalid", 0) > EXAMPLES / 5, tally
    assert len(handler_env.requests) == tally.by_status.get(200, 0), "only valid requests reach the endpoint"
