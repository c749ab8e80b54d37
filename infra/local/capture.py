"""Owns the stand-in's capture sinks: a local folder, or moto's Firehose -> S3 running in a subprocess.

Either way the records are made and sent by the real handler's capture code (``infra/api/runtime/capture.py``
and ``serving/contract.py``); only where they go differs. With moto, the handler's real boto3 firehose client
puts them to a delivery stream whose S3 destination is a moto bucket; moto delivers each ``PutRecordBatch``
as one object at once, without buffering, compression or dynamic partitioning, so its keys are
``capture/YYYY/MM/DD/HH/<stream>-...`` rather than the deployed stream's ``capture/model=../version=../dt=..``
(the monitoring jobs read records by their content, whatever the key). ``mirror`` copies the objects into a
folder before moto stops, so they outlive the run.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from serving import contract

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
BUCKET = "student-score-capture-local"
STREAM = "student-score-capture-local"
REGION = "us-east-1"
ACCOUNT = "000000000000"  # moto's default account
FLUSH_TIMEOUT_S = 10.0
DUMMY = {"aws_access_key_id": "stand-in", "aws_secret_access_key": "stand-in", "region_name": REGION}  # noqa: S105


@dataclass
class MotoFirehose:
    """A moto server with a capture bucket and a delivery stream into it."""

    process: subprocess.Popen[bytes]
    url: str

    def client(self, service: str):  # noqa: ANN201 - a boto3 client
        import boto3

        return boto3.client(service, endpoint_url=self.url, **DUMMY)

    def handler_environment(self) -> dict[str, str]:
        """What the handler reads to put capture records to this stream."""
        return {"CAPTURE_STREAM": STREAM, "FIREHOSE_ENDPOINT_URL": self.url}

    def mirror(self, dest: Path) -> int:
        """Copy every object of the capture bucket to ``dest/<key>``; returns how many."""
        s3 = self.client("s3")
        copied = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                target = dest / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
                copied += 1
        return copied

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_moto(*, host: str, port: int, timeout_s: float = 30.0) -> MotoFirehose:
    """Start ``python -m moto.server`` on loopback, then create the bucket and the delivery stream."""
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false"})
    moto = MotoFirehose(process=process, url=f"http://{host}:{port}")
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{moto.url}/moto-api/", timeout=1):  # noqa: S310 - loopback
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                moto.stop()
                raise RuntimeError(f"moto server did not start on {moto.url} within {timeout_s:.0f} s") from None
            time.sleep(0.1)
    moto.client("s3").create_bucket(Bucket=BUCKET)
    moto.client("firehose").create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/capture-delivery",
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
            "Prefix": f"{contract.CAPTURE_PREFIX}/",
            "CompressionFormat": "UNCOMPRESSED",
        },
    )
    return moto


def flush_handler_capture(timeout_s: float) -> bool:
    """Wait for the handler's queued capture records to be sent (its module, imported when first needed)."""
    from infra.api.runtime import capture

    return capture.flush(timeout_s)


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def default_capture_dir() -> Path:
    """Where captured requests go: ``monitor.capture_dir`` in params.yaml, relative to the repository root."""
    from core.params import load_params

    return ROOT / load_params(ROOT / "params.yaml").monitor.capture_dir


def capture_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The stand-in's ``--capture`` and ``--capture-dir`` options, and its capture around the whole command.

    The sink is set up before the command starts anything (a request arriving before capture is on would find
    it off for good) and closed after it stopped everything (the Lambda instance processes flush at exit).
    """
    @functools.wraps(command)
    def with_capture(*args: Any, capture: str, capture_dir: Path | None, **kwargs: Any) -> Any:
        with ExitStack() as stack:
            env = open_capture(stack, capture=capture, capture_dir=capture_dir, host=LOOPBACK, port=_free_port())
            stack.callback(_restore, {name: os.environ.get(name) for name in env})
            os.environ.update(env)
            return command(*args, **kwargs)

    with_folder = click.option("--capture-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                               envvar="STAND_IN_CAPTURE_DIR",
                               help="Capture folder (env STAND_IN_CAPTURE_DIR; default: params.yaml "
                                    "monitor.capture_dir).")(with_capture)
    return click.option("--capture", type=click.Choice(["folder", "moto", "off"]), default="folder",
                        show_default=True, envvar="STAND_IN_CAPTURE",
                        help="Capture records to a folder, to moto's Firehose -> S3, or not at all.")(with_folder)


def open_capture(stack: ExitStack, *, capture: str, capture_dir: Path | None, host: str, port: int,
                 flush: Callable[[float], bool] = flush_handler_capture) -> dict[str, str]:
    """Set up the ``capture`` sink ("folder", "moto" or "off") for the life of ``stack``; returns the handler's env.

    Call it before the front door takes requests (and the Lambda instances start): a request arriving first
    would find capture off for good. On close, the handler's queue is flushed (``flush``), then moto's objects
    are mirrored into ``capture_dir`` (default: ``default_capture_dir()``).
    """
    mode = capture
    if mode == "off":
        return {}
    folder = capture_dir or default_capture_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a path under a file, a read-only place: the sink cannot be made
        raise click.ClickException(f"capture folder {folder}: {err.strerror or err}") from None
    if mode == "folder":
        stack.callback(flush, FLUSH_TIMEOUT_S)
        return {"CAPTURE_DIR": str(folder)}
    moto = start_moto(host=host, port=port)
    stack.callback(moto.stop)
    stack.callback(moto.mirror, folder)
    stack.callback(flush, FLUSH_TIMEOUT_S)
    return moto.handler_environment()
