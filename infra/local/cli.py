"""Owns the stand-in's command line: start container, endpoint and front door on loopback, serve or send one request.

The chain is the deployed one with AWS taken out:
``curl -> front door (API Gateway) -> infra/api/runtime/handler.py -> boto3 sagemaker-runtime ->
stand-in endpoint (InvokeEndpoint) -> container /invocations``.

The container is ``serving/serve`` started the way SageMaker starts it: the tarball unpacked into a
model directory (``SM_MODEL_DIR``), the port in ``SAGEMAKER_BIND_TO_PORT``, plus ``SERVING_HOST=127.0.0.1``
so it listens on loopback only. ``--container-url`` uses an already running container instead.

The endpoint behaves like the serverless endpoint the CDK stack deploys (``serverless.py``): its
``max_concurrency`` and provisioned concurrency are read from infra/settings.py for ``--env`` with the same
``-c FIELD=VALUE`` overrides ``cdk`` takes; a cold start lasts the container's measured start (0 with
``--container-url``) plus ``--cold-start-overhead``, except with ``--request``, a one-shot check of the chain
whose container has just started anyway (its cold starts take no time). ``--lambda-concurrency N`` runs the handler on N Lambda
instances (processes) instead of one, so that the endpoint, not the Lambda, is what a load test fills.

Environment set here for the handler (this process only): ``ENDPOINT_NAME``,
``SAGEMAKER_RUNTIME_ENDPOINT_URL`` (the stand-in endpoint), dummy ``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, and ``AWS_EC2_METADATA_DISABLED`` so boto3 never
looks for real credentials.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from core.cli import FiniteRange
from core.params import load_params
from infra.local.capture import capture_options
from infra.local.container import (
    LOOPBACK,
    ROOT,
    free_port,
    start_container,
    stop_container,
    unpack,
    wait_ready,
)
from infra.local.endpoint import REGION, STATS_PATH, start_endpoint
from infra.local.front_door import HANDLER_MODULE, start_front_door
from infra.local.lambdas import LambdaPool
from infra.local.serverless import serverless_config, settings_for

SELF_TEST = "self-test"


def default_tarball() -> Path:
    """The exported model's path: ``export.path`` in params.yaml, relative to the repository root."""
    return ROOT / load_params(ROOT / "params.yaml").export.path


def handler_environment(*, endpoint_name: str, endpoint_url: str) -> dict[str, str]:
    """What the handler reads, pointed at the stand-in endpoint with dummy credentials."""
    return {
        "ENDPOINT_NAME": endpoint_name,
        "SAGEMAKER_RUNTIME_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "stand-in",
        "AWS_SECRET_ACCESS_KEY": "stand-in",  # noqa: S105 - a dummy; the stand-in checks no signature
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "predict",
        "POWERTOOLS_METRICS_NAMESPACE": "StudentScoreLocal",
    }


def request_body(request: str, model_dir: Path | None) -> bytes:
    """``--request``: JSON text, ``@FILE``, or ``self-test`` (the bundle's own self-test record)."""
    if request == SELF_TEST:
        schemas = sorted(model_dir.rglob("schema.json")) if model_dir else []
        if not schemas:
            raise click.ClickException("--request self-test needs the model bundle (not --container-url)")
        return json.dumps(json.loads(schemas[0].read_text())["self_test"]["record"]).encode()
    if not request.startswith("@"):
        return request.encode()
    try:
        return Path(request[1:]).read_bytes()
    except OSError as err:
        raise click.ClickException(f"--request {request}: {err.strerror or err}") from None


def send(url: str, body: bytes) -> tuple[int, dict[str, str], str]:
    """POST ``body`` to the front door; returns status, headers and text."""
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback http
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@click.command(help="Run the API -> Lambda -> SageMaker chain on loopback, around the real container.")
@click.option(
    "--model-tarball",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Exported model (default: params.yaml export.path).",
)
@click.option(
    "--container-url", default=None, callback=lambda _ctx, _param, value: container_root(value),
    help="Use this running container instead of starting serving/serve.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    envvar="STAND_IN_PORT",
    help="Front door port (env STAND_IN_PORT); 0 picks a free one.",
)
@click.option(
    "--container-port",
    type=click.IntRange(0, 65535),
    default=0,
    envvar="STAND_IN_CONTAINER_PORT",
    help="Port for the started container (env STAND_IN_CONTAINER_PORT); default: a free one.",
)
@click.option("--endpoint-name", default="student-score-local", show_default=True)
@click.option("--ready-timeout", type=FiniteRange(min=0, min_open=True, max=86400), default=60.0, show_default=True,
              help="Seconds to wait for /ping.")
@click.option("--env", "env", default="dev", show_default=True, help="Deployment settings to copy (dev|prod).")
@click.option("-c", "--context", "context", multiple=True, metavar="FIELD=VALUE",
              help="Override a deployment setting as `cdk -c` does, e.g. -c endpoint_max_concurrency=2.")
@click.option("--cold-start-overhead", type=FiniteRange(0, 120), default=0.5, show_default=True,
              help="Seconds a cold start adds to the container's own start (SageMaker's share; an estimate).")
