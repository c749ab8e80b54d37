"""Owns the container under load and under signals: the soak, SIGTERM and SIGKILL under load, stalled clients.

- ``soak``: mixed 1- and 100-record bodies from ``wrk`` (8 connections), errors counted, each worker's RSS
  read after a warm-up and at the end (growth is what a leak would show);
- ``sigterm_under_load``: whole requests on the wire (most waiting in the listen backlog) when SIGTERM
  arrives, each one's answer counted;
- ``sigkill_worker_under_load``: one worker SIGKILLed while clients post and ``/ping`` is polled: how many
  requests failed, when the replacement had loaded, and whether ``/ping`` said 200 before it had;
- ``stalled_ping``: how long ``/ping`` takes while clients hold connections with a body that never comes.

``start_container`` runs the container's launcher with our worker or, as the peer, gunicorn's sync worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from benchmarks import load, servers


def start_container(model_dir: Path, log_file: Path, *, workers: int = 2, worker_class: str | None = None,
                    cpu: int | None = None) -> servers.Running:
    """The container's launcher on a free port with ``workers`` workers; ``worker_class`` replaces ours (the peer)."""
    port = servers.free_port()
    spec = servers.ours(model_dir, port)
    env = {**spec.env, "SAGEMAKER_GUNICORN_WORKERS": str(workers)}
    if worker_class:
        env["GUNICORN_CMD_ARGS"] = f"--worker-class {worker_class}"
    server = servers.launch(replace(spec, env=env), port, log_file, cpu=cpu)
    wait_until(lambda: requests.get(f"{base_url(server)}/ping", timeout=2).status_code == 200, server.log)
    return server


def wait_until(ready: Any, log_file: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {timeout_s}s:\n{log_file.read_text(errors='replace')[-2000:]}")


def base_url(server: servers.Running) -> str:
    return f"http://{servers.HOST}:{server.port}"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers: the master's direct children."""
    return sorted(p for p in servers._tree(master) if servers._parent(p) == master)


@dataclass(frozen=True)
class Soak:
    seconds: float
    requests: int
    errors: int
    rps: float
    p99_ms: float
    rss_after_warmup_mb: dict[int, float]
    rss_end_mb: dict[int, float]

    @property
    def growth_mb(self) -> float:
        """The largest growth of one worker between the warm-up and the end."""
        return max(self.rss_end_mb[p] - self.rss_after_warmup_mb[p] for p in self.rss_end_mb)


def _rss_mb(master: int) -> dict[int, float]:
    return {pid: servers.rss_bytes(pid) / 2**20 for pid in worker_pids(master)}


def soak(url: str, master: int, bodies: list[Path], folder: Path, *, seconds: float, warmup_s: float,
         connections: int = 8) -> Soak:
    """Mixed load for ``warmup_s`` then ``seconds``; RSS of each worker after the warm-up and at the end."""
    script = load.write_script(folder)  # posts the bodies in turn

    def wrk(duration: float) -> str:
        argv = [load.wrk_path(), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout=10s",
                "-s", str(script), f"{url}/invocations", "--", *map(str, bodies)]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60).stdout

    wrk(warmup_s)
    before = _rss_mb(master)
    out = wrk(seconds)
    after = _rss_mb(master)
    result = load.parse(out, rows_per_request=1)
    if set(after) != set(before):
        raise RuntimeError(f"workers changed during the soak: {sorted(before)} -> {sorted(after)}")
    return Soak(seconds=result.seconds, requests=result.requests, errors=result.errors, rps=result.rps,
                p99_ms=result.p99_ms, rss_after_warmup_mb=before, rss_end_mb=after)


def _post(url: str, body: bytes, timeout_s: float = 30.0) -> int | str:
    try:
        return requests.post(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"},
                             timeout=timeout_s).status_code
    except requests.RequestException as err:
        return type(err).__name__


def post_until(url: str, body: bytes, deadline: float) -> list[int | str]:
    """POST ``body`` back to back until ``time.monotonic()`` reaches ``deadline``; each answer's status."""
    statuses = []
    while time.monotonic() < deadline:
        statuses.append(_post(url, body, timeout_s=10))
    return statuses


