"""Owns closing the loop: labelled captured records become new rows of the DVC-tracked training table.

Each row is the input exactly as served (the capture record's ``record``) plus its label in the target column.
Rows are checked against the table before anything is written: the same columns (a field dropped at capture
cannot be appended), numbers where the table has numbers and text where it has text, a finite label. A ledger
beside the table (``<table>.requests.csv``: request id and row of every appended record) de-duplicates across
runs, so appending the same labels twice adds nothing. One append at a time per table (``locked``): read table
and ledger, write both, ``dvc add`` — two at once each wrote the table it had read, losing the other's rows while
the ledger kept their ids. The table and the ledger are written beside themselves and synced, then renamed
together (neither changes unless both could be written), then ``dvc add`` versions the folder; committing
``data.dvc`` and ``dvc push`` are the user's (the train-deploy workflow retrains when ``data.dvc`` changes on main).
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from core.cli import UserError
from core.files import replace_together
from core.numbers import finite_number
from serving.columns import FLOAT32_MAX

LEDGER_SUFFIX = ".requests.csv"
_HELD: set[Path] = set()  # table folders this process holds the lock of (the feedback job holds it throughout)


@dataclass
class Appended:
    rows: int = 0
    already: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (request_id#row, reason)
    dvc_file: Path | None = None


class Checked(NamedTuple):
    """What ``check`` found: the tracking ``.dvc`` file and output, the header, numeric columns, bytes, ledger."""

    dvc_file: Path
    tracked: str
    header: list[str]
    numeric: dict[str, bool]
    raw: bytes
    seen: set[tuple[str, str]]


def ledger_path(table: Path) -> Path:
    return table.with_name(table.stem + LEDGER_SUFFIX)


@contextmanager
def locked(table: Path) -> Iterator[None]:
    """Hold ``table``'s exclusive append lock, waiting (said once on stderr) while another process holds it.

    The lock is an flock on the table's folder itself: a lock file inside it would be versioned by ``dvc add``,
    one beside the ``.dvc`` file would show in ``git status``. The kernel drops it when its process ends, so a
    killed job leaves no stale lock. Re-entrant within a process.

    Raises:
        UserError: the folder cannot be opened.
    """
    folder = table.resolve().parent
    if folder in _HELD:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as err:
        raise UserError(f"{table}: its folder cannot be opened to lock it ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another append to {table} to finish", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD.add(folder)
        try:
            yield
        finally:
            _HELD.discard(folder)
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def tracking_dvc_file(table: Path, root: Path) -> tuple[Path, str]:
    """The ``.dvc`` file in ``root`` whose output holds ``table``, and that output's path.

    Raises:
        UserError: no ``.dvc`` file there tracks the table.
    """
    for dvc_file in sorted(root.glob("*.dvc")):
        try:
            outs = yaml.safe_load(dvc_file.read_text(encoding="utf-8")).get("outs") or []
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        for out in outs if isinstance(outs, list) else []:
            if not isinstance(out, dict):
                continue
            tracked = (root / str(out.get("path", ""))).resolve()
            if table.resolve() == tracked or table.resolve().is_relative_to(tracked):
                return dvc_file, str(out["path"])
    raise UserError(f"no .dvc file in {root} tracks {table}: appended rows could not be versioned")


def _kinds(table: Path) -> tuple[list[str], dict[str, bool], bytes]:
    """The table's header, whether each column is numeric (every non-empty cell a number), and its bytes."""
    raw = table.read_bytes()
    try:
        # utf-8-sig: a spreadsheet's CSV may start with a byte-order mark, which training reads past too.
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
    except UnicodeDecodeError:
        raise UserError(f"{table}: the table is not UTF-8 text") from None
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise UserError(f"{table}: the table has no header")
        numeric = dict.fromkeys(header, True)
        for row in reader:
            for name, cell in zip(header, row, strict=False):
                if numeric[name] and cell.strip():
                    try:
                        float(cell)
                    except ValueError:
                        numeric[name] = False
    except csv.Error as err:
        raise UserError(f"{table}: not a readable CSV ({err})") from None
    return header, numeric, raw


def _cell(value: Any, numeric: bool) -> str | None:
    """The CSV text of a served value, or None when it does not fit the column.

    A number beyond float32 does not fit: training's ``load_table`` refuses such a table (as labels.py refuses
    such a label).
    """
    if value is None:
        return ""
    if numeric:
        if not finite_number(value) or abs(value) > FLOAT32_MAX:
            return None
        return str(int(value)) if isinstance(value, int) or float(value).is_integer() else repr(float(value))
    return value if isinstance(value, str) else None


def _row(record: Mapping[str, Any], label: float, header: Sequence[str], numeric: Mapping[str, bool],
         target: str) -> list[str] | str:
    """The table row for a labelled record, or why it cannot be one."""
    features = [name for name in header if name != target]
    missing = sorted(set(features) - set(record))
    extra = sorted(set(record) - set(features))
    if missing or extra:
        return f"fields differ from the table (missing {missing}, extra {extra})"
    cells = []
    for name in header:
        cell = _cell(label if name == target else record[name], numeric[name])
        if cell is None:
            kind = "numeric column (a finite number within float32)" if numeric[name] else "text column"
            return f"'{name}' does not fit the table's {kind}"
        cells.append(cell)
    return cells


