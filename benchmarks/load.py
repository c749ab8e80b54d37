"""Owns load generation: one ``wrk`` run POSTing a fixed JSON body, parsed into throughput and latency.

``wrk`` is Debian's package (``apt-get install wrk``); this module never installs it. A Lua script
reads the body from a file, sends it on every request, and at the end prints one JSON line with the
request count, the duration, error counts and latency percentiles, which ``run_wrk`` parses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_MISSING = "wrk not found on PATH: install it with `apt-get install wrk` (Debian/Ubuntu), then re-run"
MARKER = "BENCH_RESULT "
LUA = """\
-- POST the bodies read from the files named by the script's arguments, in turn; print one JSON summary line.
local reqs, n = {}, 0
function init(args)
  for i, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    reqs[i] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, f:read("*a"))
    f:close()
  end
end
function request()
  n = n + 1
  return reqs[(n % #reqs) + 1]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'MARKER{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "non_2xx": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
""".replace("MARKER", MARKER)


class WrkMissing(RuntimeError):
    """``wrk`` is not installed."""


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: requests per second, rows per second and latency in milliseconds."""

    requests: int
    seconds: float
    errors: int
    rps: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    def to_json(self) -> dict:
        return asdict(self)


def wrk_path() -> str:
    """The ``wrk`` executable.

    Raises:
        WrkMissing: not installed.
    """
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(WRK_MISSING)
    return path


def write_script(folder: Path) -> Path:
    path = folder / "post.lua"
    path.write_text(LUA, encoding="utf-8")
    return path


def parse(stdout: str, rows_per_request: int) -> LoadResult:
    """The result line printed by the Lua script's ``done``.

    Raises:
        RuntimeError: no result line (wrk failed before finishing).
    """
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line.removeprefix(MARKER))
            break
    else:
        raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx"))
    ok = raw["requests"] - raw["non_2xx"]
    rps = ok / seconds if seconds > 0 else 0.0
    return LoadResult(requests=raw["requests"], seconds=round(seconds, 3), errors=errors, rps=round(rps, 1),
                      rows_per_s=round(rps * rows_per_request, 1), p50_ms=raw["p50_us"] / 1000,
                      p99_ms=raw["p99_us"] / 1000, max_ms=raw["max_us"] / 1000)


def run_wrk(url: str, body_file: Path, script: Path, *, seconds: float, connections: int, rows_per_request: int,
            cpu: int | None, timeout_s: float = 5.0) -> LoadResult:
    """One wrk run of ``seconds`` against ``url`` with one thread and ``connections`` connections.

    ``cpu`` pins wrk to that CPU with ``taskset`` (None: not pinned).
    """
    argv = [wrk_path(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s:g}s",
            "-s", str(script), url, "--", str(body_file)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[-1000:]}")
    return parse(done.stdout, rows_per_request)
