"""Owns the load test's request bodies: records drawn from the sample data, alone or in batches.

The CSV is params.yaml's ``data.path`` (the DVC-tracked sample); its target column is dropped, numbers become
JSON numbers, an empty cell is ``null`` (a missing value, as a client serialising the row would send it, and
as the container accepts it).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from serving import contract


def _value(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_records(csv_path: Path, *, target: str, limit: int = 2000) -> list[dict[str, Any]]:
    """Up to ``limit`` records of the CSV without ``target``; ValueError when the file has none."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            records = []
            for row in reader:
                records.append({k: _value(v or "") for k, v in row.items() if k and k != target})
                if len(records) >= limit:
                    break
    except FileNotFoundError:
        raise ValueError(f"{csv_path}: file not found (run `make data`)") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{csv_path}: not a readable CSV ({error})") from None
    if not records:
        raise ValueError(f"{csv_path}: no records")
    return records


def make_bodies(records: list[dict[str, Any]], *, count: int, batch_share: float, batch_size: int,
                seed: int = 0) -> list[bytes]:
    """``count`` JSON bodies: one record each, or a list of ``batch_size`` records for ``batch_share`` of them."""
    if not 0 <= batch_share <= 1:
        raise ValueError(f"batch_share must be 0..1, got {batch_share}")
    if not 1 <= batch_size <= contract.MAX_RECORDS:
        raise ValueError(f"batch_size must be 1..{contract.MAX_RECORDS}, got {batch_size}")
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        if rng.random() < batch_share:
            body: Any = rng.sample(records, min(batch_size, len(records)))
        else:
            body = rng.choice(records)
        bodies.append(json.dumps(body).encode())
    return bodies
