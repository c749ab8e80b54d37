"""Owns what the predict Lambda refuses before the endpoint is called: bodies that can never be a request.

The container does the full schema check; these only refuse what is not UTF-8 text, not JSON, nested too
deep, too large, or not one record or a list of records, so that it is not paid for twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any

if __package__:
    from . import contract
else:
    import contract


def request_text(event: dict[str, Any]) -> str | tuple[int, str]:
    """The event's body as text (``""`` when it has none), or ``(400, message)`` when it is not UTF-8 text.

    API Gateway sends a body base64-encoded (``isBase64Encoded``) when it takes it for binary; a text body
    may still carry lone surrogates (``\\ud800`` in the event's JSON), which no UTF-8 encoder accepts.
    """
    body = event.get("body")
    if body is None:
        return ""
    if not isinstance(body, str):
        return 400, "the body must be text"
    try:
        if event.get("isBase64Encoded"):
            return base64.b64decode(body, validate=True).decode("utf-8")
        body.encode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeError is a ValueError
        return 400, "the body is not UTF-8 text (or not valid base64 where isBase64Encoded is set)"
    return body


def check_content_type(event: dict[str, Any]) -> tuple[int, str] | None:
    """``(415, message)`` when the body is declared as a format the container reads but the API does not.

    The API takes JSON. A CSV or JSON Lines body would otherwise be misread as JSON ("not valid JSON"); any
    other type, or none, is read as JSON, as the body is the contract (``curl -d`` sends a form type).
    """
    headers = event.get("headers") or {}
    declared = next((str(v) for k, v in headers.items() if str(k).lower() == "content-type"), "")
    media_type = contract.media_type(declared)
    if media_type != contract.JSON and media_type in contract.REQUEST_TYPES:
        return 415, f"unsupported Content-Type '{media_type}': the API takes JSON (application/json) only"
    return None


def check_body(raw: str | None, *, max_records: int, max_bytes: int) -> tuple[int, str] | int:
    """Check a body can be a request; return the record count, or ``(status, message)`` to refuse it."""
    if not raw:
        return 400, "the body must be a JSON object or a non-empty list of objects"
    if len(raw.encode("utf-8")) > max_bytes:
        return 413, f"the body is larger than {max_bytes} bytes"
    try:
        payload = json.loads(raw)
    except RecursionError:
        return 400, "the body is nested too deeply to be a record or a list of records"
    except json.JSONDecodeError:
        return 400, "the body is not valid JSON"
    except ValueError:  # valid JSON, but an integer of more digits than Python reads (sys.get_int_max_str_digits)
        return 400, f"the body holds a number of more than {sys.get_int_max_str_digits()} digits"
    if isinstance(payload, dict):
        wrapper = [key for key in contract.BATCH_WRAPPERS if key in payload]
        if wrapper:
            # The container would unwrap these into many records, past this function's record bound.
            return 400, f"send one record or a list of records, not a '{sorted(wrapper)[0]}' wrapper"
        return 1
    if not isinstance(payload, list) or not payload:
        return 400, "the body must be a JSON object or a non-empty list of objects"
    if len(payload) > max_records:
        return 413, f"at most {max_records} records per request, got {len(payload)}"
    for row, record in enumerate(payload):
        if not isinstance(record, dict):
            return 400, f"row {row}: each record must be a JSON object"
    return len(payload)
