"""Owns the generated API Gateway events of the fuzzing suite: REST proxy events for the predict Lambda.

``event_bodies`` draws changes to a proxy event — its ``body`` (a record, a list of up to 130, wrappers,
scalars, nesting thousands deep, raw and escaped lone surrogates, null, absent, not a string), whether it
is base64-encoded (and then sometimes not UTF-8, or not base64 at all), and the ``Content-Type`` header
in any casing or none — and whether the result is a valid request. ``run_events`` feeds them to the
handler; a valid request must be answered 200, anything else with a 4xx carrying an ``error``, never a 5xx.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz import JSON_VALUES, Tally

# The body key is left out of the event altogether.
ABSENT = "(absent)"
# The handler checks a record's shape, not its fields (the container does): flat values are enough.
_RECORD = st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.integers() | st.floats()
                          | st.text(max_size=8), min_size=1, max_size=4)


def _not_records(value: Any) -> bool:
    """JSON that is neither one object nor a non-empty list of objects (the handler accepts those)."""
    return not isinstance(value, dict) and not (isinstance(value, list) and value
                                                and all(isinstance(item, dict) for item in value))


@st.composite
def event_bodies(draw: Any) -> tuple[dict[str, Any], bool]:
    """Changes to a REST proxy event's ``body``/``isBase64Encoded``/``headers``, and whether it is a valid request
    (one JSON object or a list of 1..100 objects, as UTF-8 text, base64-encoded or not)."""
    many = st.tuples(_RECORD, st.integers(1, 100)).map(lambda pair: [pair[0]] * pair[1])  # up to the bound
    valid = draw(_RECORD.map(json.dumps) | st.lists(_RECORD, min_size=1, max_size=3).map(json.dumps)
                 | many.map(json.dumps) | st.just('{"a": "\\ud800"}'))  # an escaped lone surrogate is valid JSON
    invalid = st.one_of(
        st.just(None), st.just(ABSENT), st.integers(), st.text(max_size=50), JSON_VALUES.filter(_not_records).map(json.dumps),
        st.text(max_size=20).map(lambda s: '{"a": "' + s + '\ud800"}'),  # a raw lone surrogate
        st.integers(1000, 20000).map(lambda n: "[" * n), st.sampled_from(["[]", "[1, 2]", "null", '"text"']),
        st.tuples(_RECORD, st.integers(101, 130)).map(lambda pair: json.dumps([pair[0]] * pair[1])),
        st.tuples(st.sampled_from(["instances", "dataframe_records"]), _RECORD).map(
            lambda wrapped: json.dumps({wrapped[0]: [wrapped[1]]})))
    good = draw(st.booleans())
    body = valid if good else draw(invalid)
    changes: dict[str, Any] = {"body": body}
    if draw(st.booleans()) and isinstance(body, str):
        raw = body.encode("utf-8", "surrogatepass")
        if draw(st.integers(0, 4)) == 0:
            raw, good = draw(st.binary(min_size=1, max_size=40)) + b"\xff", False  # not UTF-8
        changes = {"body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
        if draw(st.integers(0, 4)) == 0:
            changes["body"], good = changes["body"] + "!*", False  # not base64
    name = draw(st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe"]))
    value = draw(st.sampled_from(["application/json", "APPLICATION/JSON; charset=UTF-8", "text/plain", ""]))
    changes["headers"] = draw(st.sampled_from([{name: value}, {}, None]))
    return changes, good


def event_problems(good: bool, result: Mapping[str, Any]) -> list[str]:
    """What is wrong with the handler's answer to an event (empty when it is right)."""
    status = result.get("statusCode", 0)
    if status >= 500 or status < 200:
        return [f"status {status}: {str(result.get('body'))[:200]}"]
    if good and status != 200:
        return [f"{status} for a valid request: {str(result.get('body'))[:200]}"]
    if not good:
        body = json.loads(result.get("body") or "null")
        if not 400 <= status < 500 or not isinstance(body, dict) or not body.get("error"):
            return [f"{status} for an invalid request, answered {str(body)[:200]}"]
    return []


def run_events(send: Callable[[dict[str, Any]], Mapping[str, Any]], *, examples: int) -> Tally:
    """Send ``examples`` generated event changes through ``send`` (which builds and handles the event)."""
    tally = Tally()

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(event_bodies())
    def check(drawn: tuple[dict[str, Any], bool]) -> None:
        changes, good = drawn
        result = send(changes)
        status = int(result.get("statusCode", 0))
        tally.tried += 1
        tally.by_kind["valid" if good else "invalid"] = tally.by_kind.get("valid" if good else "invalid", 0) + 1
        tally.by_status[status] = tally.by_status.get(status, 0) + 1
        tally.server_errors += status >= 500
        wrong = event_problems(good, result)
        assert not wrong, f"{wrong} for {str(changes)[:300]}"

    check()
    return tally
