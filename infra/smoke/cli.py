"""Owns the smoke test of a deployed API: POST one record, expect 200, a numeric prediction and the model version.

Usage: ``python -m infra.smoke (--url URL | --outputs-file cdk-outputs.json [--stack NAME])
[--model-tarball dist/model.tar.gz] [--record JSON|@FILE] [--attempts N] [--delay S] [--timeout S]``.

The URL comes from ``--url`` or from the ``PredictUrl`` output in the file ``cdk deploy --outputs-file`` writes
(see infra/stacks.py). With ``--model-tarball`` the record is the bundle's own self-test record and the answer
must carry that bundle's ``X-Model-Version``, so the test proves the API serves the version just released.
Connection errors, timeouts, 429 and 5xx are retried (a serverless endpoint's first call after a deploy can
answer 503/504 while it starts); any other answer fails at once. Success and failure are one line each.

Environment: ``SMOKE_API_KEY`` (same as ``--api-key``), sent as ``x-api-key`` when the API requires a key
(``api_key_required`` in infra/settings.py, true for prod).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from core.cli import FiniteRange, UserError, run_cli
from core.numbers import finite_number
from infra.smoke.release import read_member, released_model
from serving import contract
from serving.layout import SCHEMA_FILE

OUTPUT_KEY = "PredictUrl"
VERSION_HEADER = contract.VERSION_HEADER
# The first row of the sample table without its target: a record every trained schema accepts.
SAMPLE_RECORD: dict[str, Any] = {
    "Hours_Studied": 22, "Attendance": 81, "Parental_Involvement": "Medium", "Access_to_Resources": "Low",
    "Extracurricular_Activities": "No", "Sleep_Hours": 9, "Previous_Scores": 82, "Motivation_Level": "Low",
    "Internet_Access": "Yes", "Tutoring_Sessions": 2, "Family_Income": "Medium", "Teacher_Quality": "High",
    "School_Type": "Public", "Peer_Influence": "Neutral", "Physical_Activity": 5, "Learning_Disabilities": "No",
    "Parental_Education_Level": "High School", "Distance_from_Home": "Near", "Gender": "Female",
}


class Retryable(Exception):
    """An answer that may change on its own (not reachable yet, throttled, warming up)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def url_from_outputs(path: Path, stack: str | None) -> str:
    """The ``PredictUrl`` output in a ``cdk deploy --outputs-file`` JSON (``{stack: {output: value}}``)."""
    try:
        outputs = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(outputs, dict):
        raise UserError(f"{path}: expected an object of stacks and their outputs")
    found = {name: values[OUTPUT_KEY] for name, values in outputs.items()
             if isinstance(values, dict) and values.get(OUTPUT_KEY) and (stack is None or name == stack)}
    if not found:
        where = f"stack {stack}" if stack else "any stack"
        raise UserError(f"{path}: no {OUTPUT_KEY} output in {where} (was the serving stack deployed?)")
    if len(found) > 1:
        raise UserError(f"{path}: {OUTPUT_KEY} in several stacks ({', '.join(sorted(found))}); pick one with --stack")
    return str(next(iter(found.values())))


