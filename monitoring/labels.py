"""Owns late labels: reading the labels CSV and joining it with captured predictions, losing nothing silently.

A labels file is CSV with a header: ``request_id`` (the ``X-Request-Id`` the API answered with), ``actual`` (the
true value) and optionally ``row`` (the record's 0-based index in its request; default 0). Every label either
joins a captured prediction of this model or is rejected with its line and one reason: a non-numeric or
non-finite value, a bad row (a ``row`` that is not a count, or a line with more fields than the header, as a
decimal comma makes), a second label for a record an earlier line labelled, a request captured for another
model, a request that was refused, an id no capture knows, or a row its (captured) request does not have. A row
is read as a count: ``01`` is row 1, as a spreadsheet may write it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.cli import UserError
from core.files import is_special
from serving.columns import FLOAT32_MAX

REQUIRED = ("request_id", "actual")
NOT_FINITE, BAD_ROW, DUPLICATE = "actual not a finite number", "bad row", "duplicate label"
OTHER_MODEL, REFUSED, UNKNOWN = "request of another model", "refused request", "unknown request id"
NO_SUCH_ROW = "row not in its request"
MAX_ROW_DIGITS = 18
REASONS = (NOT_FINITE, BAD_ROW, DUPLICATE, OTHER_MODEL, REFUSED, UNKNOWN, NO_SUCH_ROW)


@dataclass(frozen=True)
class Label:
    line: int
    request_id: str
    row: str
    actual: str
    extra_fields: bool = False  # more fields than the header: which of them is the label cannot be told


@dataclass
class Joined:
    """Labels matched with their captured predictions, and every label that was not, with why."""

    matched: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    rejected: list[tuple[Label, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {reason: sum(1 for _, r in self.rejected if r == reason) for reason in REASONS}


def read_labels(path: Path) -> list[Label]:
    """Every data line of the labels CSV (line numbers as in the file, the header being line 1).

    Raises:
        UserError: the file is missing, not UTF-8 CSV, lacks a required column or names one twice.
    """
    if is_special(path):
        raise UserError(f"{path}: not a regular file")
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would prefix the first name.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED if name not in header]
            if missing:
                raise UserError(f"{path}: the labels CSV needs the column(s) {missing}; it has {header}")
            twice = sorted({name for name in header if header.count(name) > 1})
            if twice:  # csv would keep the last of them, silently
                raise UserError(f"{path}: the labels CSV names the column(s) {twice} more than once")
            reader.fieldnames = header
            # csv.DictReader puts the fields past the header under None: "req,0,72,5" would read as 72.
            return [Label(line=reader.line_num, request_id=(raw.get("request_id") or "").strip(),
                          row=(raw.get("row") or "0").strip(), actual=(raw.get("actual") or "").strip(),
                          extra_fields=None in raw)
                    for raw in reader]
    except FileNotFoundError:
        raise UserError(f"{path}: labels file not found") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: not a readable CSV ({err})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err})") from None


def _number(text: str) -> float | None:
    if "_" in text:  # float() reads "7_2" as 72, as Python source would; no spreadsheet writes that
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if abs(value) <= FLOAT32_MAX else None  # NaN and infinities too; no target beyond it trains


def join(labels: Iterable[Label], predictions: Iterable[Mapping[str, Any]], refusals: Iterable[Mapping[str, Any]],
         *, model: str) -> Joined:
    """Match labels to ``model``'s captured predictions by (request id, row).

    Args:
        predictions: captured predictions of every model (so a label for another model is told apart).
        refusals: captured refused requests.
    """
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for record in predictions:
        by_key.setdefault((str(record.get("request_id")), str(record.get("row", 0))), dict(record))
    refused = {str(r.get("request_id")) for r in refusals}
    requests = {request_id for request_id, _ in by_key}
    joined, seen = Joined(), set()
    for label in labels:
        # A count: not "1.0", "-1", digits of another script, or more digits than int() reads (no request has
        # that many records anyway).
        count = label.row.isascii() and label.row.isdigit() and len(label.row) <= MAX_ROW_DIGITS
        key = (label.request_id, str(int(label.row)) if count else label.row)
        actual = _number(label.actual)
        reason = None
        if actual is None:
            reason = NOT_FINITE
        elif label.extra_fields or not count:
            reason = BAD_ROW
        elif key in seen:
            reason = DUPLICATE
        elif key in by_key and by_key[key].get("model_name") != model:
            reason = OTHER_MODEL
        elif key not in by_key:
            reason = (REFUSED if label.request_id in refused else
                      NO_SUCH_ROW if label.request_id in requests else UNKNOWN)
        if reason is None:
            seen.add(key)  # only a label that joined: a refused "n/a" must not make its correction a duplicate
            joined.matched.append((by_key[key], actual))
        else:
            joined.rejected.append((label, reason))
    return joined


def write_rejected(joined: Joined, path: Path) -> Path:
    """Every rejected label with its line and reason, as CSV."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "request_id", "row", "actual", "reason"])
        for label, reason in joined.rejected:
            writer.writerow([label.line, label.request_id, label.row, label.actual, reason])
    return path
