"""Owns the stand-in's container process: ``serving/serve`` started as SageMaker starts it, waited for, stopped.

SageMaker unpacks ``model.tar.gz`` into the model directory (``SM_MODEL_DIR``), passes the port in
``SAGEMAKER_BIND_TO_PORT`` and stops the container with SIGTERM; here ``SERVING_HOST=127.0.0.1`` also keeps it
on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from serving import bundle
from serving.layout import ModelError

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "serving" / "serve"
LOOPBACK = "127.0.0.1"


def unpack(tarball: Path, model_dir: Path) -> None:
    """Unpack the tarball as SageMaker does into ``/opt/ml/model``, refusing unsafe entries as the container does."""
    try:
        bundle.unpack(tarball, model_dir)
    except ModelError as err:
        raise click.ClickException(str(err)) from None


def wait_ready(url: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``GET {url}/ping`` until it answers 200; fail early if the container process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise click.ClickException(
                f"the container exited with code {process.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:  # noqa: S310 - http by design
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the container at {url} did not answer /ping within {timeout_s:.0f} s")


def free_port() -> int:
    """A loopback port free right now (the container binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def start_container(*, model_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``serving/serve serve`` in its own process group (gunicorn forks workers we must stop too)."""
    env = {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SERVING_HOST": LOOPBACK,
    }
    return subprocess.Popen([sys.executable, str(SERVE), "serve"], cwd=ROOT, env=env, start_new_session=True)


def stop_container(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the container's process group (gunicorn drains), SIGKILL it if it has not exited in 15 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
