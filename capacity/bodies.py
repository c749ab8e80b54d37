"""Owns the load test's request bodies: records drawn from the sample data, alone or in batches.

The CSV is params.yaml's ``data.path`` (the DVC-tracked sample); its target and ``data.ignore`` columns are dropped,
numbers become JSON numbers, an empty cell is ``null`` (a missing value, as a client serialising the row would send it, and
as the container accepts it).
"""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving import contract


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def read_records(csv_path: Path, *, target: str, ignore: Sequence[str] = (), limit: int = 2000,
                 ) -> list[dict[str, Any]]:
    """Up to ``limit`` records of the CSV without ``target`` and the ``ignore``d columns (``data.ignore``), read
    as training reads the table: spaces after a comma dropped, a column numeric only if every non-empty cell of it
    is a number (a text column holding "1" stays text). ValueError when the file has no records."""
    if not csv_path.exists():
        raise ValueError(f"{csv_path}: file not found (run `make data`)")
    if not csv_path.is_file():  # a folder, or a FIFO that would block the read
        raise ValueError(f"{csv_path}: not a regular file")
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            rows = list(itertools.islice(csv.DictReader(handle, skipinitialspace=True), limit))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{csv_path}: not a readable CSV ({error})") from None
    dropped = {target, *ignore, None, ""}
    columns = [name for name in (rows[0] if rows else {}) if name not in dropped]
    numeric = {name for name in columns
               if all(_number(row[name]) is not None for row in rows if row.get(name))}
    records = [{name: None if not row.get(name) else _number(row[name]) if name in numeric else row[name]
                for name in columns} for row in rows]
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