def _request(url: str, body: bytes) -> bytes:
    host = url.removeprefix("http://").split("/")[0]
    return (f"POST /invocations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def _status(sock: socket.socket) -> str:
    """The status of the answer on ``sock``, read to its end and closed, as a client does (the server lingers
    on a connection until its client closes it)."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError as err:
        return type(err).__name__
    finally:
        sock.close()
    parts = answer.split(b" ", 2)
    return parts[1].decode() if answer.startswith(b"HTTP/") and len(parts) > 1 else "no answer"


def sigterm_under_load(url: str, process: subprocess.Popen, body: bytes, *, clients: int = 48) -> dict[str, Any]:
    """Send ``clients`` whole requests on their own connections, then SIGTERM the master; count their answers.

    Every request is on the wire before the signal (most wait in the listen backlog behind busy workers), so
    each one is in flight: a server that drains answers them all.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    socks = []
    for _ in range(clients):
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(_request(url, body))
        socks.append(sock)
    process.send_signal(signal.SIGTERM)
    with ThreadPoolExecutor(clients) as pool:
        outcomes = Counter(pool.map(_status, socks))
    code = process.wait(timeout=60)
    return {"in_flight": clients, "answered_200": outcomes.get("200", 0), "lost": clients - outcomes.get("200", 0),
            "outcomes": dict(outcomes), "exit_code": code}


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _loaded_at(log: Path, pid: int) -> float | None:
    """When worker ``pid`` logged its model loaded (the log's own clock), as a Unix time."""
    for line in log.read_text(errors="replace").splitlines():
        if f"[{pid}]" in line and "self-test passed" in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def sigkill_worker_under_load(url: str, master: int, log: Path, body: bytes, *, seconds: float = 6.0,
                              clients: int = 4) -> dict[str, Any]:
    """SIGKILL one worker a second into ``seconds`` of load, polling ``/ping``; what the clients and pings saw."""
    stop = threading.Event()
    answers: list[tuple[float, str]] = []
    pings: list[tuple[float, float, int | str]] = []  # sent, answered, status

    def client() -> None:
        while not stop.is_set():
            answers.append((time.time(), str(_post(url, body, timeout_s=10))))

    def pinger() -> None:
        while not stop.is_set():
            sent = time.time()
            try:
                status: int | str = requests.get(f"{url}/ping", timeout=5).status_code
            except requests.RequestException as err:
                status = type(err).__name__
            pings.append((sent, time.time(), status))
            time.sleep(0.02)

    before = worker_pids(master)
    # The server answers once its first worker has loaded; the others may still be loading. Killing the only
    # loaded one would leave nobody to answer meanwhile, which is not the case this measures.
    deadline = time.monotonic() + 120
    while not all(_loaded_at(log, pid) for pid in before) and time.monotonic() < deadline:
        time.sleep(0.1)
    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=pinger)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    while _running(victim):  # the signal takes a moment to land: a ping sent before that may meet the victim
        time.sleep(0.001)
    killed_at = time.time()
    deadline, loaded, replacements = time.monotonic() + 120, None, []
    while loaded is None and time.monotonic() < deadline:  # however long the replacement takes to load
        time.sleep(0.2)
        replacements = sorted(set(worker_pids(master)) - set(before))
        loaded = _loaded_at(log, replacements[0]) if replacements else None
    time.sleep(max(seconds - 1.0 - (time.time() - killed_at), 1.0))  # and load after it
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    after = worker_pids(master)
    # Pings sent once the victim was dead and answered before the replacement had loaded: with one worker, none
    # may say 200 (one that waits in the backlog and is answered after the load is right to); with two, all must.
    # Their statuses are returned whole, so a failure shows whether the window was empty or the pings failed.
    window = Counter(str(s) for sent, got, s in pings if killed_at < sent and (loaded is None or got < loaded))
    outcomes = Counter(status for _, status in answers)
    return {"workers": len(before), "clients": clients, "killed": victim,
            "replaced": bool(replacements) and len(after) == len(before),
            "replacement_loaded_s": None if loaded is None else round(loaded - killed_at, 3),
            "requests": len(answers), "failed": sum(n for k, n in outcomes.items() if k != "200"),
            "ok_after_replacement": sum(s == "200" for t, s in answers if loaded is not None and t > loaded),
            "outcomes": dict(outcomes), "pings": len(pings), "ping_200_before_loaded": window["200"],
            "pings_before_loaded": dict(window)}


def busy_ping(url: str, body: bytes, *, clients: int = 8, seconds: float = 4.0) -> tuple[float, str]:
    """Seconds and status of a ``/ping`` whose request comes 0.2 s after its connection, sent a second into
    ``seconds`` of ``clients`` posting ``body`` back to back (with one worker, its backlog never runs dry)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + seconds

    def late_ping() -> tuple[float, str]:
        time.sleep(1.0)
        sock = socket.create_connection((host, int(port)), timeout=seconds + 10)
        time.sleep(0.2)  # accepted (the kernel completes the handshake) long before the request comes
        started = time.monotonic()
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        status = _status(sock)
        return time.monotonic() - started, status

    with ThreadPoolExecutor(clients + 1) as pool:
        loads = [pool.submit(post_until, url, body, deadline) for _ in range(clients)]
        waited_s, status = pool.submit(late_ping).result()
        for load in loads:
            load.result()
    return waited_s, status


def stalled_ping(url: str, *, stalled: int) -> float:
    """Seconds ``/ping`` takes while ``stalled`` clients sent headers and never the body (10 s at most)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    socks = []
    try:
        for _ in range(stalled):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n")
            socks.append(sock)
        started = time.monotonic()
        try:
            requests.get(f"{url}/ping", timeout=10)
        except requests.RequestException:
            return 10.0
        return time.monotonic() - started
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
