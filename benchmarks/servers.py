"""Owns the servers under test: how each is launched, when it is ready, its worker's memory, how it stops.

Four servers, each with one worker and pinned to one CPU with ``taskset``:
- ``ours``: the container's launcher ``serving/serve serve`` on a model dir holding only ``model.tar.gz``;
- ``noop``: the same gunicorn command line and config serving ``benchmarks.noop`` (the ceiling);
- ``reference``: ``gunicorn benchmarks.reference.app:app`` on a dir holding the reference's tarball;
- ``mlflow``: ``mlflow models serve -m models:/NAME/VERSION --env-manager local`` (uvicorn, one worker).

Cold start is process launch until the first 200 from ``POST /invocations``.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
INVOCATIONS = "/invocations"
POLL_S = 0.01
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server; ``port`` is filled in at launch."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    # The body each server accepts for one record: ours and the reference take raw records, MLflow wraps them.
    wrap_records: bool = False

    def body(self, records: list[dict]) -> bytes:
        import json

        payload = {"dataframe_records": records} if self.wrap_records else records
        return json.dumps(payload).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _serve_module():
    """``serving/serve`` (a script without ``.py``) as a module, for its ``gunicorn_argv`` and ``gunicorn_env``."""
    loader = importlib.machinery.SourceFileLoader("serving_serve", str(ROOT / "serving" / "serve"))
    spec = importlib.util.spec_from_loader("serving_serve", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _container_env(model_dir: Path, port: int) -> dict[str, str]:
    return {"SM_MODEL_DIR": str(model_dir), "SERVING_HOST": HOST, "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_GUNICORN_WORKERS": "1"}


# Import name -> distribution of the packages the .venv has and the serving image does not install.
NOT_IN_IMAGE = {"sklearn": "scikit-learn", "pandas": "pandas"}
CONTAINER_SITE = ROOT / "benchmarks" / "container_site"


def hidden_modules(requirements: Path = ROOT / "serving" / "requirements.txt") -> list[str]:
    """The modules of ``NOT_IN_IMAGE`` whose distribution ``serving/requirements.txt`` does not pin."""
    pinned = {line.split("==", 1)[0].strip().lower() for line in requirements.read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    return sorted(module for module, dist in NOT_IN_IMAGE.items() if dist not in pinned)


def ours(model_dir: Path, port: int, *, image_deps: bool = True) -> ServerSpec:
    """The container's launcher, exactly as SageMaker runs it (``serve serve``).

    ``image_deps`` hides the .venv's packages that the image does not install (see
    ``benchmarks/container_site``), so memory and start-up are the container's.
    """
    env = _container_env(model_dir, port)
    if image_deps:
        env |= {"PYTHONPATH": f"{ROOT}{os.pathsep}{CONTAINER_SITE}", "BENCH_HIDDEN_MODULES": ",".join(hidden_modules())}
    return ServerSpec("ours", (sys.executable, str(ROOT / "serving" / "serve"), "serve"), env)


def noop(port: int) -> ServerSpec:
    """The container's gunicorn command line and config, with the no-op app in place of the model's."""
    env = _container_env(Path("/nonexistent"), port)
    env |= {"PYTHONPATH": f"{ROOT}{os.pathsep}{CONTAINER_SITE}", "BENCH_HIDDEN_MODULES": ",".join(hidden_modules())}
    serve = _serve_module()
    argv, env = serve.gunicorn_argv(env), serve.gunicorn_env(env)
    max_body = serve.DEFAULT_MAX_BODY_BYTES
    argv[-1] = f"benchmarks.noop:create({max_body!r})"
    return ServerSpec("noop", tuple(argv), env)


def reference(model_dir: Path, port: int) -> ServerSpec:
    """The reference's entrypoint: gunicorn with its defaults (one sync worker)."""
    # --no-control-socket only keeps gunicorn >= 25.1 from claiming ~/.gunicorn/gunicorn.ctl, which another
    # gunicorn on this machine may hold; it changes nothing on the request path.
    argv = (sys.executable, "-m", "gunicorn", "-b", f"{HOST}:{port}", "--no-control-socket",
            "--pythonpath", str(ROOT), "benchmarks.reference.app:app")
    return ServerSpec("reference", argv, {"SM_MODEL_DIR": str(model_dir)})


def mlflow(model_uri: str, tracking_uri: str, port: int) -> ServerSpec:
    """``mlflow models serve`` of a registered version with the current environment (one worker)."""
    argv = (sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
            "-p", str(port), "-h", HOST, "--workers", "1")
    # MLflow execs ``uvicorn`` by name: the interpreter's bin folder must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return ServerSpec("mlflow", argv, {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}, wrap_records=True)


@dataclass
class Running:
    """A launched server: its process (the session leader), port, log and launch time."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen
    launched: float
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{INVOCATIONS}"


def launch(spec: ServerSpec, port: int, log: Path, *, cpu: int | None) -> Running:
    """Start ``spec`` in its own session (so its whole tree can be stopped), pinned to ``cpu``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **spec.env}
    argv = list(spec.argv) if cpu is None else ["taskset", "-c", str(cpu), *spec.argv]
    handle = log.open("ab")
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    handle.close()
    return Running(spec, port, process, started, log)


def post(port: int, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One ``POST /invocations``; returns the status and body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("POST", INVOCATIONS, body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def wait_ready(server: Running, body: bytes, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds from launch until the first 200 from ``POST /invocations``.

    Raises:
        RuntimeError: the process exited, or no 200 within ``timeout_s`` (the log's tail is included).
    """
    deadline = server.launched + timeout_s
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.spec.name} exited with {server.process.returncode}:\n{_tail(server.log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = post(server.port, body, timeout_s=5.0)
            if status == 200:
                return time.perf_counter() - server.launched
        time.sleep(POLL_S)
    raise RuntimeError(f"{server.spec.name} not ready after {timeout_s:.0f}s:\n{_tail(server.log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of one process: psutil when installed, else /proc/PID/status."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def worker_rss(server: Running) -> int:
    """RSS of the serving worker: the largest process of the tree that has no children of its own.

    For gunicorn that is the one worker (not the master); for ``mlflow models serve`` the uvicorn process.
    """
    tree = _tree(server.process.pid)
    leaves = [p for p in tree if not any(_parent(q) == p for q in tree)]
    sizes = []
    for pid in leaves:
        with contextlib.suppress(OSError, RuntimeError):
            sizes.append(rss_bytes(pid))
    if not sizes:
        raise RuntimeError(f"{server.spec.name}: no live process to measure")
    return max(sizes)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def stop(server: Running, timeout_s: float = 15.0) -> None:
    """SIGTERM the server's session (the processes this benchmark started), then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=timeout_s)


@contextlib.contextmanager
def serving(spec: ServerSpec, port: int, log: Path, ready_body: bytes, *, cpu: int | None) -> Iterator[Running]:
    """A launched and ready server, stopped on exit."""
    server = launch(spec, port, log, cpu=cpu)
    try:
        wait_ready(server, ready_body)
        yield server
    finally:
        stop(server)


@contextlib.contextmanager
def workdir(prefix: str, *, keep: bool = False, log: Callable[[str], None] = print) -> Iterator[Path]:
    """A work folder for one benchmark run, removed at the end unless ``keep``. SIGTERM becomes an exit from
    here on, so the run's ``finally`` blocks stop every server and process it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            log(f"workdir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
