"""Owns the request bodies of the big-batch benchmark: sample records in each body shape, and what fits a limit.

Three shapes the container reads (``serving/codecs.py``): a JSON list of records, MLflow's ``dataframe_split``
and CSV without a header. Limits are SageMaker's request payload limits: 6 MB for real-time
``InvokeEndpoint`` (the container's default ``SERVING_MAX_BODY_BYTES`` is 6 MiB) and 4 MB for serverless
("Invoke a serverless endpoint", https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html);
AWS writes "MB", so each is read both as MiB and as decimal MB.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# (name, bytes): SageMaker's real-time and serverless request limits, each read both ways.
LIMITS = (("6 MiB", 6 * MIB), ("6 MB", 6_000_000), ("4 MiB", 4 * MIB), ("4 MB", 4_000_000))
JSON, CSV = "application/json", "text/csv"


def sample_records(csv_path: Path, target: str) -> list[dict[str, Any]]:
    """Every row of the sample table as a JSON-ready record (missing values as None), in file order."""
    import pandas as pd

    from serving.predictor import records_from_frame

    frame = pd.read_csv(csv_path).drop(columns=[target])
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records_from_frame(frame)]


def cycled(records: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` records, the sample's rows repeated in order."""
    return [records[i % len(records)] for i in range(count)]


def json_records(records: Sequence[dict[str, Any]]) -> bytes:
    """A JSON list of records, as ``json.dumps`` (and so ``requests``' ``json=``) writes it."""
    return json.dumps(list(records)).encode()


def dataframe_split(records: Sequence[dict[str, Any]]) -> bytes:
    """MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...]]}}``."""
    columns = list(records[0])
    return json.dumps({"dataframe_split": {"columns": columns,
                                           "data": [[r[c] for c in columns] for r in records]}}).encode()


def csv_rows(records: Sequence[dict[str, Any]]) -> bytes:
    """CSV without a header in the records' column order (SageMaker's convention); missing values empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for record in records:
        writer.writerow(["" if v is None else v for v in record.values()])
    return out.getvalue().encode()


SHAPES: dict[str, tuple[str, Callable[[Sequence[dict[str, Any]]], bytes]]] = {
    "json_records": (JSON, json_records), "dataframe_split": (JSON, dataframe_split), "csv": (CSV, csv_rows),
}


def largest_batch(records: Sequence[dict[str, Any]], encode: Callable[[Sequence[dict[str, Any]]], bytes],
                  limit: int) -> tuple[int, int]:
    """The most sample records (cycled) whose encoded body is at most ``limit`` bytes, and that body's size.

    Found by bisection over real encodings: the body grows with every record added.
    """
    low, high = 0, 1
    while len(encode(cycled(records, high))) <= limit:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if len(encode(cycled(records, middle))) <= limit:
            low = middle
        else:
            high = middle
    return low, len(encode(cycled(records, low))) if low else 0


def payload_table(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """For each body shape and each limit: the largest record count that fits and its body's bytes."""
    return {shape: {name: dict(zip(("records", "bytes"), largest_batch(records, encode, limit), strict=True))
                    for name, limit in LIMITS}
            for shape, (_, encode) in SHAPES.items()}
