"""Owns the local chain a load test runs against by default: ``python -m infra.local`` started on loopback.

The stand-in runs in its own process (its Lambda instances are processes too), with its output in a log file
next to the results, so that nothing it prints can block it. Its first lines name the front door's URL and
the endpoint's counts URL (``infra/local/cli.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.cli import UserError

ROOT = Path(__file__).resolve().parents[1]
FRONT_DOOR = "front door: POST "
COUNTS = "counts at GET "


@dataclass(frozen=True)
class StandIn:
    url: str
    stats_url: str
    log: Path

    def stats(self) -> dict[str, Any]:
        """The stand-in endpoint's counts (attempts, retries, throttles, cold starts, peak concurrency)."""
        with urllib.request.urlopen(self.stats_url, timeout=5) as answer:  # noqa: S310 - loopback http
            return json.loads(answer.read())


def _wait_for_urls(process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        url = next((line[len(FRONT_DOOR):].strip() for line in text.splitlines() if line.startswith(FRONT_DOOR)),
                   None)
        counts = next((line.rsplit(COUNTS, 1)[1].strip() for line in text.splitlines() if COUNTS in line), None)
        if url and counts:
            return url, counts
        if process.poll() is not None:
            last = (text.strip().splitlines() or ["(no output)"])[-1]
            raise UserError(f"the stand-in exited with code {process.returncode}: {last}")
        time.sleep(0.2)
    raise UserError(f"the stand-in did not start within {timeout_s:.0f} s (see {log})")


@contextmanager
def running(args: Sequence[str], *, log: Path, timeout_s: float = 120.0) -> Iterator[StandIn]:
    """Start ``python -m infra.local --port 0 ARGS``; stop it (SIGTERM, then SIGKILL) on the way out."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "infra.local", "--port", "0", *args], cwd=ROOT, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url, counts = _wait_for_urls(process, log, timeout_s)
        yield StandIn(url=url, stats_url=counts, log=log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
