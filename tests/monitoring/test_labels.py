"""Late labels joined with captured predictions (``monitoring.labels``): each label joins once or says why not."""

from __future__ import annotations

from pathlib import Path

from monitoring.labels import DUPLICATE, NOT_FINITE, join, read_labels

PREDICTIONS = [{"request_id": "req-a", "row": 0, "model_name": "student-score", "prediction": 70.0}]


def test_a_label_refused_first_does_not_make_its_correction_a_duplicate(tmp_path: Path) -> None:
    # Given an export holding a placeholder for a score not yet known, then the score, for the same record
    path = tmp_path / "labels.csv"
    path.write_text("request_id,row,actual\nreq-a,0,n/a\nreq-a,0,72\n")
    # When the labels are joined
    joined = join(read_labels(path), PREDICTIONS, [], model="student-score")
    # Then the placeholder is refused and the score joins: the record is labelled, not lost as a "duplicate"
    assert [(label.line, reason) for label, reason in joined.rejected] == [(2, NOT_FINITE)]
    assert [actual for _, actual in joined.matched] == [72.0]


def test_a_second_label_for_a_joined_record_is_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("request_id,row,actual\nreq-a,0,72\nreq-a,0,73\n")
    joined = join(read_labels(path), PREDICTIONS, [], model="student-score")
    assert [actual for _, actual in joined.matched] == [72.0]
    assert [(label.line, reason) for label, reason in joined.rejected] == [(3, DUPLICATE)]


def test_an_actual_beyond_what_the_model_reads_is_named_as_not_finite(tmp_path: Path) -> None:
    # Given labels a spreadsheet or a float64 pipeline may write: nan, an infinity, a number beyond float32
    path = tmp_path / "labels.csv"
    path.write_text("request_id,row,actual\nreq-a,0,nan\nreq-a,0,-inf\nreq-a,0,1e400\nreq-a,0,4e38\nreq-a,0,72\n")
    # When they are joined
    joined = join(read_labels(path), PREDICTIONS, [], model="student-score")
    # Then each is refused under a reason that fits it (not "non-numeric"), and the good label joins
    assert [(label.line, reason) for label, reason in joined.rejected] == [(n, NOT_FINITE) for n in (2, 3, 4, 5)]
    assert NOT_FINITE == "actual not a finite number"
    assert [actual for _, actual in joined.matched] == [72.0]
