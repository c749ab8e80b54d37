"""Owns the wire contract of the predict chain: client -> API Gateway -> Lambda -> SageMaker -> container.

Written once, imported by every hop: the container (``serving/app.py``, ``serving/codecs.py``), the predict
Lambda (``infra/api/runtime/handler.py``; ``infra/api/runtime/contract.py`` is a link to this file, so it
ships inside the function's asset), the REST API's request model (``infra/api/infrastructure.py``), the local
stand-in (``infra/local``) and the smoke test (``infra/smoke``). Standard library only (the Lambda brings boto3).

- Route: ``POST /{STAGE}/{RESOURCE}`` on the API; the container's own are SageMaker's ``/ping``, ``/invocations``.
- Body through the API: one record (a JSON object) or a list of 1..``MAX_RECORDS`` records (``request_schema``).
  The container also takes the ``BATCH_WRAPPERS``; the API refuses them, so its bound counts what is scored.
- Every answer names the model that gave it in ``MODEL_HEADERS``. ``InvokeEndpoint`` passes on none of a
  container's headers but ``CUSTOM_ATTRIBUTES``, so the container sends the same facts there too
  (``model-name=..,model-version=..,data-hash=..``) and the Lambda turns them back into the headers.
- Capture (monitoring): the Lambda answers with ``REQUEST_ID_HEADER`` and, when capture is on, records one capture
  record per predicted record and one per refused request (``prediction_records``, ``refusal_record``), sent in
  the background by ``CaptureSender`` to Firehose or a local folder, laid out as ``capture_partition`` says.
  The monitoring jobs (``monitoring/``) read exactly these fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

STAGE = "score"
RESOURCE = "predict-student-score"
ROUTE = f"/{RESOURCE}"
ROUTE_PATH = f"/{STAGE}{ROUTE}"  # what clients call on the API, stage included
JSON = "application/json"
CSV = "text/csv"
JSONLINES = "application/jsonlines"
# The request media types the container reads (serving/codecs.py), each to the format it names. The API takes
# JSON only: the Lambda refuses the others with 415 rather than misreading them as JSON.
REQUEST_TYPES: dict[str, str] = {
    JSON: JSON, CSV: CSV, JSONLINES: JSONLINES,
    "application/jsonl": JSONLINES, "application/x-jsonlines": JSONLINES,
}
MAX_RECORDS = 100
# ``{"instances": [...]}``, MLflow's ``{"dataframe_records": [...]}`` and ``{"dataframe_split": {...}}``.
BATCH_WRAPPERS = ("instances", "dataframe_records", "dataframe_split")

# Response header -> the ``metadata.json`` field it carries.
MODEL_HEADERS = {"X-Model-Name": "registered_name", "X-Model-Version": "version", "X-Data-Hash": "data_hash"}
VERSION_HEADER = "X-Model-Version"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
# Response header -> its key inside the custom attributes.
ATTRIBUTE_KEYS = {"X-Model-Name": "model-name", "X-Model-Version": "model-version", "X-Data-Hash": "data-hash"}
API_KEY_HEADER = "X-Api-Key"
RETRY_AFTER_HEADER = "Retry-After"


def request_schema(*, max_records: int = MAX_RECORDS) -> dict[str, Any]:
    """The JSON Schema (draft 4, as API Gateway's models are) of the bodies the API lets through: the REST API's
    model is this document, and the stand-in's gateway checks bodies against it. No batch wrappers: they would
    carry past ``max_records``. What a record holds is the Lambda's and the model's to check."""
    record = {"type": "object", "not": {"anyOf": [{"required": [key]} for key in BATCH_WRAPPERS]}}
    return {"$schema": "http://json-schema.org/draft-04/schema#", "title": "PredictRequest",
            "oneOf": [record, {"type": "array", "items": record, "minItems": 1, "maxItems": max_records}]}


def bad_body_message(*, max_records: int = MAX_RECORDS) -> str:
    """What the API answers (400, the gateway's ``{"message"}`` shape) for a body ``request_schema`` refuses."""
    return (f"Invalid request body: send one record (a JSON object) or a list of 1 to {max_records} records, "
            f"none of them a batch wrapper ({', '.join(BATCH_WRAPPERS)})")


def media_type(content_type: str | None) -> str:
    """A ``Content-Type`` value's media type, lower case and without parameters ("" for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _printable(text: str) -> str:
    # Header values must be printable ASCII; a stray newline in metadata must not break every response.
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def model_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The model headers, and the custom attributes carrying them, for ``metadata.json`` (absent or empty: unknown)."""
    headers = {}
    for header, key in MODEL_HEADERS.items():
        value = metadata.get(key)
        headers[header] = _printable("unknown" if value is None or value == "" else str(value))
    # Separators inside a value would split it into bogus attributes.
    headers[CUSTOM_ATTRIBUTES] = ",".join(
        f"{ATTRIBUTE_KEYS[h]}={''.join('?' if c in ',;=' else c for c in headers[h])}" for h in MODEL_HEADERS)
    return headers


def headers_from_attributes(custom_attributes: str | None) -> dict[str, str]:
    """Turn ``model-name=..,model-version=..,data-hash=..`` (``,`` or ``;`` separated) back into headers."""
    by_key = {key: header for header, key in ATTRIBUTE_KEYS.items()}
    headers: dict[str, str] = {}
    for part in (custom_attributes or "").replace(";", ",").split(","):
        key, sep, value = part.partition("=")
        header = by_key.get(key.strip().lower())
        if sep and header and value.strip():
            headers[header] = value.strip()
    return headers


# --- Capture: what the front door records about each answer, for monitoring (issue 12) -----------------------
# One JSON line per predicted record, one per refused request, sent by the Lambda (the stand-in's too) to a Firehose
# stream writing under CAPTURE_PREFIX by CAPTURE_PARTITIONS, or to files in the same layout in a local folder.
CAPTURE_FORMAT = 1
CAPTURE_PREFIX = "capture"
PREDICTION, REFUSAL = "prediction", "refusal"
REQUEST_ID_HEADER = "X-Request-Id"
# Partition key -> the jq 1.6 expression Firehose's inline parsing extracts it with (dynamic partitioning).
CAPTURE_PARTITIONS = {"model": ".model_name", "version": ".model_version", "dt": ".time[0:10]"}
# PutRecordBatch: at most 500 records and "4 MB for the entire request" (API reference, "PutRecordBatch"), read as
# 4,000,000 bytes, the smaller of MB and MiB (a batch past it fails whole); a capture line is far below 1,000 KB.
FIREHOSE_MAX_RECORDS = 500
FIREHOSE_MAX_BYTES = 4_000_000


def capture_time(epoch_s: float) -> str:
    """UTC ISO 8601 with milliseconds: ``2026-12-01T15:04:05.123Z`` (sorts as text; its first 10 characters are ``dt``)."""
    t = time.gmtime(epoch_s // 1)  # floor and "% 1": a time before 1970 keeps its second and non-negative millis
    return f"{t.tm_year:04d}" + time.strftime("-%m-%dT%H:%M:%S", t) + f".{int(epoch_s % 1 * 1000):03d}Z"  # %Y: "300"


def sampled(request_id: str, share: float) -> bool:
    """Whether a request is captured: a hash of its id against ``share``, so a retry decides the same way."""
    if share >= 1.0:
        return True
    if share <= 0.0 or not request_id:
        return False
    return int.from_bytes(hashlib.sha256(request_id.encode("utf-8")).digest()[:8], "big") < share * 2.0**64


def _model(headers: Mapping[str, str]) -> dict[str, str]:
    return {"model_name": headers.get("X-Model-Name", "unknown"),
            "model_version": headers.get("X-Model-Version", "unknown"),
            "data_hash": headers.get("X-Data-Hash", "unknown")}


def prediction_records(*, request_id: str, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any],
                       headers: Mapping[str, str], latency_ms: float, now: float,
                       drop_fields: Collection[str] = ()) -> list[dict[str, Any]]:
    """One capture record per predicted record: the input as the model accepted it (less ``drop_fields``).

    Raises ValueError when the answer does not hold one prediction per record.
    """
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    common = {"capture_format": CAPTURE_FORMAT, "kind": PREDICTION, "request_id": request_id,
              "time": capture_time(now), **_model(headers), "latency_ms": round(latency_ms, 3)}
    # NaN is how a JSON body may spell a missing value; a capture line stays strict JSON (Firehose parses it).
    return [{**common, "row": row, "prediction": prediction,
             "record": {k: None if v != v else v for k, v in record.items() if k not in drop_fields}}
            for row, (record, prediction) in enumerate(zip(records, predictions, strict=True))]


def refusal_record(*, request_id: str, status: int, error: str, records: int | None, now: float,
                   headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One capture record for a refused request: why, and how many records it held; never the input itself."""
    return {"capture_format": CAPTURE_FORMAT, "kind": REFUSAL, "request_id": request_id, "time": capture_time(now),
            **_model(headers or {}), "status": status, "error": error[:500], "records": records}


def partition_value(value: Any) -> str:
    """A value as it appears in a partition folder name: letters, digits, ``.``, ``_`` and ``-`` only."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(value)) or "unknown"


def capture_partition(record: Mapping[str, Any]) -> str:
    """``capture/model=NAME/version=V/dt=YYYY-MM-DD``: where a capture record lands, locally as on S3."""
    values = {"model": record.get("model_name"), "version": record.get("model_version"),
              "dt": str(record.get("time", ""))[:10]}
    return "/".join([CAPTURE_PREFIX, *(f"{key}={partition_value(values[key])}" for key in CAPTURE_PARTITIONS)])


def capture_line(record: Mapping[str, Any]) -> bytes:
    """A capture record as one JSON line (Firehose concatenates records, so each carries its newline)."""
    return (json.dumps(record, separators=(",", ":"), allow_nan=False, default=str) + "\n").encode("utf-8")


def firehose_put(client: Any, stream: str, *, attempts: int = 3) -> Callable[[list[bytes]], int]:
    """A sink for ``CaptureSender``: ``PutRecordBatch`` into ``stream``; returns the lines not accepted. Only entries a
    put refused (``ErrorCode``) are resent, up to ``attempts`` puts, so none is written twice ("Check FailedPutCount
    to determine whether there are records that you need to resend", Firehose API reference, "PutRecordBatch")."""
    def put(lines: list[bytes]) -> int:
        for attempt in range(attempts):
            answer = client.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": line} for line in lines])
            if not answer.get("FailedPutCount"):
                return 0
            lines = [line for line, got in zip(lines, answer["RequestResponses"], strict=True) if got.get("ErrorCode")]
            time.sleep(0.05 * 2**attempt if attempt + 1 < attempts else 0)
        return len(lines)
    return put


def folder_put(root: str | os.PathLike[str]) -> Callable[[list[bytes]], int]:
    """A sink for ``CaptureSender``: append each line to ``ROOT/<partition>/part-<pid>.jsonl``."""
    def put(lines: list[bytes]) -> int:
        by_file: dict[str, list[bytes]] = {}
        for line in lines:
            folder = os.path.join(root, capture_partition(json.loads(line)))
            by_file.setdefault(os.path.join(folder, f"part-{os.getpid()}.jsonl"), []).append(line)
        for path, chunk in by_file.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "ab") as handle:
                handle.write(b"".join(chunk))
        return 0
    return put


class CaptureSender:
    """Sends capture lines from a background thread, so capturing never delays or changes an answer.

    ``submit`` only queues (a full queue drops and counts); the thread sends batches of at most
    ``FIREHOSE_MAX_RECORDS`` lines and ``FIREHOSE_MAX_BYTES``, waiting ``linger_s`` after a batch's first line for
    more (fewer, larger puts). Failures are counted, never raised: ``on_error`` (a log line per failed batch) and
    ``take_failed`` (for a metric)."""

    def __init__(self, put: Callable[[list[bytes]], int], *, max_queue: int = 10_000, linger_s: float = 0.0,
                 on_error: Callable[[str], None] | None = None) -> None:
        self._put, self._on_error, self._linger_s = put, on_error, linger_s
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._failed = self.sent = 0  # sent: lines the sink accepted
        self._carry: bytes | None = None
        self._thread = threading.Thread(target=self._run, name="capture-sender", daemon=True)
        self._thread.start()

    def submit(self, lines: Iterable[bytes]) -> int:
        """Queue lines for sending without waiting; returns how many were dropped because the queue was full."""
        dropped = 0
        for line in lines:
            try:
                self._queue.put_nowait(line)
            except queue.Full:
                dropped += 1
        if dropped:
            self._count(failed=dropped, reason=f"capture queue full: {dropped} record(s) dropped")
        return dropped

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued line has been sent or given up on; False if ``timeout_s`` ran out first."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.002)
        return not self._queue.unfinished_tasks

    def take_failed(self) -> int:
        """Lines lost since the last call (failed puts, full queue): the handler turns them into a metric."""
        with self._lock:
            failed, self._failed = self._failed, 0
        return failed

    def _count(self, *, failed: int = 0, sent: int = 0, reason: str | None = None) -> None:
        with self._lock:
            self._failed += failed
            self.sent += sent
        if reason and self._on_error is not None:
            try:
                self._on_error(reason)
            except Exception:  # noqa: S110 - a broken logger must not stop the sender
                pass

    def _batch(self) -> list[bytes]:
        # A line that would overflow this batch's bytes opens the next one (it stays unfinished until sent).
        first = self._carry if self._carry is not None else self._queue.get()
        self._carry = None
        batch, size = [first], len(first)
        if self._linger_s > 0:
            # Sleep rather than wait on the queue: a waiting thread would be woken (and take the GIL from the
            # request in flight) by every record submitted meanwhile.
            time.sleep(self._linger_s)
        while len(batch) < FIREHOSE_MAX_RECORDS:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if size + len(line) > FIREHOSE_MAX_BYTES:
                self._carry = line
                break
            batch.append(line)
            size += len(line)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._batch()
            try:
                failed = self._put(batch)
                self._count(failed=failed, sent=len(batch) - failed,
                            reason=f"capture: {failed} of {len(batch)} record(s) not accepted" if failed else None)
            except Exception as error:  # noqa: BLE001 - any failure of the sink is counted, never raised
                self._count(failed=len(batch), reason=f"capture of {len(batch)} record(s) failed: "
                                                      f"{type(error).__name__}: {str(error)[:300]}")
            finally:
                for _ in batch:
                    self._queue.task_done()
