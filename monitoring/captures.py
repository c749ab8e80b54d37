"""Owns reading capture records back: from a local folder or ``s3://``, for one model and a time window.

Capture records are the wire contract's (``serving/contract.py``): one JSON line per predicted record or
refused request, in files laid out as ``capture/model=NAME/version=V/dt=YYYY-MM-DD/...`` (Firehose writes them
gzip-compressed; the stand-in's folder and moto write plain lines). Records are selected by their own fields
(model, version, time), so any layout is read correctly; the ``model=``/``version=``/``dt=`` folders only let
whole files and folders be skipped unread. A line that is not a capture record is counted, never silently dropped;
a folder or file the window needs that cannot be read stops the job, and so do files of which not one line is a
capture record.
S3 is read with boto3's default credentials (``AWS_PROFILE``, an OIDC role, ``AWS_ENDPOINT_URL``...).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from core.cli import UserError
from core.numbers import finite_number
from monitoring.window import Window, is_capture_time
from serving import contract
from serving.columns import FLOAT32_MAX

UNKNOWN = "unknown"
# What botocore accepts as a bucket (its handlers.VALID_BUCKET): S3's rules today are stricter, older buckets not.
BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


@dataclass
class Captured:
    """The capture records read for one window."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    bad_lines: int = 0
    records: int = 0  # lines that are capture records, in the window or not
    damaged_files: int = 0  # cut off or corrupt part-way: the records after the damage are lost
    first_damaged: str | None = None  # the first of them, to name: a byte changed on disk or in transit
    # Firehose delivers at least once: a retried delivery writes the same records again, in another object.
    duplicates: int = 0
    seen: set[tuple[str, ...]] = field(default_factory=set, repr=False)


def _partition_values(key: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in key.split("/") if "=" in part and "!{" not in part)


def _wanted(key: str, *, model: str | None, version: str | None, days: tuple[str | None, str | None]) -> bool:
    """False only when a ``model=``, ``version=`` or ``dt=`` folder of the key rules the whole file out."""
    found = _partition_values(key)
    if model is not None and found.get("model", contract.partition_value(model)) not in (
            contract.partition_value(model), UNKNOWN):
        return False
    if version is not None and found.get("version", contract.partition_value(version)) not in (
            contract.partition_value(version), UNKNOWN):
        return False
    day = found.get("dt")
    return day is None or ((days[0] is None or day >= days[0]) and (days[1] is None or day <= days[1]))


def _lines(data: bytes) -> tuple[list[bytes], bool]:
    """A capture file's lines, and whether the file is damaged (a gzip stream cut off or corrupt part-way).

    A gzip file may hold several members back to back (S3 and Firehose concatenate objects; zcat reads them
    all), so each member is read in turn. What decompresses before the damage is kept, less its last, possibly
    cut, line: one damaged object loses the records after the damage, not all of them.
    """
    if data[:2] != b"\x1f\x8b":  # Firehose's GZIP output (its objects end in .gz, moto's and ours in nothing)
        return data.splitlines(), False
    parts, rest = [], data
    while rest:
        inflate = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        try:
            parts.append(inflate.decompress(rest))
        except zlib.error:
            break
        if not inflate.eof:
            break
        rest = inflate.unused_data
    else:
        return b"".join(parts).splitlines(), False
    complete, _, _ = b"".join(parts).rpartition(b"\n")
    return complete.splitlines(), True


def _local_files(root: Path, wanted) -> Iterator[tuple[str, bytes]]:  # noqa: ANN001 - a key predicate
    """Every regular file under ``root`` that ``wanted`` does not rule out (by its path under ``root``), with its path, symlinked folders followed (a bucket
    mounted or linked in), each real folder once: a link back up the tree or a second link to a folder is not read
    again. A ``model=``/``version=``/``dt=`` folder ruled out is not opened.

    Raises:
        UserError: the folder is missing, or a folder or file the window needs cannot be read.
    """
    if root.exists() and not root.is_dir():  # "not found" sent the user looking for a file that is there
        raise UserError(f"--capture {root} is a file, not a folder: pass the folder it is in")
    if not root.is_dir():
        raise UserError(f"capture folder {root} not found (run the stand-in, or pass --capture s3://BUCKET/PREFIX)")
    seen: set[tuple[int, int]] = set()
    # os.walk skips a folder it cannot list unless told: an unreadable partition would read as no traffic.
    for folder, subfolders, names in os.walk(root, followlinks=True, onerror=_unreadable):
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders[:] = sorted(name for name in subfolders if wanted(Path(folder, name).relative_to(root).as_posix()))
        for path in sorted(Path(folder, name) for name in names):
            key = path.relative_to(root).as_posix()
            if not wanted(key):
                continue
            try:  # a FIFO or device is skipped: reading one would wait or never end
                data = path.read_bytes() if path.is_file() else None
            except OSError as err:
                _unreadable(err)
            if data is not None:
                yield str(path), data


def _unreadable(err: OSError) -> NoReturn:
    """A capture folder or file that cannot be read stops the job: skipping it would under-count the window."""
    raise UserError(f"capture {'folder' if os.path.isdir(err.filename or '') else 'file'} {err.filename} cannot be "
                    f"read ({err.strerror or err})")