@click.option("--lambda-concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Lambda instances (processes) taking events at once; 1 runs the handler in this process.")
@click.option(
    "--request",
    "request",
    default=None,
    help="Send one request (JSON, @FILE or 'self-test'), print the answer, stop; exit 1 unless 2xx.",
)
@capture_options
def cli(
    model_tarball: Path | None,
    container_url: str | None,
    port: int,
    container_port: int,
    endpoint_name: str,
    ready_timeout: float,
    env: str,
    context: tuple[str, ...],
    cold_start_overhead: float,
    lambda_concurrency: int,
    request: str | None,
) -> None:
    settings = _settings(env, context)
    # A request file is read before anything starts: a wrong path is one line, not a line after a container's boot.
    body = request_body(request, None) if request is not None and request.startswith("@") else None
    with ExitStack() as stack:
        model_dir: Path | None = None
        container_start_s = 0.0
        if container_url is None:
            tarball = model_tarball or default_tarball()
            if not tarball.is_file():
                raise click.ClickException(
                    f"no model tarball at {tarball}: export a model first or pass --model-tarball"
                )
            model_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stand-in-model-")))
            unpack(tarball, model_dir)
            container_port = container_port or free_port()
            started = time.monotonic()
            process = start_container(model_dir=model_dir, port=container_port)
            stack.callback(stop_container, process)
            container_url = f"http://{LOOPBACK}:{container_port}"
            wait_ready(container_url, timeout_s=ready_timeout, process=process)
            container_start_s = time.monotonic() - started
        else:
            wait_ready(container_url, timeout_s=ready_timeout)
        cold_start_s = 0.0 if request is not None else round(container_start_s + cold_start_overhead, 3)
        serverless = serverless_config(settings, cold_start_s=cold_start_s)
        endpoint = start_endpoint(
            endpoint_name=endpoint_name, container_url=container_url, host=LOOPBACK, serverless=serverless
        )
        stack.callback(endpoint.server_close)
        stack.callback(endpoint.shutdown)
        os.environ.update(handler_environment(endpoint_name=endpoint_name, endpoint_url=endpoint.url))
        lambdas = None
        if lambda_concurrency > 1:
            lambdas = LambdaPool(module=HANDLER_MODULE, instances=lambda_concurrency)
            stack.callback(lambdas.shutdown)
            lambdas.warm()
        try:
            front = start_front_door(host=LOOPBACK, port=port, lambdas=lambdas)
        except OSError as err:
            raise click.ClickException(f"front door port {port}: {err.strerror or err} (pass --port or set "
                                       f"STAND_IN_PORT; 0 picks a free one)") from None
        stack.callback(front.server_close)
        stack.callback(front.shutdown)
        if request is not None:
            status, headers, text = send(front.url, body if body is not None else request_body(request, model_dir))
            model = {k: v for k, v in headers.items() if k.lower().startswith(("x-model", "x-data"))}
            click.echo(f"HTTP {status} {json.dumps(model)}\n{text}")
            if not 200 <= status < 300:
                raise click.exceptions.Exit(1)
            return
        click.echo(f"front door: POST {front.url}\n  container {container_url}, endpoint {endpoint.url}")
        click.echo(
            f"  serverless ({settings.name}): max_concurrency {serverless.max_concurrency}, provisioned "
            f"{serverless.provisioned_concurrency}, cold start {serverless.cold_start_s:.2f} s; "
            f"{lambda_concurrency} Lambda instance(s); counts at GET {endpoint.url}{STATS_PATH}"
        )
        click.echo(f"try: curl -s -X POST {front.url} -H 'Content-Type: application/json' -d @record.json")
        _wait_for_stop()


def _settings(env: str, context: Sequence[str]) -> Any:
    try:
        return settings_for(env, context)
    except ValueError as error:
        raise click.ClickException(f"deployment settings: {error}") from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM (raised as KeyboardInterrupt, so the ExitStack stops everything)."""
    while True:
        time.sleep(3600)


def container_root(url: str | None) -> str | None:
    """``--container-url`` as ``scheme://host[:port]``: the stand-in adds /ping and /invocations itself.

    Raises:
        click.BadParameter: not an http(s) URL with a host and a valid port, or one with a path or query.
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # the port is checked (a number, 0..65535) when read
    except ValueError as err:
        raise click.BadParameter(f"{url!r} is not a URL ({err})", param_hint="--container-url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise click.BadParameter(f"{url!r} is not http(s)://HOST[:PORT]", param_hint="--container-url")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise click.BadParameter(f"{url!r} has a path or query; give the container's root (the stand-in adds "
                                 f"/ping and /invocations)", param_hint="--container-url")
    return f"{parts.scheme}://{parts.netloc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in; returns the exit code."""
    # SIGTERM as KeyboardInterrupt from the start: a stop while the container boots must still unwind the
    # ExitStack (stop the container's process group, delete the unpacked model), not kill this process bare.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Without standalone mode click returns an Exit's code instead of raising it.
        code = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.ClickException as err:  # one line, as every other command (core.cli.run_cli)
        print(f"error: {err.format_message()}", file=sys.stderr)
        return err.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
