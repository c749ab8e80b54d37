"""Owns the column pass of the predict path: a batch of clean records checked and encoded a column at a time.

``Schema.encode`` (``serving/predictor.py``) tries this pass first on batches. It accepts only what it is sure
of: plain dicts holding exactly the schema's names, numbers (``int`` or ``float``, finite, within float32 once
scaled) for numeric features, known levels for categorical ones, and a missing value only where the feature
may be missing. Anything else returns ``None`` and the record-by-record pass, the one authority on errors,
encodes the batch or names the first bad field and row. Both passes write bit-identical matrices: the same
double arithmetic per value, ``(value - center) / scale``, cast to float32 once.

Each record is read once (one ``operator.itemgetter`` of every name, then columns), each numeric column
converted by one numpy call, and categories looked up with ``dict.get`` straight into a byte string of
level codes: C-level loops only. 10,000 freshly parsed records of the sample's 19 features take 20-35 ms
here (the machine's load varies), most of it reading the dicts and hashing the new strings for the level
lookup; the row pass takes about twice that.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

_NUMBER_TYPES = frozenset({int, float})
# The model reads float32: a scaled value beyond this becomes infinite there (1e39 is finite only as float64).
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Up to 254 levels, a code is a byte and 255 means "not a level" (missing, or an error for the row pass).
_ABSENT = 255
# Integers up to this magnitude are read as the same double by every JSON parser here (orjson, msgspec, the
# standard library); beyond it orjson and msgspec were seen to round some 20+ digit integers differently.
_EXACT_LIMIT = 2.0**63


@dataclass(frozen=True)
class NumericColumn:
    """One numeric feature: its matrix column, whether it may be missing, and its standardisation."""

    name: str
    position: int  # in the schema's order of names
    offset: int
    nullable: bool
    center: float
    scale: float


@dataclass(frozen=True)
class CategoricalColumn:
    """One categorical feature: each level's code, its first matrix column and width, whether it may be missing."""

    name: str
    position: int
    index: Mapping[str, int]
    offset: int
    width: int
    nullable: bool


@dataclass(frozen=True)
class ColumnPlan:
    """The schema prepared for the column pass; ``usable`` is False when a category has no level at all."""

    width: int
    names: tuple[str, ...]
    numeric: tuple[NumericColumn, ...]
    categorical: tuple[CategoricalColumn, ...]

    @property
    def usable(self) -> bool:
        return bool(self.names) and all(c.width for c in self.categorical)

    def columns(self, records: Sequence[dict[str, Any]]) -> Sequence[Sequence[Any]]:
        """Each feature's values in schema order; one pass over the records (each dict is visited once).

        Raises:
            KeyError: a record lacks a feature.
        """
        if len(self.names) == 1:
            return (list(map(itemgetter(self.names[0]), records)),)
        return tuple(zip(*map(itemgetter(*self.names), records), strict=True))


def _codes(feature: CategoricalColumn, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each value's level code, and where the value is not a level (the code there is meaningless).

    Raises:
        TypeError: a value cannot be looked up (a list, an object).
    """
    if feature.width < _ABSENT:
        # Through a list: bytearray(list) is ~30% faster than bytes() or bytearray() fed by the map itself.
        codes = np.frombuffer(bytearray(list(map(feature.index.get, values, repeat(_ABSENT)))), dtype=np.uint8)
        return codes, codes == _ABSENT
    codes = np.fromiter(map(feature.index.get, values, repeat(-1)), dtype=np.intp, count=len(values))
    return codes, codes < 0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a fast path decodes a batch, then as it was.

    What a fast path makes (structs, lists, tuples of numbers, strings and None) cannot form a cycle and is freed
    by reference counts, so the collector has nothing to find in it: left on, it would walk 10,000 records ~25
    times. One request at a time per process (serving/worker.py): no other thread turns it on or off meanwhile.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def is_missing(value: Any) -> bool:
    """True for None and NaN, the two spellings of a missing value."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode(plan: ColumnPlan, records: Sequence[Any]) -> np.ndarray | None:
    """The float32 matrix of ``records``, or None when the row pass must decide (see the module doc)."""
    if (not plan.usable or set(map(type, records)) != {dict} or set(map(len, records)) != {len(plan.names)}):
        return None
    try:
        # With every schema name present and the right count of keys, a record holds exactly the schema.
        values_of = plan.columns(records)
    except KeyError:  # a name absent
        return None
    return encode_columns(plan, values_of)


def encode_columns(plan: ColumnPlan, values_of: Sequence[Sequence[Any]], *, typed: bool = False
                   ) -> np.ndarray | None:
    """The float32 matrix of a batch given as each feature's values in schema order, or None for the row pass.

    Also the end of the typed JSON path (``serving.typed_json``), whose decoder has already checked types:
    ``typed=True`` says every numeric value is a ``float``, or ``None`` where the feature may be missing (numpy
    reads ``None`` as NaN, a missing value), so the per-value type check is skipped (≈ 1 ms on 10,000 records).
    """
    rows = len(values_of[0])
    matrix = np.zeros((rows, plan.width), dtype=np.float32)
    try:
        for feature in plan.numeric:
            column = values_of[feature.position]
            # Missing numbers are rare: unless typed, a None (or any non-number) sends the batch to the row pass.
            if not typed and not set(map(type, column)) <= _NUMBER_TYPES:
                return None
            values = np.array(column, dtype=np.float64)  # OverflowError: an integer beyond a double
            # Infinities, and magnitudes where JSON parsers may round a long integer differently (the row
            # pass reads whatever double the general path's parser made of it).
            if (np.abs(values) >= _EXACT_LIMIT).any():
                return None
            missing = np.isnan(values)
            if missing.any() and not feature.nullable:
                return None
            scaled = (values - feature.center) / feature.scale
            if (np.abs(scaled) > FLOAT32_MAX).any():
                return None
            if missing.any():
                scaled[missing] = math.nan  # one NaN for every missing value, as the row pass writes (not -nan)
            matrix[:, feature.offset] = scaled
        flat = matrix.reshape(-1)
        starts = np.arange(0, rows * plan.width, plan.width, dtype=np.intp)
        for feature in plan.categorical:
            column = values_of[feature.position]
            codes, absent = _codes(feature, column)
            if absent.any():
                rows_absent = np.flatnonzero(absent)
                # Only a str can equal a str level, so a hit needs no type check; a miss must be missing.
                if not feature.nullable or not all(is_missing(column[r]) for r in rows_absent):
                    return None
                present = ~absent
                flat[starts[present] + feature.offset + codes[present]] = 1.0
                matrix[rows_absent, feature.offset:feature.offset + feature.width] = math.nan
            else:
                flat[starts + feature.offset + codes] = 1.0
    except (TypeError, OverflowError):  # an unhashable value, an integer too large
        return None
    return matrix
