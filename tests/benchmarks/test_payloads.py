"""The big-batch benchmark's bodies: every shape reads back as the same records, and the largest batch is exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import payloads
from serving import codecs
from serving.predictor import NUMERIC, Schema

ROOT = Path(__file__).resolve().parents[2]


CSV = ROOT / "data" / "student_performance.csv"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return payloads.sample_records(CSV, "Exam_Score")[:300]


@pytest.fixture(scope="module")
def schema() -> Schema:
    import pandas as pd

    from experiments.data import infer_schema

    return infer_schema(pd.read_csv(CSV), "Exam_Score")


@pytest.mark.parametrize("shape", sorted(payloads.SHAPES))
def test_each_body_shape_decodes_to_the_records_it_was_made_from(records: list[dict], shape: str,
                                                                 schema: Schema) -> None:
    kind, encode = payloads.SHAPES[shape]
    decoded = codecs.decode(kind, encode(records), schema)
    # CSV carries numbers as text, read back as floats: 22.0 == 22, so equal values compare equal.
    assert decoded == records
    numeric = {f.name for f in schema.features if f.kind == NUMERIC}
    assert all(isinstance(r[n], (int, float)) for r in decoded for n in numeric if r[n] is not None)


@pytest.mark.parametrize("limit", [10_000, 123_457])
@pytest.mark.parametrize("shape", sorted(payloads.SHAPES))
def test_the_largest_batch_fits_and_one_record_more_does_not(records: list[dict], shape: str, limit: int) -> None:
    _, encode = payloads.SHAPES[shape]
    count, size = payloads.largest_batch(records, encode, limit)
    assert size == len(encode(payloads.cycled(records, count))) <= limit
    assert len(encode(payloads.cycled(records, count + 1))) > limit
