"""What every benchmark's smoke test checks of its result file."""

from __future__ import annotations

import time


def assert_run_recorded(run: dict, mode: str) -> None:
    """A result file says when, how long, and under what load it was made."""
    assert run["mode"] == mode and run["total_s"] > 0
    assert time.strptime(run["date"], "%Y-%m-%dT%H:%M:%S%z")
    assert len(run["load_before"]) == len(run["load_after"]) == 3
