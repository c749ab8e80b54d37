"""Owns the fast path for big CSV bodies: the csv module's rows turned into columns for the column pass.

The general path (``serving.codecs.decode_csv``) checks each cell in Python and builds one dict per line: about
three quarters of a 10,000-line body's time before the model. Here the same reader's rows (``codecs.csv_rows``)
are transposed, each numeric column is converted by ``float`` in one map, and the columns go to the column pass
(``serving.columns.encode_columns``), which checks and encodes them as it does the general path's records.

It is a speed path only, like ``serving.typed_json``: it hands the column pass exactly the values
``decode_csv`` would have put in its records, or returns None and the general path reads the body (and alone
words any error). So what it accepts encodes bit-identically:

- A numeric column is taken when every cell is ASCII without ``_`` (``decode_csv`` refuses those) and ``float``
  reads every one. ``float`` ignores the whitespace ``decode_csv`` strips first (the same set: ``str.strip``'s);
  an empty cell, a missing number, raises and leaves the batch to the general path.
- A categorical cell is handed on as read, an empty one as None (``decode_csv``'s missing value). A cell with
  spaces around it matches no level, so the column pass leaves the batch to the general path, which strips it.
- A first line holding exactly the feature names, in any order, is the header (``decode_csv``'s rule: a data
  line cannot equal it, since a numeric feature never holds a name).
- Anything else returns None: a row of another length (a blank line among them), a malformed quote, fewer rows
  than the column pass takes, a one-feature schema (whose blank lines ``decode_csv`` skips, a cell for us).
"""

from __future__ import annotations

import csv
from typing import Any

import numpy as np

from serving import codecs, columns
from serving.predictor import COLUMN_PASS_MIN_ROWS, Schema


class CsvColumns:
    """The schema's CSV column reader; ``matrix(body)`` is the model matrix, or None for the general path."""

    def __init__(self, schema: Schema) -> None:
        self._plan = schema.column_plan
        self._names = schema.names
        self._numeric = frozenset(f.position for f in self._plan.numeric)

    def matrix(self, body: bytes) -> np.ndarray | None:
        """The float32 model matrix of a CSV body of clean rows, or None (see the module doc)."""
        if not self._plan.usable or len(self._names) < 2:
            return None
        with columns.collector_paused():  # the rows are lists of strings: nothing for it to find
            return self._matrix(body)

    def _matrix(self, body: bytes) -> np.ndarray | None:
        try:
            rows = list(codecs.csv_rows(body.decode(codecs.CSV_ENCODING)))
        except (UnicodeDecodeError, csv.Error):
            return None
        width = len(self._names)
        if not rows or set(map(len, rows)) != {width}:
            return None
        order = self._names
        if set(rows[0]) == set(self._names):
            order, rows = tuple(rows[0]), rows[1:]
        if len(rows) < COLUMN_PASS_MIN_ROWS:
            return None
        received = dict(zip(order, zip(*rows, strict=True), strict=True))
        values_of: list[Any] = []
        for position, name in enumerate(self._names):
            column = received[name]
            if position in self._numeric:
                joined = "".join(column)
                if not joined.isascii() or "_" in joined:
                    return None
                try:
                    column = list(map(float, column))
                except ValueError:  # an empty cell (missing), or not a number: decode_csv decides
                    return None
            elif "" in column:
                column = [None if cell == "" else cell for cell in column]
            values_of.append(column)
        return columns.encode_columns(self._plan, values_of)