def self_test_record(tarball: Path) -> dict[str, Any] | None:
    """The self-test record in the bundle's ``schema.json``, or None if it has none."""
    schema = read_member(tarball, SCHEMA_FILE)
    record = (schema.get("self_test") or {}).get("record") if isinstance(schema, dict) else None
    return record if isinstance(record, dict) and record else None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST ``body``; any HTTP status is an ``Answer``, a network failure is ``Retryable``."""
    try:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - URL checked
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as err:
        with err:
            return Answer(err.code, dict(err.headers.items()), err.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise Retryable(f"cannot reach {url}: {reason}") from None
    except (ValueError, http.client.InvalidURL) as err:  # a port that is not a number, control characters in the
        raise UserError(f"cannot send to {url}: {err}") from None  # URL or in a header: no retry sends it either


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def check_answer(answer: Answer, expect_version: str | None) -> tuple[float, str]:
    """The prediction and model version of a good answer.

    Raises:
        Retryable: 429 or 5xx.
        UserError: any other status, a body without one finite numeric prediction, a missing or wrong version.
    """
    if answer.status == 429 or answer.status >= 500:
        raise Retryable(f"HTTP {answer.status}: {_excerpt(answer.body)}")
    if answer.status != 200:
        raise UserError(f"HTTP {answer.status}: {_excerpt(answer.body)}")
    try:
        payload = json.loads(answer.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"HTTP 200 but the body is not JSON: {_excerpt(answer.body)}") from None
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    value = predictions[0] if isinstance(predictions, list) and len(predictions) == 1 else None
    if not finite_number(value):  # `true` is not a prediction, nor is a number no float can hold
        raise UserError(f"HTTP 200 but no single numeric prediction in the body: {_excerpt(answer.body)}")
    headers = {name.lower(): value for name, value in answer.headers.items()}
    version = headers.get(VERSION_HEADER.lower(), "").strip()
    if not version or version == "unknown":
        raise UserError(f"HTTP 200 but no {VERSION_HEADER} header naming the model version")
    if expect_version is not None and version != expect_version:
        raise UserError(f"the API serves model version {version}, expected {expect_version} (the released one)")
    return float(value), version


def smoke(url: str, record: dict[str, Any], *, api_key: str | None, expect_version: str | None,
          attempts: int, delay: float, timeout: float,
          sleep: Callable[[float], None] = time.sleep) -> str:
    """Send ``record`` to ``url`` until it answers well or ``attempts`` run out; return the success line."""
    body = json.dumps(record).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers[contract.API_KEY_HEADER] = api_key
    last = ""
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            prediction, version = check_answer(post(url, body, headers, timeout), expect_version)
        except Retryable as err:
            last = str(err)
            if attempt < attempts:
                sleep(delay)
            continue
        seconds = time.monotonic() - started
        return (f"smoke ok: {url} answered 200 in {seconds:.2f}s with prediction {prediction:g} "
                f"from model version {version} (attempt {attempt}/{attempts})")
    raise UserError(f"smoke failed after {attempts} attempt(s): {last}")


def _record(text: str | None, tarball: Path | None) -> dict[str, Any]:
    if text is None:
        return (self_test_record(tarball) if tarball else None) or SAMPLE_RECORD
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot read {text[1:]}: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise UserError(f"{text[1:]} is not UTF-8 text") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--record is not valid JSON ({err})") from None
    except RecursionError:
        raise UserError("--record is nested too deeply to be a record") from None
    except ValueError:  # valid JSON, but an integer of more digits than Python reads (int_max_str_digits)
        raise UserError(f"--record holds a number of more than {sys.get_int_max_str_digits()} digits") from None
    if not isinstance(record, dict):
        raise UserError("--record must be one JSON object")
    return record


@click.command(help="POST one record to the deployed API; exit 0 on a 200 with a numeric prediction and a "
                    "model version header, else 1 with one line.")
@click.option("--url", default=None, help="The predict URL (instead of --outputs-file).")
@click.option("--outputs-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="cdk deploy --outputs-file JSON holding the PredictUrl output.")
@click.option("--stack", default=None, help="The stack whose PredictUrl to use when the file holds several.")
@click.option("--model-tarball", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The released bundle: send its self-test record and expect its X-Model-Version.")
@click.option("--record", default=None, help="The record as JSON or @FILE (default: the bundle's self-test "
                                             "record, else a built-in sample row).")
@click.option("--api-key", envvar="SMOKE_API_KEY", default=None, show_envvar=True,
              help="Sent as x-api-key when the API requires a key.")
@click.option("--attempts", type=click.IntRange(min=1, max=20), default=6, show_default=True)
@click.option("--delay", type=FiniteRange(min=0, max=120), default=10.0, show_default=True,
              help="Seconds between attempts.")
@click.option("--timeout", type=FiniteRange(min=0.1, max=60), default=30.0, show_default=True,
              help="Seconds per request (API Gateway gives up after 29).")
def cli(url: str | None, outputs_file: Path | None, stack: str | None, model_tarball: Path | None,
        record: str | None, api_key: str | None, attempts: int, delay: float, timeout: float) -> None:
    if (url is None) == (outputs_file is None):
        raise click.UsageError("give exactly one of --url and --outputs-file")
    if url is None:
        url = url_from_outputs(outputs_file, stack)
    if not url.startswith(("https://", "http://")):
        raise UserError(f"not an http(s) URL: {url!r}")
    expect_version = str(released_model(model_tarball)["version"]) if model_tarball else None
    click.echo(smoke(url, _record(record, model_tarball), api_key=api_key, expect_version=expect_version,
                     attempts=attempts, delay=delay, timeout=timeout))


def main(argv: list[str] | None = None) -> int:
    """Run the smoke test and return its exit code (0 ok, 1 failed, 2 usage)."""
    return run_cli(cli, argv)
