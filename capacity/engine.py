"""Owns the load generator: Locust, run as a library in a process of its own, writing one line per request.

Run as ``python -m capacity.engine SPEC.json OUT.jsonl`` by ``capacity/loadtest.py``, never imported by it:
importing Locust monkey-patches the standard library with gevent, which must not leak into the caller.

Offered rate: Locust drives users, not arrivals. Here one greenlet ticks at the step's rate and the users take
the ticks from a queue, so requests start evenly spaced whatever the latency (an open loop, like independent
callers) as long as a user is free. Each step has ``2 x rate + 2`` users, enough for answers of up to about
two seconds; a tick no user took within ``STALE_S`` is dropped rather than sent late in a burst, and the report
shows the shortfall as "offered" below the target.

Each line of OUT is ``[start_s, latency_s, status, origin, step]``; ``status`` is null when no answer came.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from capacity.classify import classify
from capacity.profiles import Step, rate_at, step_index

STALE_S = 0.25


def run(spec: dict[str, Any], out: Path) -> int:
    """Run the profile in ``spec`` against ``spec['url']``; returns how many requests were sent."""
    import gevent
    import gevent.queue
    from locust import FastHttpUser, LoadTestShape, task
    from locust.env import Environment
    from locust.runners import STATE_STOPPED

    steps = [Step(*step) for step in spec["steps"]]
    bodies = [body.encode() for body in spec["bodies"]]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    rows: list[list[Any]] = []
    started = time.monotonic()
    cap = int(spec["max_requests"])

    ticks: Any = None  # a gevent queue of scheduled start times, made once Locust has patched the library

    def tick_at_rate() -> None:
        due = time.monotonic()
        while (rate := rate_at(steps, due - started)) is not None:
            gevent.sleep(max(0.0, due - time.monotonic()))
            ticks.put(due)
            due = max(due + 1.0 / rate, time.monotonic() - STALE_S)

    class Predict(FastHttpUser):
        host = spec["base"]
        network_timeout = float(spec["timeout_s"])
        connection_timeout = min(5.0, float(spec["timeout_s"]))

        def wait_time(self) -> float:
            return 0.0

        @task
        def predict(self) -> None:
            try:
                due = ticks.get(timeout=1.0)
            except gevent.queue.Empty:
                return
            began = time.monotonic()
            if began - due > STALE_S or len(rows) >= cap:
                return
            t0 = began - started
            body = bodies[len(rows) % len(bodies)]
            with self.client.post(spec["path"], data=body, headers=headers, catch_response=True) as answer:
                latency = time.monotonic() - began
                status = answer.status_code or None
                error = repr(getattr(answer, "error", None) or "").lower()
                origin = classify(status, answer.text or "" if status else "", timed_out="timeout" in error)
                rows.append([round(t0, 4), round(latency, 4), status, origin, step_index(steps, t0)])
                answer.success()  # Locust's own failure log would only repeat what the report says

    class Shape(LoadTestShape):
        def tick(self) -> tuple[int, float] | None:
            rate = rate_at(steps, self.get_run_time())
            if rate is None or len(rows) >= cap:
                return None
            users = 2 * math.ceil(rate) + 2
            return users, float(users)

    environment = Environment(user_classes=[Predict], shape_class=Shape(), stop_timeout=float(spec["timeout_s"]))
    runner = environment.create_local_runner()
    ticks = gevent.queue.Queue()
    started = time.monotonic()
    gevent.spawn(tick_at_rate)
    runner.start_shape()
    deadline = started + sum(step.seconds for step in steps) + float(spec["timeout_s"]) + 10
    while runner.state != STATE_STOPPED and time.monotonic() < deadline:
        gevent.sleep(0.2)
    runner.quit()
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m capacity.engine SPEC OUT``; returns 0 once OUT is written."""
    spec_file, out_file = (argv if argv is not None else sys.argv[1:])[:2]
    run(json.loads(Path(spec_file).read_text(encoding="utf-8")), Path(out_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