def _sort(checked: Checked, target: str, labelled: Sequence[tuple[Mapping[str, Any], float]]
          ) -> tuple[Appended, list[list[str]], list[tuple[str, str]]]:
    """The table rows of the labelled records new to the table, their (request id, row) keys, and the count of
    those already in it and the refused ones (in the ``Appended`` returned, nothing written yet)."""
    seen = set(checked.seen)
    result, rows, keys = Appended(), [], []
    for record, label in labelled:
        key = (str(record["request_id"]), str(record.get("row", 0)))
        if key in seen:
            result.already += 1
            continue
        row = _row(record["record"], label, checked.header, checked.numeric, target)
        if isinstance(row, str):
            result.refused.append((f"{key[0]}#{key[1]}", row))
            continue
        seen.add(key)
        rows.append(row)
        keys.append(key)
    return result, rows, keys


def first_misfit(checked: Checked, target: str, labelled: Sequence[tuple[Mapping[str, Any], float]]
                 ) -> tuple[str, str] | None:
    """``(record key, reason)`` of the first labelled record when not one of them fits the table or is in it
    already (an append would add nothing: the capture or the table has another schema), else None."""
    result, rows, _ = _sort(checked, target, labelled)
    return result.refused[0] if result.refused and not rows and not result.already else None


def read_ledger(table: Path) -> set[tuple[str, str]]:
    """The (request id, row) pairs already appended to ``table`` (none when it has no ledger yet).

    Raises:
        UserError: the ledger is not a regular UTF-8 CSV file with ``request_id`` and ``row`` columns (checked
            before any other write, so a damaged ledger stops the job before it records anything).
    """
    ledger = ledger_path(table)
    if not ledger.exists() and not ledger.is_symlink():
        return set()
    if not ledger.is_file():  # a folder or FIFO: "no ledger yet" would append rows the ledger then cannot record
        raise UserError(f"{ledger}: the ledger is not a regular file; remove it or restore it from git or DVC")
    try:
        reader = csv.DictReader(io.StringIO(ledger.read_text(encoding="utf-8")))
        header = reader.fieldnames or []
        if header != ["request_id", "row"]:
            raise UserError(f"{ledger}: the ledger's header must be request_id,row, it is {','.join(header)!r}; "
                            f"restore it from git or DVC")
        return {(r["request_id"], r["row"]) for r in reader}
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{ledger}: not a readable CSV ({err}); restore it from git or DVC") from None


def check(table: Path, target: str, *, root: Path) -> Checked:
    """Whether rows can be appended to ``table``: it exists, a ``.dvc`` file in ``root`` tracks it, it is UTF-8
    CSV with the ``target`` column, and its ledger is readable. Writes nothing.

    Raises:
        UserError: naming the first of these that fails.
    """
    if not table.is_file():
        raise UserError(f"{table}: training table not found (dvc pull first)")
    dvc_file, tracked = tracking_dvc_file(table, root)
    header, numeric, raw = _kinds(table)
    if target not in header:
        raise UserError(f"{table}: no target column '{target}'")
    return Checked(dvc_file, tracked, header, numeric, raw, read_ledger(table))


def append(table: Path, target: str, labelled: Sequence[tuple[Mapping[str, Any], float]], *, root: Path) -> Appended:
    """Append labelled capture records to ``table`` and ``dvc add`` its folder, holding ``locked(table)``
    from reading the table and ledger to the end of ``dvc add``.

    Args:
        table: the training CSV (params.yaml ``data.path``).
        target: its target column.
        labelled: (capture record, label) pairs.
        root: the repository root, where the ``.dvc`` file tracking the table lives.

    Raises:
        UserError: ``check`` fails, or ``dvc add`` fails (the rows stay appended).
    """
    with locked(table):
        return _append(table, target, labelled, root=root)


def _append(table: Path, target: str, labelled: Sequence[tuple[Mapping[str, Any], float]], *, root: Path
            ) -> Appended:
    """``append``, its caller holding the lock."""
    checked = check(table, target, root=root)
    dvc_file, tracked, raw = checked.dvc_file, checked.tracked, checked.raw
    ledger = ledger_path(table)
    result, rows, keys = _sort(checked, target, labelled)
    if not rows:
        return result
    out, extra = io.StringIO(), io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    csv.writer(extra, lineterminator="\n").writerows(keys)
    lines = ledger.read_text(encoding="utf-8") if ledger.is_file() else "request_id,row\n"
    grown = raw + (b"" if raw.endswith(b"\n") else b"\n") + out.getvalue().encode("utf-8")
    try:
        replace_together([(table, grown), (ledger, (lines + extra.getvalue()).encode("utf-8"))])
    except OSError as err:
        raise UserError(f"{table}: nothing appended: the table and its ledger could not both be written "
                        f"({err.strerror or err})") from None
    result.rows = len(rows)
    done = subprocess.run([sys.executable, "-m", "dvc", "add", tracked], cwd=root, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise UserError(f"appended {len(rows)} rows to {table}, but `dvc add {tracked}` failed ({reason}); "
                        f"run it yourself before training")
    result.dvc_file = dvc_file
    return result
