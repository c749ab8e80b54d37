"""The `serve` launcher and the server's lifecycle: arguments, environment, health, SIGTERM."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from serving import layout
from tests.serving.serving_helpers import ROOT, SERVE, build_model_dir, running, sample_records

SERVE_ENV_PREFIXES = ("SM_", "SAGEMAKER_", "MODEL_SERVER_", "SERVING_", "GLIBC_TUNABLES")


def _dry_run(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(SERVE_ENV_PREFIXES)}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run([str(SERVE), "serve", "--dry-run"], env={**clean, **env}, capture_output=True,
                          text=True, timeout=30, check=False)


def _option(command: str, flag: str) -> str:
    argv = shlex.split(command)
    return argv[argv.index(flag) + 1]


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


# --- launcher: fast, no server ----------------------------------------------------------------------------

def test_launcher_header_documents_every_environment_variable_it_reads() -> None:
    source = SERVE.read_text()
    header = source.split('"""')[1]
    read = set(re.findall(r"""environ(?:\.get\(|, )["']([A-Z_]+)["']""", source))

    assert {"SM_MODEL_DIR", "SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_GUNICORN_WORKERS"} <= read, read
    undocumented = sorted(name for name in read if not re.search(rf"^\s+{name}\s", header, re.MULTILINE))
    assert not undocumented, f"read but not documented in the header of serving/serve: {undocumented}"


def test_launcher_is_an_executable_script() -> None:
    assert os.access(SERVE, os.X_OK)
    assert SERVE.read_text().startswith("#!/usr/bin/env python3\n")


def test_defaults_are_sagemakers() -> None:
    result = _dry_run()

    assert result.returncode == 0, result.stderr
    assert _option(result.stdout, "--bind") == "0.0.0.0:8080"
    assert _option(result.stdout, "--workers") == str(len(os.sched_getaffinity(0)))
    assert "serving.wsgi:create('/opt/ml/model', 6291456)" in shlex.split(result.stdout)


def test_environment_sets_port_host_model_dir_and_body_limit() -> None:
    result = _dry_run(SAGEMAKER_BIND_TO_PORT="9090", SERVING_HOST="127.0.0.1", SM_MODEL_DIR="/m",
                      SERVING_MAX_BODY_BYTES="1000", MODEL_SERVER_TIMEOUT="5", SERVING_GRACEFUL_TIMEOUT="3")

    assert result.returncode == 0, result.stderr
    assert _option(result.stdout, "--bind") == "127.0.0.1:9090"
    assert (_option(result.stdout, "--timeout"), _option(result.stdout, "--graceful-timeout")) == ("5", "3")
    assert "serving.wsgi:create('/m', 1000)" in shlex.split(result.stdout)


@pytest.mark.parametrize(("env", "workers"), [
    ({"MODEL_SERVER_WORKERS": "3"}, "3"),
    ({"SAGEMAKER_GUNICORN_WORKERS": "5", "MODEL_SERVER_WORKERS": "3"}, "5"),
])
def test_worker_count_from_the_environment(env: dict[str, str], workers: str) -> None:
    result = _dry_run(**env)

    assert _option(result.stdout, "--workers") == workers, result.stderr


@pytest.mark.parametrize("env", [{"SAGEMAKER_BIND_TO_PORT": "http"}, {"MODEL_SERVER_WORKERS": "0"},
                                 {"SAGEMAKER_BIND_TO_PORT": "70000"}])
def test_bad_environment_is_one_error_line(env: dict[str, str]) -> None:
    result = _dry_run(**env)

    assert result.returncode == 1
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert next(iter(env)) in result.stderr


# A process freeing 15 MB at the top of its heap after each "request", as a worker reading a 5 MB body does;
# prints the fewest page faults one such cycle cost once warm.
_FAULTS_PER_CYCLE = """
import resource
counts = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [b"x" * 5_000_000 for _ in range(3)]
    del blocks
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(counts[2:]))
"""


