"""A request body on the wire: when the bytes peeked from a connection hold a whole request, and large reads."""

from __future__ import annotations

import pytest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import IterUnreader

from serving.request_body import READ_PIECE, STREAMING_BYTES, LargeReads, request_ready

MAX_BODY = 6 * 1024 * 1024  # the launcher's default (serving/serve)
POST_HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(("peeked", "ready"), [
    (b"GET /ping HTTP/1.1\r\nHost: x\r\n", False),
    (b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (POST_HEAD + b"Content-Length: 5\r\n\r\n{}", False),
    (POST_HEAD + b"Content-Length: 2\r\n\r\n{}", True),
    (POST_HEAD + b"content-length:  2 \r\n\r\n{}", True),
    (POST_HEAD + b"Content-Length: 9\r\nExpect: 100-continue\r\n\r\n", True),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", False),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", True),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n", False),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Sum: 1\r\n", False),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Sum: 1\r\n\r\n", True),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2;a=b\r\n{}\r\n0;last\r\n\r\n", True),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n10\r\n0\r\n\r\n", False),  # "0\r\n\r\n" is chunk data
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}", True),  # malformed: gunicorn's 400 at once
    (POST_HEAD + b"Content-Length: 9999999\r\n\r\n" + b" " * STREAMING_BYTES, True),
])
def test_a_request_is_dispatched_once_it_has_arrived(peeked: bytes, ready: bool) -> None:
    assert request_ready(peeked) is ready


def test_a_body_declared_over_the_limit_is_dispatched_at_once_to_be_refused() -> None:
    declared_big = POST_HEAD + b"Content-Length: 1000000000\r\n\r\n{}"
    assert request_ready(declared_big, max_body=MAX_BODY) is True
    assert request_ready(declared_big) is False  # no limit known: wait for the body as before
    assert request_ready(POST_HEAD + f"Content-Length: {MAX_BODY}\r\n\r\n{{}}".encode(), max_body=MAX_BODY) is False


def test_a_body_read_in_large_pieces_is_the_same_bytes() -> None:
    # Given a body arriving in uneven chunks, followed on the wire by the start of another request
    payload = bytes(range(256)) * (3 * READ_PIECE // 256 + 7)
    chunks = [payload[i:j] for i, j in zip([0, *_cuts(len(payload))], [*_cuts(len(payload)), len(payload)],
                                             strict=True)]
    unreader = IterUnreader([*chunks, b"NEXT REQUEST"])
    body = Body(LargeReads(LengthReader(unreader, len(payload))))
    # When it is read in the app's one call, and then once more
    got, after = body.read(len(payload)), body.read(10)
    # Then it is the body, exactly, and nothing of what follows it
    assert got == payload and after == b""
    assert unreader.read() == b"NEXT REQUEST"


def _cuts(length: int) -> list[int]:
    return list(range(4093, length, 70_001))
