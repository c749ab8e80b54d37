"""Owns a request body on the wire, for the container's gunicorn worker (``serving/worker.py``): when the bytes
peeked from a connection hold a whole request, and how gunicorn's body readers are replaced.

- ``request_ready``: a request is served once it has arrived in the kernel's buffer (a Content-Length's worth
  of body, a chunked body up to its last chunk and trailer section, or no body), or ``STREAMING_BYTES`` of it
  are there (a large body that is arriving and is read as it comes).
- ``LargeReads``: a body with a Content-Length is read in large pieces. gunicorn's ``Body.read`` asks its
  reader for 1 KB at a time, and each 1 KB read re-buffers the 8 KB chunk it came from: a 5 MB body (10,000
  records) took 16-20 ms to read, as long as parsing it. The bytes and their order are the same.
- ``CheckedChunks``: a malformed chunked body is told from a client that went away. werkzeug reports both as a
  disconnect; a chunk-syntax error is raised as ``MalformedBody`` so the app answers 400, not 408.
- ``Deadline`` bounds the body's reads in all, not only each: a client sending a byte just inside every read
  timeout held the worker until gunicorn's master killed it as hung (``MODEL_SERVER_TIMEOUT``), and with it
  the request. Past the deadline a read raises ``BodyTimeout`` and the app answers 408.

Chunked coding: RFC 9112 section 7.1 (https://www.rfc-editor.org/rfc/rfc9112#section-7.1).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.errors import ChunkMissingTerminator, InvalidChunkExtension, InvalidChunkSize

# Peeked per connection: a request this large is taken to be streaming its body, and is read as it comes.
STREAMING_BYTES = 64 * 1024
# Largest piece a request body is received and handed on in (the body itself is bounded by the app's limit).
READ_PIECE = 1024 * 1024
_CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*(\d+)[ \t]*\r?\n")


def request_ready(peeked: bytes, max_body: int | None = None) -> bool:
    """Whether the bytes peeked from a connection hold a whole request, or enough to start reading it.

    A Content-Length over ``max_body`` (the app's limit) is ready at once: the app refuses it with 413
    without reading a byte of it, so there is nothing to wait for.
    """
    if len(peeked) >= STREAMING_BYTES:
        return True
    # The head ends at CRLF CRLF, as gunicorn reads it (RFC 9112 section 2.1): a head ending in bare LFs, taken
    # as arrived, was handed to a worker that then waited on gunicorn's read for the CRLF that never came.
    match = re.search(rb"\r\n\r\n", peeked)
    if match is None:
        return False
    head = peeked[:match.end()].lower()
    if b"\nexpect:" in head:  # the client waits for "100 Continue" before it sends the body
        return True
    length = _CONTENT_LENGTH.search(head)
    if length is not None:
        declared = int(length.group(1))
        return len(peeked) >= match.end() + declared or (max_body is not None and declared > max_body)
    if b"\ntransfer-encoding:" in head:
        return chunks_complete(peeked, match.end())
    return True


_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[^\r\n]*\r\n")  # a size, any chunk extension, CRLF (RFC 9112 §7.1)


def chunks_complete(peeked: bytes, start: int) -> bool:
    """Whether a chunked body starting at ``start`` has arrived up to its end: the last chunk (size 0, perhaps
    with an extension) and the trailer section (perhaps empty) closed by an empty line. Bytes that break the
    chunk syntax count as arrived: gunicorn reads them and answers 400 at once, nothing is gained by waiting.
    """
    at = start
    while True:
        if b"\r\n" not in peeked[at:at + 64]:
            return len(peeked) - at >= 64  # a size line this long is malformed
        size = _CHUNK_SIZE.match(peeked, at)
        if size is None:
            return True
        at = size.end()
        length = int(size.group(1), 16)
        if length == 0:
            return re.search(rb"(^|\r\n)\r\n", peeked[at:]) is not None  # the trailers' closing empty line
        at += length + 2
        if at > len(peeked):
            return False


class BodyTimeout(TimeoutError):
    """The body did not arrive within its deadline; the app finds ``body_deadline`` and says so in its 408."""

    body_deadline = True


@dataclass(frozen=True)
class Deadline:
    """Stands in for the client socket while a body is read: each ``recv`` waits at most ``per_read_s`` and never
    past ``at``, then raises ``BodyTimeout``. gunicorn's unreader loops over ``recv`` until it has what it was
    asked for, so the bound must be on each ``recv``, not on each read of the body."""

    client: socket.socket
    at: float  # time.monotonic()
    seconds: float
    per_read_s: float

    @classmethod
    def starting_now(cls, client: socket.socket, seconds: float, per_read_s: float) -> Deadline:
        return cls(client, time.monotonic() + seconds, seconds, per_read_s)

    def guard(self, unreader: object) -> None:
        """Route ``unreader``'s socket reads through this deadline (a socket's unreader; others are left)."""
        if getattr(unreader, "sock", None) is self.client:
            unreader.sock = self  # type: ignore[attr-defined]

    def recv(self, size: int) -> bytes:
        left = self.at - time.monotonic()
        if left <= 0:
            raise BodyTimeout(f"the request body did not arrive within {self.seconds:g} s")
        cut = left < self.per_read_s
        if cut:
            self.client.settimeout(left)
        try:
            return self.client.recv(size)
        except TimeoutError:
            if time.monotonic() >= self.at:
                raise BodyTimeout(f"the request body did not arrive within {self.seconds:g} s") from None
            raise
        finally:
            if cut:  # the answer is written with the worker's own timeout, not what was left of this one
                self.client.settimeout(self.per_read_s)

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)


class LargeReads:
    """Stands in for gunicorn's ``LengthReader``: the same bytes of the body, handed on ``READ_PIECE`` at a time.

    gunicorn's ``Body`` keeps whatever a read returns beyond what it asked for, so returning more is safe.
    """

    def __init__(self, reader: LengthReader) -> None:
        self.unreader = reader.unreader
        self.length = reader.length
        if hasattr(self.unreader, "mxchunk"):  # a socket's: one recv per piece, not per 8 KB
            self.unreader.mxchunk = READ_PIECE

    def read(self, size: int) -> bytes:
        size = min(self.length, max(size, READ_PIECE))
        if size <= 0:
            return b""
        data = self.unreader.read(size)  # exactly size bytes unless the client stopped sending
        self.length -= len(data)
        return data


class MalformedBody(ValueError):
    """A chunked body that breaks HTTP's chunk syntax. werkzeug reports any failed body read as a disconnect;
    the app finds this one as the disconnect's ``__context__`` (by ``malformed_body``) and answers 400, not 408.
    """

    malformed_body = True


class CheckedChunks:
    """Stands in for gunicorn's ``ChunkedReader``: the same bytes; a chunk-syntax error is ``MalformedBody``."""

    def __init__(self, reader: ChunkedReader) -> None:
        self._reader = reader

    def read(self, size: int) -> bytes:
        try:
            return self._reader.read(size)
        except (InvalidChunkSize, ChunkMissingTerminator, InvalidChunkExtension) as err:
            raise MalformedBody(f"malformed chunked body ({type(err).__name__})") from None