def _faults_per_cycle(tunables: str) -> int:
    result = subprocess.run([sys.executable, "-c", _FAULTS_PER_CYCLE], env={**os.environ, "GLIBC_TUNABLES": tunables},
                            capture_output=True, text=True, timeout=60, check=True)
    return int(result.stdout)


def test_gunicorn_starts_with_malloc_tunables_that_glibc_applies() -> None:
    # Given the environment the launcher execs gunicorn with
    first = shlex.split(_dry_run().stdout)[0]
    assert first.startswith("GLIBC_TUNABLES=glibc.malloc."), first
    tunables = first.partition("=")[2]
    # Then glibc honours it (a misspelt tunable is ignored without a word): what a big request frees is kept
    # for the next one, where glibc's own settings hand it back and fault it in again (~3,700 pages a cycle)
    assert _faults_per_cycle("") > 1000
    assert _faults_per_cycle(tunables) < 100


def test_glibc_tunables_set_by_the_operator_are_kept() -> None:
    result = _dry_run(GLIBC_TUNABLES="glibc.malloc.arena_max=2")

    assert shlex.split(result.stdout)[0] == "GLIBC_TUNABLES=glibc.malloc.arena_max=2", result.stdout


def test_launcher_refuses_commands_other_than_serve() -> None:
    result = subprocess.run([sys.executable, str(SERVE), "train"], capture_output=True, text=True,
                            timeout=30, check=False)

    assert result.returncode == 2
    assert "train" in result.stderr


