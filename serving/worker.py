"""Owns the gunicorn worker of the container: gunicorn's sync worker, made safe to face clients directly.

Four changes to ``gunicorn.workers.sync.SyncWorker`` (one request at a time per process, as before):

- **A request reaches the app only once it has arrived.** A sync worker reads a request with blocking
  calls, so a client that sends headers and never its body holds the worker until the worker timeout;
  two such clients held both workers and ``/ping`` went unanswered (SageMaker restarts a container whose
  ``/ping`` takes over 2 s). Here accepted connections wait in a selector until their request is complete
  in the kernel's buffer (peeked, not read), or ``STREAMING_BYTES`` of it are there (a large body that is
  arriving); meanwhile other connections are served, one accepted request at a time between looks at the
  waiting ones, so a backlog that never runs dry cannot starve them. Bytes left unread wake a level-triggered
  selector at once, so a connection whose bytes stopped growing is parked and looked at again after a pause
  (``PARK_MIN_S`` doubling to ``PARK_MAX_S``): a half-sent request costs a few peeks a second, not a core.
  A chunked body is complete at its last chunk and trailer section. A connection whose request is not
  ready within ``READ_TIMEOUT_S`` gets a JSON 408 and is closed, and reads of a request being served time
  out after the same, and all of them after half the worker timeout (``request_body.Deadline``). A request declaring a body over the app's limit is served at once: the app answers 413 unread.
  This is what the buffering proxy gunicorn's documentation asks for in front of sync workers does.
- **SIGTERM drains.** gunicorn's sync worker exits after its current request, and the connections queued
  in the listen backlog are reset when the last process closes the socket. Here the worker first accepts
  and answers every connection already queued, within the graceful timeout.
- **gunicorn's own errors are JSON.** A malformed or oversized request line or header is refused by
  gunicorn before the app sees it, with an HTML page; here it is ``{"error", "field", "row"}`` with the
  model headers, like every other error of the API (``serving/app.py``). The status is gunicorn's.
- **Bodies are read through ``serving/request_body.py``**: a Content-Length's body in large pieces, a chunked
  body's syntax errors as ``MalformedBody`` (400, not a disconnect's 408).

Docs: https://docs.gunicorn.org/en/stable/design.html ("sync workers ... need to be behind a buffering
proxy"), https://docs.gunicorn.org/en/stable/signals.html (TERM: graceful shutdown).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import selectors
import socket
import time
from typing import Any

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.sync import SyncWorker

from serving.request_body import STREAMING_BYTES, CheckedChunks, Deadline, LargeReads, request_ready

READ_TIMEOUT_S = 10.0
# Connections waiting for their request, per worker; the rest stay in the listen backlog meanwhile.
MAX_WAITING = 256
# A waiting connection whose bytes have not grown since the last look is set aside (the selector is level-triggered:
# unread bytes would wake it at once, forever) and looked at again after this, doubling up to PARK_MAX_S while nothing
# arrives; bytes that arrive reset it. A stalled client costs a few peeks a second, not a core.
PARK_MIN_S = 0.001
PARK_MAX_S = 0.1


def json_error(status: int, reason: str, message: str, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 error response in the API's JSON error shape; the connection closes after it."""
    body = json.dumps({"error": message, "field": None, "row": None}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Captured:
    """Stands in for the client socket while gunicorn writes its HTML error page, to learn its status."""

    def __init__(self, client: socket.socket) -> None:
        self._client = client
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.written += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclasses.dataclass
class Waiting:
    """A connection waiting for its request: where it came from, until when, and what was seen of it."""

    listener: Any
    addr: Any
    deadline: float
    seen: int = 0  # bytes peeked at the last look
    misses: int = 0  # looks in a row that found no new bytes
    wake: float | None = None  # set while parked (out of the selector)


class Worker(SyncWorker):
    """gunicorn's sync worker with ready-first dispatch, a draining SIGTERM and JSON errors."""

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        for listener in self.sockets:
            self.selector.register(listener, selectors.EVENT_READ, None)
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, "wake")
        self.waiting: dict[socket.socket, Waiting] = {}
        while self.alive:
            self.notify()
            self._serve(accepting=self._listen(len(self.waiting) < MAX_WAITING))
            if not self.is_parent_alive():
                break
        self._drain(deadline=time.monotonic() + max(self.cfg.graceful_timeout - 1.0, 0.5))

    def _listen(self, accepting: bool) -> bool:
        """Watch the listeners only while there is room for another waiting connection (no busy loop when full)."""
        for listener in self.sockets:
            watched = listener in self.selector.get_map()
            if accepting and not watched:
                self.selector.register(listener, selectors.EVENT_READ, None)
            elif not accepting and watched:
                self.selector.unregister(listener)
        return accepting

    def _serve(self, *, accepting: bool, wait_s: float | None = None) -> None:
        soonest = min((min(w.deadline, w.wake or w.deadline) for w in self.waiting.values()), default=None)
        timeout = wait_s if wait_s is not None else (self.timeout or 0.5) / 2
        if soonest is not None:
            timeout = max(0.0, min(timeout, soonest - time.monotonic()))
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            events = []
        for key, _ in events:
            if key.data == "wake":
                os.read(self.PIPE[0], 64)
            elif key.data is None:
                if accepting:
                    self._accept(key.fileobj)
            else:
                self._dispatch_if_ready(key.fileobj)
        self._unpark()
        self._expire()

    def _accept(self, listener: socket.socket) -> int:
        accepted = 0
        while len(self.waiting) < MAX_WAITING:
            try:
                client, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as err:
                if err.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            accepted += 1
            client.setblocking(False)
            # Most requests have arrived by the time they are accepted: those are served at once, the rest wait.
            # One served, back to the selector: a backlog that never runs dry must not starve the waiting ones.
            if self._serve_if_ready(client, listener, addr):
                return accepted
            self.waiting[client] = Waiting(listener, addr, time.monotonic() + READ_TIMEOUT_S)
            self.selector.register(client, selectors.EVENT_READ, "client")
        return accepted

    def _dispatch_if_ready(self, client: socket.socket) -> None:
        waiting = self.waiting[client]
        self._serve_if_ready(client, waiting.listener, waiting.addr, waited=True)

    def _park(self, client: socket.socket, seen: int) -> None:
        """Stop watching a waiting connection whose bytes did not grow; ``_unpark`` watches it again later."""
        waiting = self.waiting[client]
        if seen > waiting.seen:
            waiting.seen, waiting.misses = seen, 0
            return  # bytes arrived since the last look: the next wake-up without new bytes parks it
        waiting.misses += 1
        waiting.wake = time.monotonic() + min(PARK_MAX_S, PARK_MIN_S * 2 ** (waiting.misses - 1))
        self.selector.unregister(client)

    def _unpark(self) -> None:
        now = time.monotonic()
        for client, waiting in self.waiting.items():
            if waiting.wake is not None and waiting.wake <= now:
                waiting.wake = None
                self.selector.register(client, selectors.EVENT_READ, "client")

    def _serve_if_ready(self, client: socket.socket, listener: Any, addr: Any, *, waited: bool = False) -> bool:
        try:
            peeked = client.recv(STREAMING_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            peeked = b""  # reset by the peer: handle() closes it quietly
        if peeked and not request_ready(peeked, self._max_body()):
            if waited:
                self._park(client, len(peeked))
            return False
        if waited:
            self._forget(client)
        client.setblocking(True)
        client.settimeout(READ_TIMEOUT_S)
        # A heartbeat per request served, from whichever loop it is dispatched (gunicorn's sync worker beats per
        # accept): a worker kept busy must not look hung to the master, which kills one silent for --timeout.
        self.notify()
        self.handle(listener, client, addr)
        return True

    def _expire(self) -> None:
        now = time.monotonic()
        for client in [c for c, waiting in self.waiting.items() if waiting.deadline <= now]:
            self._forget(client)
            try:
                client.sendall(json_error(408, "Request Timeout", f"the request did not arrive within "
                                          f"{READ_TIMEOUT_S:g} s", self._trace_headers()))
                client.shutdown(socket.SHUT_WR)
                # Unread bytes at close() would make the kernel answer RST, which can discard the 408 unread.
                while client.recv(65536):
                    pass
            except OSError:  # BlockingIOError included: nothing more to drain without waiting for it
                pass
            client.close()

    def _drain(self, *, deadline: float) -> None:
        """Answer every connection already accepted or queued in the backlog, then stop (SIGTERM)."""
        while time.monotonic() < deadline:
            queued = sum(self._accept(listener) for listener in self.sockets)
            if not queued and not self.waiting:
                return
            self.notify()
            self._serve(accepting=False, wait_s=0.0 if queued else 0.05)  # waits only when the backlog is empty
        for client in list(self.waiting):
            client.close()

    def _forget(self, client: socket.socket) -> None:
        if self.waiting.pop(client).wake is None:  # a parked connection is not in the selector
            self.selector.unregister(client)

    def _max_body(self) -> int | None:
        return getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")

    def _trace_headers(self) -> dict[str, str]:
        return dict(getattr(self.wsgi, "config", {}).get("TRACE_HEADERS") or {})

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> Any:
        body = getattr(req, "body", None)
        # The body must arrive within half the master's hung-worker timeout (gunicorn hands a worker half of
        # --timeout as self.timeout, its heartbeat interval): a 408 then, not a killed worker and a model reload.
        # gunicorn's --timeout 0 turns hung-worker kills off (self.timeout 0): then only each read is bounded.
        if self.timeout > 0:
            Deadline.starting_now(client, self.timeout, READ_TIMEOUT_S).guard(getattr(req, "unreader", None))
        if isinstance(getattr(body, "reader", None), LengthReader):
            body.reader = LargeReads(body.reader)
        elif isinstance(getattr(body, "reader", None), ChunkedReader):
            body.reader = CheckedChunks(body.reader)
        return super().handle_request(listener, req, client, addr)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # gunicorn logs, chooses the status and writes its page; the page is caught and replaced by JSON.
        captured = _Captured(client)
        super().handle_error(req, captured, addr, exc)
        status_line = captured.written.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        status = int(status_line[1]) if len(status_line) == 3 and status_line[1].isdigit() else 500
        reason = status_line[2] if len(status_line) == 3 else "Internal Server Error"
        message = (f"{reason}: {str(exc)[:200]}" if status < 500 and str(exc)
                   else "internal error (see the container log)" if status == 500 else reason)
        try:
            client.setblocking(True)
            client.sendall(json_error(status, reason, message, self._trace_headers()))
        except OSError:
            self.log.debug("Failed to send error message.")
