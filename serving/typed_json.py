"""Owns the typed fast path for big JSON bodies: records decoded and checked in C (msgspec), then encoded by columns.

A JSON list of records (or ``{"instances": [...]}`` / ``{"dataframe_records": [...]}``) is decoded straight
into one struct per record, typed from the schema: ``float`` for a numeric feature, ``Literal[levels]`` for a
categorical one, ``| None`` where the feature may be missing, unknown fields refused. msgspec checks each
value while it parses (no booleans for numbers, no strings that are not a level), and the columns are handed
to the column pass (``serving.columns.encode_columns``), which checks the rest (float32 range, missing values).

MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` takes it too when its columns are
the schema's names in any order: the columns are read first (``data`` kept as raw bytes), then the rows are
decoded as tuples typed in that order (one decoder per column order, kept for the next request) and handed
on in schema order. Other keys in the split object (pandas writes ``index``) are skipped, as the general path
skips them.

It is a speed path only: anything msgspec refuses, any batch smaller than the column pass takes, and anything
the column pass is not sure of returns ``None``. The caller then reads the body as today (``serving.codecs``)
and predicts the records (``Predictor.predict``), the one authority on what is an error and how it reads.
What it accepts encodes bit-identically: msgspec reads each decimal number as the same double as orjson
(correctly rounded), an integer below 2**63 in magnitude as the double Python's ``float(int)`` gives, and
larger magnitudes, which msgspec and orjson were seen to round differently, are left to the general path by the
column pass. A body that is not a list of records costs one failed decode (about 1.5 us for a single record).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np

from serving import columns, contract
from serving.layout import NUMERIC
from serving.predictor import COLUMN_PASS_MIN_ROWS, Schema

SPLIT = "dataframe_split"
# The wrappers that hold a list of records (``dataframe_split`` holds columns and rows, read on their own).
RECORD_WRAPPERS = frozenset(contract.BATCH_WRAPPERS) - {SPLIT}
# Row decoders kept, one per column order seen: callers send one order, so more than this is someone cycling.
_SPLIT_ORDERS = 8


class _Split(msgspec.Struct, gc=False):
    columns: list[str]
    data: msgspec.Raw


class _SplitBody(msgspec.Struct, forbid_unknown_fields=True, gc=False, rename={"split": SPLIT}):
    split: _Split


def value_types(schema: Schema) -> list[Any]:
    """Each feature's value type in schema order: ``float`` or ``Literal[levels]``, ``| None`` if it may be missing."""
    kinds: list[Any] = []
    for feature in schema.features:
        kind: Any = float if feature.kind == NUMERIC else Literal[feature.levels]
        kinds.append(kind | None if feature.nullable else kind)
    return kinds


def record_type(schema: Schema) -> type[msgspec.Struct]:
    """One struct type for the schema's records; attribute ``f{i}`` holds the i-th feature (JSON names vary)."""
    fields = [(f"f{i}", kind) for i, kind in enumerate(value_types(schema))]
    # gc=False: the structs hold only floats, strings and None, which cannot form a cycle; the collector
    # then never walks 10,000 of them.
    return msgspec.defstruct("Record", fields, forbid_unknown_fields=True, gc=False,
                             rename={f"f{i}": f.name for i, f in enumerate(schema.features)})


class TypedRecords:
    """The schema's typed JSON decoder; ``matrix(body)`` is the model matrix, or None for the general path."""

    def __init__(self, schema: Schema) -> None:
        self._plan = schema.column_plan
        record = record_type(schema) if self._plan.usable else None
        self._decoder = None if record is None else msgspec.json.Decoder(list[record] | dict[str, list[record]])
        self._split = msgspec.json.Decoder(_SplitBody)
        self._kinds = dict(zip(schema.names, value_types(schema), strict=True))
        self._position = {name: i for i, name in enumerate(schema.names)}
        self._rows: dict[tuple[str, ...], msgspec.json.Decoder] = {}

    def matrix(self, body: bytes) -> np.ndarray | None:
        """The float32 model matrix of a JSON body of clean records, or None (see the module doc)."""
        if self._decoder is None:
            return None
        with columns.collector_paused():
            return self._matrix(body)

    def _matrix(self, body: bytes) -> np.ndarray | None:
        try:
            records = self._decoder.decode(body)
        except msgspec.MsgspecError:  # malformed, or a value the types refuse: the general path says why
            return self._split_matrix(body)
        if isinstance(records, dict):
            if len(records) != 1:
                return None
            (key, records), = records.items()
            if key not in RECORD_WRAPPERS:
                return None
        if len(records) < COLUMN_PASS_MIN_ROWS:
            return None
        # Each struct as a tuple of its fields (schema order), then transposed into columns: two C-level passes,
        # about a third faster than reading the records once per feature.
        return columns.encode_columns(self._plan, list(zip(*map(msgspec.structs.astuple, records), strict=True)),
                                      typed=True)

    def _split_matrix(self, body: bytes) -> np.ndarray | None:
        """The matrix of a ``dataframe_split`` body whose columns are the schema's names, or None."""
        try:
            split = self._split.decode(body).split
        except msgspec.MsgspecError:  # not a split, or not one the general path would read without an error
            return None
        order = tuple(split.columns)
        if len(order) != len(self._position) or set(order) != self._position.keys():
            return None
        rows = self._rows.get(order)
        if rows is None:
            if len(self._rows) >= _SPLIT_ORDERS:
                self._rows.clear()
            row = tuple[tuple(self._kinds[name] for name in order)]  # tuple[(a, b)] is tuple[a, b]
            rows = self._rows[order] = msgspec.json.Decoder(list[row])
        try:
            data = rows.decode(split.data)
        except msgspec.MsgspecError:
            return None
        if len(data) < COLUMN_PASS_MIN_ROWS:
            return None
        received = list(zip(*data, strict=True))
        return columns.encode_columns(self._plan, [received[order.index(name)] for name in self._position],
                                      typed=True)