# --- real servers -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_serves_a_model_dir_that_holds_only_the_tarball(model_tar: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "opt_ml_model"
    model_dir.mkdir()
    shutil.copy(model_tar, model_dir / layout.TARBALL_FILE)
    record = sample_records(rows=1, seed=5)[0]

    with running(model_dir, tmp_path / "logs" / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": "1"}) as server:
        ping = requests.get(f"{server.url}/ping", timeout=2)
        answer = requests.post(f"{server.url}/invocations", json=record, timeout=10)

    assert ping.status_code == 200, server.output()
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 1
    assert not [p for p in (tmp_path / "logs").iterdir() if p.name.startswith("model-")], \
        "the unpacked copy in TMPDIR must be gone once the model is loaded"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_the_server_writes_nothing_outside_tmpdir(model_tar: Path, tmp_path: Path) -> None:
    # The image runs as root (SageMaker's contract), so a read-only root filesystem is what keeps the container
    # honest; this is the same promise checked here, where the tests run as root too and chmod would not bind:
    # the code, the model directory and HOME are unchanged after startup and a request.
    model_dir = tmp_path / "opt_ml_model"
    model_dir.mkdir()
    shutil.copy(model_tar, model_dir / layout.TARBALL_FILE)
    home = tmp_path / "home"
    home.mkdir()
    watched = {"model": model_dir, "home": home, "code": ROOT / "serving"}
    before = {name: _tree(path) for name, path in watched.items()}
    env = {"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", "SAGEMAKER_GUNICORN_WORKERS": "1"}

    with running(model_dir, tmp_path / "tmp" / "server.log", env=env) as server:
        answer = requests.post(f"{server.url}/invocations", json=sample_records(rows=1, seed=5)[0], timeout=10)

    assert answer.status_code == 200, server.output()
    assert {name: _tree(path) for name, path in watched.items()} == before


@pytest.mark.slow
def test_model_failing_its_self_test_never_reports_healthy(tmp_path: Path) -> None:
    # Decision: the server stays up and answers 503 with the reason (SageMaker then fails the endpoint's
    # health check), rather than crashing in a restart loop with the reason buried in the log.
    model_dir = build_model_dir(tmp_path / "model", expected_shift=5.0)

    with running(model_dir, tmp_path / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": "1"}) as server:
        ping = requests.get(f"{server.url}/ping", timeout=2)
        invoke = requests.post(f"{server.url}/invocations", json=sample_records(rows=1)[0], timeout=10)

    assert ping.status_code == 503
    assert "self-test failed" in ping.json()["error"]
    assert invoke.status_code == 503
    assert "self-test failed" in server.output(), "the reason must be in the container log"


@pytest.mark.slow
def test_corrupt_model_file_never_reports_healthy(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    with (copy / "schema.json").open("a") as handle:
        handle.write(" ")

    with running(copy, tmp_path / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": "1"}) as server:
        ping = requests.get(f"{server.url}/ping", timeout=2)

    assert ping.status_code == 503
    assert "schema.json: sha256 does not match" in ping.json()["error"]


@pytest.mark.slow
def test_sigterm_shuts_down_gracefully_with_the_configured_workers(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": "3"}) as server:
        assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
        workers = _children(server.process.pid)
        started = time.monotonic()

        code = server.stop(timeout=10)

        elapsed = time.monotonic() - started
    assert len(workers) == 3, "SAGEMAKER_GUNICORN_WORKERS must reach gunicorn"
    assert code == 0, server.output()
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers must exit with the master"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/ping", timeout=2)


def _minor_faults(pid: int) -> int:
    # /proc/PID/stat: minflt is the 10th field, the 8th after the command name in parentheses (proc(5)).
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


@pytest.mark.slow
def test_a_big_request_does_not_fault_its_body_in_again(model_dir: Path, tmp_path: Path) -> None:
    # Given a served model and a 5 MB body: ten records and whitespace, so that what the request costs in
    # memory is the body's (JSON allows whitespace after the value)
    records, _ = sample_records(rows=10, seed=3)
    body = json.dumps(records).encode() + b" " * 5_000_000
    with running(model_dir, tmp_path / "server.log", env={"SAGEMAKER_GUNICORN_WORKERS": "1"}) as server:
        (worker,) = _children(server.process.pid)

        def post() -> None:
            answer = requests.post(f"{server.url}/invocations", data=body, timeout=60,
                                   headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text[:300]

        for _ in range(3):  # warm: the heap grows to what such a request needs
            post()
        faults = []
        for _ in range(5):
            before = _minor_faults(worker)
            post()
            faults.append(_minor_faults(worker) - before)
    per_request = statistics.median(faults)
    # Then the worker reuses the memory its last request freed: a page fault for fewer than one in ten of the
    # body's pages (with glibc's own malloc settings gunicorn's copies of the body cost about two per page)
    assert per_request < len(body) / 4096 / 10, f"{per_request:.0f} page faults per request"


@pytest.mark.slow
def test_body_limit_comes_from_the_environment_and_serve_argument_is_optional(
        model_dir: Path, tmp_path: Path) -> None:
    record = sample_records(rows=1, seed=5)[0]
    env = {"SAGEMAKER_GUNICORN_WORKERS": "1", "SERVING_MAX_BODY_BYTES": "2000"}

    with running(model_dir, tmp_path / "server.log", args=(), env=env) as server:
        small = requests.post(f"{server.url}/invocations", json=record, timeout=10)
        large = requests.post(f"{server.url}/invocations", json=[record] * 10, timeout=10)

    assert small.status_code == 200, small.text
    assert large.status_code == 413, large.text


def test_the_default_body_limit_is_what_invoke_endpoint_accepts() -> None:
    # The API model AWS publishes for sagemaker-runtime (shipped in botocore) bounds InvokeEndpoint's Body.
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    limit = model.operation_model("InvokeEndpoint").input_shape.members["Body"].metadata["max"]
    serve = (Path(__file__).resolve().parents[2] / "serving" / "serve").read_text(encoding="utf-8")
    factors = re.search(r"^DEFAULT_MAX_BODY_BYTES = ([\d *]+)$", serve, re.MULTILINE).group(1).split("*")
    assert math.prod(int(f) for f in factors) == limit
