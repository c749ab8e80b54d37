"""Owns the wire contract of the predict chain: client -> API Gateway -> Lambda -> SageMaker -> container.

Written once, imported by every hop: the container (``serving/app.py``, ``serving/codecs.py``), the predict
Lambda (``infra/api/runtime/handler.py``; ``infra/api/runtime/contract.py`` is a link to this file, so it
ships inside the function's asset), the REST API's request model (``infra/api/infrastructure.py``), the local
stand-in (``infra/local``) and the smoke test (``infra/smoke``). Standard library only.

- Route: ``POST /{STAGE}/{RESOURCE}`` on the API; the container's own routes are SageMaker's
  ``/ping`` and ``/invocations``.
- Body through the API: one record (a JSON object) or a list of 1..``MAX_RECORDS`` records. The container
  also takes the batch wrappers in ``BATCH_WRAPPERS``; the API refuses them, so that its record bound
  counts what the model will score.
- Every answer names the model that gave it in ``MODEL_HEADERS``. ``InvokeEndpoint`` passes on none of a
  container's headers but ``CUSTOM_ATTRIBUTES``, so the container sends the same facts there too
  (``model-name=..,model-version=..,data-hash=..``) and the Lambda turns them back into the headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAGE = "score"
RESOURCE = "predict-student-score"
ROUTE = f"/{RESOURCE}"
JSON = "application/json"
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


def route_path() -> str:
    """The path clients call on the API, stage included: ``/score/predict-student-score``."""
    return f"/{STAGE}{ROUTE}"


def _printable(text: str) -> str:
    # Header values must be printable ASCII; a stray newline in metadata must not break every response.
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def model_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The model headers, and the custom attributes carrying them, for a bundle's ``metadata.json``.

    A field that is absent or empty is ``unknown``.
    """
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
