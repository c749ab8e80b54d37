"""The container's gunicorn worker: JSON errors before the app, stalled clients, and a SIGTERM that drains."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from benchmarks import soak
from serving.predictor import Predictor
from serving.request_body import STREAMING_BYTES
from serving.worker import READ_TIMEOUT_S
from tests.serving.serving_helpers import METADATA, SERVE, Server, free_port, sample_records, start_server

MAX_BODY = 6 * 1024 * 1024  # the launcher's default (serving/serve), which the module's server runs with
POST_HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def _connect(server: Server, timeout: float = READ_TIMEOUT_S + 10) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def _exchange(server: Server, data: bytes, timeout: float = READ_TIMEOUT_S + 10) -> tuple[int, dict[str, str], bytes]:
    with _connect(server, timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


# --- one server for the rest of the module ------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    server = start_server(model_dir, tmp_path_factory.mktemp("worker") / "server.log")
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    (b"GET /ping HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n", 400),
], ids=["request-line", "long-request-line", "long-header", "malformed-header", "http-version"])
def test_what_gunicorn_refuses_is_answered_in_the_api_error_shape(served: Server, request_bytes: bytes,
                                                                  status: int) -> None:
    code, headers, body = _exchange(served, request_bytes)

    assert code == status
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Model-Version"] == METADATA["version"], "the model headers, like every other answer"
    error = json.loads(body)
    assert set(error) == {"error", "field", "row"} and error["error"]


def _ping_behind(served: Server, sent: bytes, *, settle_s: float = 0.0) -> tuple[requests.Response, float]:
    """``/ping``'s answer and how long it took, while four clients (twice the workers) have sent ``sent`` and
    nothing more; ``settle_s`` gives the server time to accept and look at them first."""
    stalled = [_connect(served) for _ in range(4)]
    for sock in stalled:
        sock.sendall(sent)
    try:
        time.sleep(settle_s)
        started = time.monotonic()
        ping = requests.get(f"{served.url}/ping", timeout=5)
        return ping, time.monotonic() - started
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.slow
def test_stalled_clients_do_not_hold_the_workers_from_ping(served: Server) -> None:
    # Twice as many clients as workers send their headers and never their body.
    ping, took = _ping_behind(served, POST_HEAD + b"Content-Length: 100\r\n\r\n")

    assert ping.status_code == 200
    assert took < 1.0, f"/ping took {took:.2f}s behind stalled clients (SageMaker allows 2 s)"


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of proc(5))
        todo.extend(int(child) for child in children)
    return total


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_a_request_that_stops_half_way_does_not_keep_a_worker_busy(served: Server) -> None:
    # Given clients that sent part of their request line or part of a body, and then nothing more
    body = b'[{"hours": 1}]'.ljust(100)
    partial = [b"POST /invocati", POST_HEAD + b"Content-Length: 100\r\n\r\n" + body[:9]]
    stalled = [_connect(served) for _ in partial]
    for sock, data in zip(stalled, partial, strict=True):
        sock.sendall(data)
    try:
        time.sleep(0.3)  # accepted and looked at
        before = _cpu_seconds(served.process.pid)
        time.sleep(2.0)
        used = _cpu_seconds(served.process.pid) - before
        # Then the workers wait for them without spinning (a level-triggered selector wakes at once, forever,
        # on bytes left unread: one core per stalled connection until the read timeout)
        assert used < 0.5, f"the server used {used:.2f} s of CPU in 2 s while two clients were stalled"
        # And a request that then arrives in full is served as usual
        stalled[1].sendall(body[9:])
        stalled[1].settimeout(5)
        assert stalled[1].recv(64).startswith(b"HTTP/1.1 "), "the completed request is answered"
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.slow
def test_a_request_that_never_arrives_gets_a_json_408(served: Server) -> None:
    with ThreadPoolExecutor(2) as pool:
        headers_only = pool.submit(_exchange, served, POST_HEAD + b"Content-Length: 100\r\n\r\n[")
        # A large body that stops: it is read as it comes, and the read times out inside the app.
        half_body = pool.submit(_exchange, served, POST_HEAD + f"Content-Length: {4 * STREAMING_BYTES}\r\n\r\n"
                                .encode() + b" " * (2 * STREAMING_BYTES))
        answers = [headers_only.result(), half_body.result()]

    for code, headers, body in answers:
        assert code == 408, body
        assert headers["Content-Type"] == "application/json" and json.loads(body)["error"]
    assert requests.get(f"{served.url}/ping", timeout=5).status_code == 200


@pytest.mark.slow
def test_a_body_declared_over_the_limit_is_refused_at_once_not_waited_for(served: Server) -> None:
    # Given a client that declares a body far over the limit and sends two bytes of it (waiting for the rest
    # of the body would time this client out first)
    code, _, body = _exchange(served, POST_HEAD + b"Content-Length: 1000000000\r\n\r\n{}", timeout=READ_TIMEOUT_S / 2)
    # Then the answer is the app's 413 in the API's error shape, before the read timeout
    assert code == 413, body[:300]
    assert json.loads(body)["error"]


@pytest.mark.slow
@pytest.mark.parametrize("last", [b"0\r\nX-Checksum: 1\r\n\r\n", b"0;final=yes\r\n\r\n"], ids=["trailer", "extension"])
def test_a_chunked_body_with_a_trailer_or_extension_is_served_at_once(served: Server, last: bytes) -> None:
    body = json.dumps(sample_records(1)[0]).encode()
    started = time.monotonic()
    code, _, answer = _exchange(served, POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                                + f"{len(body):x}\r\n".encode() + body + b"\r\n" + last)
    assert code == 200, answer
    assert time.monotonic() - started < READ_TIMEOUT_S / 2, "answered when it arrived, not at the read timeout"


@pytest.mark.slow
def test_a_body_compressed_in_its_transfer_coding_is_a_415(served: Server) -> None:
    body = gzip.compress(json.dumps(sample_records(1)[0]).encode())
    code, _, answer = _exchange(served, POST_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                                + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    assert code == 415, answer
    assert "Transfer-Encoding 'gzip'" in json.loads(answer)["error"]


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"1\r\n{}\r\n0\r\n\r\n"],
                         ids=["size-not-hex", "size-shorter-than-data"])
def test_a_malformed_chunked_body_is_a_400_not_a_timeout(served: Server, chunks: bytes) -> None:
    code, headers, body = _exchange(served, POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert code == 400, body
    assert "malformed chunked body" in json.loads(body)["error"]
    assert requests.get(f"{served.url}/ping", timeout=5).status_code == 200


# --- large bodies ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_10k_record_body_through_gunicorn_predicts_what_the_model_predicts(served: Server,
                                                                             predictor: Predictor) -> None:
    records, _ = sample_records(rows=500, seed=5)
    batch = [records[i % 500] for i in range(10_000)]
    answer = requests.post(f"{served.url}/invocations", data=json.dumps(batch).encode(),
                           headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["predictions"] == predictor.predict(batch).tolist()


@pytest.mark.slow
def test_a_body_cut_short_by_the_client_is_a_json_408(served: Server) -> None:
    # The client sends half of a large body and closes its side: the app's read ends early.
    with _connect(served) as sock:
        sock.sendall(POST_HEAD + f"Content-Length: {4 * STREAMING_BYTES}\r\n\r\n".encode()
                     + b" " * (2 * STREAMING_BYTES))
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b" ", 2)[1] == b"408", answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


# --- SIGTERM ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_answers_every_request_already_queued(model_dir: Path, tmp_path: Path) -> None:
    server = start_server(model_dir, tmp_path / "server.log")
    body = json.dumps(sample_records(rows=100, seed=1)[0]).encode()

    result = soak.sigterm_under_load(server.url, server.process, body, clients=48)

    assert result["exit_code"] == 0
    assert result["lost"] == 0, f"lost in the shutdown: {result}\n{server.output()[-2000:]}"


@pytest.mark.slow
def test_a_worker_kept_busy_past_the_timeout_keeps_its_heartbeat(model_dir: Path, tmp_path: Path) -> None:
    # gunicorn's master kills a worker whose heartbeat is older than --timeout (MODEL_SERVER_TIMEOUT). A worker
    # that never runs out of queued connections must still beat, or a steady load kills it every timeout.
    timeout_s = 2
    server = start_server(model_dir, tmp_path / "server.log",
                          env={"SAGEMAKER_GUNICORN_WORKERS": "1", "MODEL_SERVER_TIMEOUT": str(timeout_s)})
    body = json.dumps(sample_records(rows=100, seed=3)[0]).encode()
    deadline = time.monotonic() + 3 * timeout_s

    try:
        before = soak.worker_pids(server.process.pid)
        with ThreadPoolExecutor(4) as pool:  # four clients keep the one worker's backlog from ever emptying
            loads = [pool.submit(soak.post_until, server.url, body, deadline) for _ in range(4)]
            statuses = [s for load in loads for s in load.result()]
        after = soak.worker_pids(server.process.pid)
    finally:
        server.stop()

    assert "WORKER TIMEOUT" not in server.output(), server.output()[-2000:]
    assert after == before and statuses and set(statuses) == {200}, (before, after, statuses[-5:])


@pytest.mark.slow
def test_a_request_that_arrives_after_its_connection_is_not_starved_by_a_busy_backlog(model_dir: Path,
                                                                                       tmp_path: Path) -> None:
    # A connection accepted before its request arrived waits in the worker's selector. While the backlog never runs
    # dry (eight clients on one worker), the worker must still come back to it: SageMaker restarts a container whose
    # /ping takes over 2 s.
    server = start_server(model_dir, tmp_path / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": "1"})
    try:
        waited_s, status = soak.busy_ping(server.url, json.dumps(sample_records(rows=100, seed=4)[0]).encode())
    finally:
        server.stop()

    assert status == "200" and waited_s < 1.0, f"/ping waited {waited_s:.2f} s behind the load (status {status})"


@pytest.mark.slow
def test_a_body_trickled_in_within_every_read_timeout_gets_a_408_at_the_deadline(model_dir: Path,
                                                                                  tmp_path: Path) -> None:
    # Given one worker whose master kills it after 6 s without a heartbeat: the body's deadline is half of that
    timeout_s = 6
    server = start_server(model_dir, tmp_path / "server.log",
                          env={"SAGEMAKER_GUNICORN_WORKERS": "1", "MODEL_SERVER_TIMEOUT": str(timeout_s)})
    try:
        before = soak.worker_pids(server.process.pid)
        # When a client starts a large body and then sends a byte every 0.3 s, well inside each read's timeout
        with _connect(server, timeout=0.3) as sock:
            sock.sendall(POST_HEAD + f"Content-Length: {4 * STREAMING_BYTES}\r\n\r\n".encode()
                         + b" " * (2 * STREAMING_BYTES))
            started, answer = time.monotonic(), b""
            while time.monotonic() - started < 3 * timeout_s:
                try:
                    sock.sendall(b" ")
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
            took = time.monotonic() - started
        after = soak.worker_pids(server.process.pid)
    finally:
        server.stop()
    # Then it is answered 408 at the deadline, naming it, by the same worker (before: killed as hung, no answer)
    assert answer.split(b" ", 2)[1:2] == [b"408"], (answer[:300], server.output()[-4000:])
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "the request body did not arrive within 3 s"
    assert took < timeout_s, f"answered after {took:.1f} s"
    assert "WORKER TIMEOUT" not in server.output() and after == before, server.output()[-1500:]


@pytest.mark.slow
def test_heads_ending_in_bare_line_feeds_wait_outside_the_workers(served: Server) -> None:
    # gunicorn reads a head up to CRLF CRLF; heads ending "\n\n" were dispatched as arrived and held a worker each
    ping, took = _ping_behind(served, b"GET /ping HTTP/1.1\nHost: x\n\n", settle_s=0.3)  # accepted and looked at
    assert ping.status_code == 200
    assert took < 1.0, f"/ping took {took:.2f}s behind four bare-LF heads (SageMaker allows 2 s)"


@pytest.mark.slow
def test_gunicorn_run_with_hung_worker_kills_off_still_reads_bodies(model_dir: Path, tmp_path: Path) -> None:
    # gunicorn's own --timeout 0 (not reachable through serve, which wants at least 1) gives the worker a heartbeat
    # interval of 0: taken as the body's deadline, every body would be a 408
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "SM_MODEL_DIR": str(model_dir), "SERVING_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_GUNICORN_WORKERS": "1", "TMPDIR": str(tmp_path)}
    dry = subprocess.run([str(SERVE), "serve", "--dry-run"], env=env, capture_output=True, text=True, check=True)
    tunables, *argv = shlex.split(dry.stdout)
    argv[argv.index("--timeout") + 1] = "0"
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, env={**env, tunables.split("=", 1)[0]: tunables.split("=", 1)[1]},
                                   stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        for _ in range(600):
            try:
                requests.get(f"{server.url}/ping", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.1)
        records = sample_records(rows=20, seed=5)[0]
        answer = requests.post(f"{server.url}/invocations", json=records, timeout=10)
    finally:
        server.stop()
    assert answer.status_code == 200, (answer.text, server.output()[-1500:])
    assert len(answer.json()["predictions"]) == 20
