"""Owns deploying to the stand-in: what ``make deploy`` does to AWS, done to the local chain on loopback.

``python -m infra.local.deploy --state-dir DIR --model-tarball T --outputs-file F`` (re)starts ``python -m
infra.local`` in the background on the state directory's fixed port with model ``T`` and writes ``F`` in the
shape ``cdk deploy --outputs-file`` does (``{stack: {"PredictUrl": ..., "EndpointName": ...}}``), so the release's
later steps (``make smoke``, ``make verify-release``) run unchanged against it. ``--stop`` stops it.

Like a CloudFormation update that fails, a model that does not come up is a failed deploy (exit 1, one line)
and the previous model is put back, so the endpoint keeps serving what it served. The state directory holds
the served model (``deployed.tar.gz``), the front door's port, the stand-in's pid and its log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from core.cli import FiniteRange, UserError, run_cli
from infra.local.container import LOOPBACK, ROOT, free_port
from serving import contract
from serving.layout import ModelError, bundle_metadata

STACK = "StudentScore-local-Serving"
ENDPOINT_NAME = "student-score-local"
DEPLOYED, CANDIDATE, PORT, PID, LOG = "deployed.tar.gz", "candidate.tar.gz", "port", "pid", "stand-in.log"


def _stand_in_pid(state: Path) -> int | None:
    """The pid recorded in ``state`` if that process is alive and is our stand-in (never another's process)."""
    try:
        pid = int((state / PID).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"infra.local" in cmdline and not _exited(pid) else None


def _exited(pid: int) -> bool:
    try:  # our own child (a test calling main() in-process) must be reaped, or it lingers as a zombie
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def stop(state: Path, timeout_s: float = 20.0) -> bool:
    """Stop the stand-in recorded in ``state`` (SIGTERM to its session, SIGKILL after ``timeout_s``)."""
    pid = _stand_in_pid(state)
    (state / PID).unlink(missing_ok=True)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)  # it runs in its own session (start_new_session below)
    deadline = time.monotonic() + timeout_s
    while not _exited(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout_s
        time.sleep(0.1)
    return True


def _start(state: Path, tarball: Path, port: int, ready_timeout_s: float) -> bool:
    """Start the stand-in with ``tarball``; True once its front door accepts connections (it binds only after the
    container answered /ping), False if it exits or the time runs out (it is then stopped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(state / LOG, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", "--model-tarball", str(tarball), "--port", str(port),
             "--endpoint-name", ENDPOINT_NAME, "--ready-timeout", str(ready_timeout_s)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    (state / PID).write_text(str(process.pid))
    deadline = time.monotonic() + ready_timeout_s + 5
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    stop(state)
    return False


def deploy(state: Path, tarball: Path, outputs: Path, *, port: int | None, ready_timeout_s: float) -> str:
    """Serve ``tarball`` in place of the current model; on failure serve the previous one again.

    Returns the success line. Raises ``UserError`` for a failed deploy (after the rollback).
    """
    try:
        version = str(bundle_metadata(tarball)["version"])
    except ModelError as err:
        raise UserError(f"deploy failed before anything changed: {err}") from None
    state.mkdir(parents=True, exist_ok=True)
    port = int((state / PORT).read_text()) if (state / PORT).is_file() else (port or free_port())
    (state / PORT).write_text(str(port))
    shutil.copyfile(tarball, state / CANDIDATE)
    stop(state)
    if not _start(state, state / CANDIDATE, port, ready_timeout_s):
        (state / CANDIDATE).unlink(missing_ok=True)
        if not (state / DEPLOYED).is_file():
            raise UserError(f"deploy failed: version {version} did not start (see {state / LOG}); nothing was "
                            "served before, so nothing is served now")
        restored = str(bundle_metadata(state / DEPLOYED)["version"])
        if not _start(state, state / DEPLOYED, port, ready_timeout_s):
            raise UserError(f"deploy failed: version {version} did not start, and neither did version {restored} "
                            f"on rollback (see {state / LOG})")
        raise UserError(f"deploy failed: version {version} did not start (see {state / LOG}); rolled back, "
                        f"version {restored} is served")
    (state / CANDIDATE).replace(state / DEPLOYED)
    url = f"http://{LOOPBACK}:{port}{contract.ROUTE_PATH}"
    outputs.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_text(json.dumps({STACK: {"PredictUrl": url, "EndpointName": ENDPOINT_NAME}}, indent=2) + "\n")
    return f"deployed version {version} to the stand-in: {url} (outputs in {outputs})"


@click.command(help="Deploy a model tarball to the local stand-in running in the background, or stop it.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the stand-in's model, port, pid and log live.")
@click.option("--model-tarball", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--outputs-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write PredictUrl and EndpointName here, as cdk deploy --outputs-file does.")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=None,
              help="The front door's port on the first deploy (default: a free one); later deploys keep it.")
@click.option("--ready-timeout", type=FiniteRange(min=1), default=60.0, show_default=True)
@click.option("--stop", "do_stop", is_flag=True, help="Stop the stand-in instead.")
def cli(state_dir: Path, model_tarball: Path | None, outputs_file: Path | None, port: int | None,
        ready_timeout: float, do_stop: bool) -> None:
    state_dir = state_dir.resolve()  # the stand-in runs from the repository root, not from here
    if do_stop:
        click.echo("stand-in stopped" if stop(state_dir) else "no stand-in was running")
        return
    if model_tarball is None or outputs_file is None:
        raise click.UsageError("give --model-tarball and --outputs-file (or --stop)")
    click.echo(deploy(state_dir, model_tarball.resolve(), outputs_file, port=port, ready_timeout_s=ready_timeout))


def main(argv: list[str] | None = None) -> int:
    """Deploy to (or stop) the stand-in and return the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