def _s3_files(bucket: str, prefix: str, wanted) -> Iterator[tuple[str, bytes]]:  # noqa: ANN001 - a key predicate
    """Every object under ``prefix`` that ``wanted`` does not rule out (by its key), with its s3:// URI.

    Raises:
        UserError: S3 cannot be read, or holds no object at all under the prefix (empty or misspelt: "not enough
            data" would pass a scheduled job on a source that never held a capture).
    """
    import boto3  # only s3:// sources need it
    from botocore.exceptions import BotoCoreError, ClientError

    uri, listed = f"s3://{bucket}/{prefix}", 0
    reading = uri  # the object being read once listed: one archived or forbidden object of thousands is named
    try:
        s3 = boto3.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                listed += 1
                if wanted(item["Key"]):
                    reading = f"s3://{bucket}/{item['Key']}"
                    yield reading, s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    reading = uri
    except (BotoCoreError, ClientError) as err:
        reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip())  # botocore's may be two
        raise UserError(f"reading {reading}: {reason}") from None
    if not listed:
        raise UserError(f"{uri}: no object at all under this prefix (empty, or misspelt?)")


def _s3_location(source: str) -> tuple[str, str]:
    """The bucket and prefix of ``s3://bucket/prefix``.

    Raises:
        UserError: no bucket, or one no S3 bucket can be named (boto3 would cut its reason, urlparse raise on "[").
    """
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    if not bucket:
        raise UserError(f"--capture must look like s3://bucket/prefix, got {source!r}")
    if not BUCKET_NAME.fullmatch(bucket):
        raise UserError(f"--capture {source!r}: {bucket!r} is not an S3 bucket name (letters, digits, '.', '-' "
                        f"and '_' only)")
    return bucket, prefix


def read_captures(source: str | Path, *, window: Window, model: str | None = None,
                  version: str | None = None) -> Captured:
    """Capture records of ``model`` (every model when None) and ``version`` (every version when None) in ``window``.

    Refusals usually name no model (the container refused before a model answered), so those with an
    ``unknown`` model or version are kept too.

    Raises:
        UserError: the folder or bucket cannot be read, or the source is neither a folder nor s3://.
    """
    source = str(source)
    def wanted(key: str) -> bool:
        return _wanted(key, model=model, version=version, days=window.days())

    if source.startswith("s3://"):
        files = _s3_files(*_s3_location(source), wanted)
    elif "://" in source:
        raise UserError(f"--capture must be a folder or s3://bucket/prefix, got {source!r}")
    else:
        files = _local_files(Path(source), wanted)
    captured = Captured()
    for name, data in files:
        captured.files += 1
        lines, damaged = _lines(data)
        captured.damaged_files += damaged
        if damaged and captured.first_damaged is None:
            captured.first_damaged = name
        for raw in lines:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:  # one bad byte costs its own line, not the file
                captured.bad_lines += 1
                continue
            if line.strip():
                _keep(captured, line, window=window, model=model, version=version)
    if captured.bad_lines and not captured.records:
        # Another format (Firehose converting to Parquet, a capture_format 2) read as "not enough data", exit 0,
        # every day: a scheduled job stayed green while it judged nothing.
        raise UserError(f"not one of the {captured.bad_lines} line(s) read from {captured.files} file(s) at {source} "
                        f"is a capture record of format {contract.CAPTURE_FORMAT} (another format, or not captures?)")
    return captured


def _well_formed_prediction(record: dict[str, Any]) -> bool:
    """A prediction record the jobs can use: its request's id, its input a mapping, a number a model could predict
    (finite, within float32, which XGBoost predicts in), a model version."""
    prediction = record.get("prediction")
    return (isinstance(record.get("request_id"), str) and isinstance(record.get("record"), dict)
            and finite_number(prediction) and abs(prediction) <= FLOAT32_MAX and _a_version(record.get("model_version")))


def _a_version(value: Any) -> bool:
    """A number, or text that shows: "" read as "no version answered" (no predicted records), and a line break
    in one split the job's one-line error in two."""
    if isinstance(value, str):
        return bool(value.strip()) and value.isprintable()
    return isinstance(value, int) and not isinstance(value, bool)


def _keep(captured: Captured, line: str, *, window: Window, model: str | None, version: str | None) -> None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line of thousands of nested brackets
        captured.bad_lines += 1
        return
    if not isinstance(record, dict) or record.get("capture_format") != contract.CAPTURE_FORMAT \
            or not is_capture_time(record.get("time")):
        captured.bad_lines += 1
        return
    captured.records += 1
    if not window.contains(record["time"]):
        return
    kind = record.get("kind")
    if kind == contract.PREDICTION and not _well_formed_prediction(record):
        captured.bad_lines += 1
    elif kind in (contract.PREDICTION, contract.REFUSAL) and _seen_before(captured, record):
        captured.duplicates += 1
    elif kind == contract.PREDICTION:
        if (model is None or record.get("model_name") == model) and \
                (version is None or str(record.get("model_version")) == str(version)):
            captured.predictions.append(record)
    elif kind == contract.REFUSAL:
        if (model is None or record.get("model_name") in (model, UNKNOWN)) and \
                (version is None or str(record.get("model_version")) in (str(version), UNKNOWN)):
            captured.refusals.append(record)
    else:
        captured.bad_lines += 1


def _seen_before(captured: Captured, record: dict[str, Any]) -> bool:
    """Whether a record of this request (and row) was read already: a second delivery of it, which would count
    the same answer twice (a window of 300 requests judged as 600, a refusal doubling the refused share)."""
    key = (str(record["kind"]), str(record.get("request_id")), str(record.get("row", 0)))
    if key in captured.seen:
        return True
    captured.seen.add(key)
    return False
