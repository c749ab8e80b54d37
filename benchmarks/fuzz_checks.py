"""Owns the checks of the fuzzing suite: what an answer to a generated request must be, and the runner.

``problems`` compares an answer with what its case expects (``benchmarks.fuzz``); ``run`` feeds ``examples``
generated cases to a ``send`` function — the app in-process, a real gunicorn, the stand-in chain — and fails
on the first wrong answer, shrunk by hypothesis to the smallest request that still shows it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed

from benchmarks.fuzz import Answer, Case, Tally, cases
from serving.predictor import Schema


def problems(case: Case, answer: Answer) -> list[str]:
    """Every way ``answer`` breaks the contract for ``case`` (empty when it is right)."""
    found = []
    headers = {k.lower(): v for k, v in answer.headers.items()}
    if answer.status >= 500:
        return [f"a {answer.status}: {answer.body[:300]!r}"]
    if "x-model-version" not in headers:
        found.append("no model headers")
    if answer.status == 200:
        if case.expect != "ok":
            return found + [f"200 for a request that must fail ({case.expect})"]
        if not headers.get("content-type", "").startswith(case.answer_type):
            found.append(f"answered {headers.get('content-type')} for Accept {case.headers.get('Accept')}")
        elif case.answer_type == "text/csv":
            values = [float(line) for line in answer.body.decode().splitlines()]
            if len(values) != case.records or not all(map(math.isfinite, values)):
                found.append(f"{len(values)} CSV predictions for {case.records} records")
        else:
            values = json.loads(answer.body)["predictions"]
            if len(values) != case.records or not all(isinstance(v, float) and math.isfinite(v) for v in values):
                found.append(f"{len(values)} predictions for {case.records} records")
        return found
    try:
        error = json.loads(answer.body)
    except ValueError:
        return found + [f"a {answer.status} that is not JSON: {answer.body[:200]!r}"]
    if not headers.get("content-type", "").startswith("application/json") or set(error) != {"error", "field", "row"}:
        found.append(f"a {answer.status} not in the error shape: {error}")
    elif case.expect == "ok":
        found.append(f"a {answer.status} for a valid request: {error['error']}")
    elif case.expect == "status" and answer.status != case.status:
        found.append(f"{answer.status} where {case.status} was due: {error['error']}")
    elif case.expect == "row" and (answer.status != 400 or error["row"] != case.row):
        found.append(f"{answer.status} naming row {error['row']}, the fault is in row {case.row}: {error['error']}")
    elif case.expect == "field" and (answer.status != 400 or (error["field"], error["row"]) != (case.field, case.row)):
        found.append(f"{answer.status} naming {error['field']!r} row {error['row']}, the fault is {case.field!r} "
                     f"row {case.row}: {error['error']}")
    return found


def run(send: Callable[[Case], Answer], schema: Schema, *, examples: int, seed: int | None = None) -> Tally:
    """Send ``examples`` generated cases; raises ``AssertionError`` on the first wrong answer (shrunk)."""
    tally = Tally()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(cases(schema))
    def check(case: Case) -> None:
        answer = send(case)
        tally.add(case, answer)
        wrong = problems(case, answer)
        assert not wrong, f"{wrong} for {case.kind} {case.headers} body {case.body[:300]!r}"

    (hypothesis_seed(seed)(check) if seed is not None else check)()
    return tally

