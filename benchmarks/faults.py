"""Owns fault injection between steps: SIGKILL (or Ctrl-C) of promote, export and training at chosen points.

A real ``python -m registry.promote`` (or export) runs in a child process whose module functions are
wrapped, from outside, to SIGKILL the process right after a chosen step (``INJECT``): nothing in the
project's own code knows about faults. ``registry_state`` then reads what the registry and ``dist/`` say,
and ``problems`` lists every way that disagrees with one consistent story. Training is killed by its pid
once its log shows trials. Used by tests/registry/test_faults.py, tests/experiments/test_training_faults.py
and ``benchmarks/reliability.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "student_performance.csv"
# Where a promotion can die: after taking the lock, after writing its plan, between the two alias moves,
# after the aliases moved, after the history entry, in the middle of writing the tarball, after it.
PROMOTE_POINTS = ("lock-taken", "plan-recorded", "previous-moved", "alias-moved", "history-written",
                  "mid-tarball", "tarball-written")
INJECT = r"""
import os, signal, sys, tarfile
point, sig, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
# A Ctrl-C at a terminal reaches Python's own handler. A runner started in the background without job control
# hands its children SIGINT ignored (bash: asynchronous commands ignore SIGINT), and Python keeps it so.
if sig == signal.SIGINT:
    signal.signal(signal.SIGINT, signal.default_int_handler)

def after(owner, name, when=lambda result, calls: True):
    original, calls = getattr(owner, name), []
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if when(result, len(calls)):
            os.kill(os.getpid(), sig)
        return result
    setattr(owner, name, wrapped)

from mlflow.tracking import MlflowClient
from registry import history, lock, promote
from serving import bundle
if point == "lock-taken": after(lock, "_try_acquire", lambda taken, n: taken)
elif point == "plan-recorded": after(lock.Lock, "record")
elif point == "previous-moved": after(MlflowClient, "set_registered_model_alias", lambda _, n: n == 1)
elif point == "alias-moved": after(promote, "_move")
elif point == "history-written": after(history, "append")
elif point == "mid-tarball": after(tarfile.TarFile, "addfile", lambda _, n: n == 2)
elif point == "tarball-written": after(bundle, "pack")
elif point == "recovering": after(history, "read", lambda _, n: n == 1)  # finishing a dead holder's plan
elif point != "none": raise SystemExit(f"unknown point {point}")
module = __import__(argv[0], fromlist=["main"])
sys.exit(module.main(argv[1:]))
"""


def build_store(work: Path, train: dict) -> tuple[Path, list[str]]:
    """A project folder with the sample data, two trained versions, the first promoted and exported."""
    from core.cli import UserError
    from core.params import load_params
    from experiments import train as stage
    from registry import promote

    (work / "data").mkdir(parents=True)
    shutil.copy(SAMPLE, work / "data" / SAMPLE.name)
    (work / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "0" * 32 + ".dir", "path": "data"}]}))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["path"] = str(work / "data" / SAMPLE.name)
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{work / 'mlflow.db'}"
    raw["train"].update(train, storage=f"journal:{work / 'optuna.journal'}")
    raw["export"]["path"] = str(work / "dist" / "model.tar.gz")
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    versions, cwd = [], Path.cwd()
    os.chdir(work)
    try:
        for seed in (1, 2):
            params = load_params(params_file, {"train": {**raw["train"], "seed": seed}})
            versions.append(stage.train(params, name=f"reliability-{seed}").version)
    finally:
        os.chdir(cwd)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if promote.main(["--params", str(params_file), "--version", versions[0], "--force"]) != 0:
        raise UserError("promoting the first version failed")
    return params_file, versions


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_killed(module: str, args: Sequence[str], point: str, cwd: Path, sig: int = signal.SIGKILL
               ) -> subprocess.CompletedProcess:
    """Run ``python -m MODULE ARGS`` in a child that sends itself ``sig`` (SIGKILL) right after ``point``."""
    return subprocess.run([sys.executable, "-c", INJECT, point, str(int(sig)), module, *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=600, check=False)


def registry_state(params_file: Path) -> dict[str, Any]:
    """What the registry and the export folder say: aliases, history, lock, tarball and stray temp files."""
    from core.params import load_params
    from registry import history
    from registry.lock import lock_name
    from registry.versions import open_registry
    from serving import layout

    params = load_params(params_file)
    registry = open_registry(params)
    model = registry.client.get_registered_model(registry.name)
    tarball = params.export.path
    try:
        exported = str(layout.bundle_metadata(tarball)["version"]) if tarball.exists() else None
    except layout.ModelError as err:
        exported = f"unreadable: {err}"
    locked = bool(registry.client.search_registered_models(f"name = '{lock_name(registry)}'"))
    return {"aliases": {k: str(v) for k, v in model.aliases.items()},
            "history": [{k: e.get(k) for k in ("action", "from", "to", "promotion_id")}
                        for e in history.read(registry)],
            "locked": locked, "exported": exported,
            "temp_files": sorted(p.name for p in tarball.parent.glob(f".{tarball.name}.*")) if tarball.parent.exists()
            else []}


def problems(state: Mapping[str, Any], *, alias: str = "production", previous: str = "previous",
             settled: bool = True) -> list[str]:
    """Every way ``state`` disagrees with itself. ``settled=False``: right after a kill, where the history and
    the tarball may still lag the aliases (the next promotion finishes them), but nothing may be half-made."""
    found = []
    production, events = state["aliases"].get(alias), state["history"]
    if production is None:
        found.append("no production version")
    if str(state["exported"]).startswith("unreadable"):
        found.append(f"a partial or broken tarball ({state['exported']})")
    ids = [e["promotion_id"] for e in events if e.get("promotion_id")]
    if len(ids) != len(set(ids)):
        found.append("a history entry recorded twice")
    if not settled:
        return found
    if not events or str(events[-1]["to"]) != production:
        found.append(f"the last history entry does not end at production ({production}): {events[-1:]}")
    elif events[-1]["from"] is not None and state["aliases"].get(previous) != str(events[-1]["from"]):
        found.append(f"@{previous} is not the version the last entry replaced ({events[-1]['from']})")
    if state["exported"] is not None and state["exported"] != production:
        found.append(f"the tarball holds version {state['exported']}, production is {production}")
    if state["temp_files"]:
        found.append(f"temp files left behind: {state['temp_files']}")
    if state["locked"]:
        found.append("the promotion lock is still held")
    return found


def promote_fault(params_file: Path, version: str, point: str) -> dict[str, Any]:
    """Kill ``promote --version VERSION --force`` after ``point``, then promote again; what each left behind."""
    args = ["--params", str(params_file), "--version", version, "--force"]
    killed = run_killed("registry.promote", args, point, params_file.parent)
    after_kill = registry_state(params_file)
    started = time.monotonic()
    code, said = _in_process("registry.promote", args)
    return {"point": point, "killed": killed.returncode == -signal.SIGKILL, "after_kill": after_kill,
            "after_kill_problems": problems(after_kill, settled=False), "next_exit": code,
            "next_said": said, "next_s": time.monotonic() - started,
            "final": (final := registry_state(params_file)), "final_problems": problems(final)}


def promote_interrupted(params_file: Path, version: str, point: str) -> dict[str, Any]:
    """Ctrl-C (SIGINT) ``promote --version VERSION --force`` right after ``point``: what it said and left."""
    args = ["--params", str(params_file), "--version", version, "--force"]
    stopped = run_killed("registry.promote", args, point, params_file.parent, signal.SIGINT)
    return {"point": point, "exit": stopped.returncode, "said": stopped.stderr.strip().splitlines()[-3:],
            "after": (after := registry_state(params_file)), "after_problems": problems(after, settled=False)}


def export_fault(params_file: Path) -> dict[str, Any]:
    """Kill ``registry.export`` half-way through writing the tarball, then export again."""
    args = ["--params", str(params_file)]
    killed = run_killed("registry.export", args, "mid-tarball", params_file.parent)
    after_kill = registry_state(params_file)
    code, _ = _in_process("registry.export", args)
    return {"point": "export mid-tarball", "killed": killed.returncode == -signal.SIGKILL,
            "after_kill": after_kill, "next_exit": code, "final": registry_state(params_file)}


def _in_process(module: str, args: Sequence[str]) -> tuple[int, list[str]]:
    """Run a command's ``main`` in this process (the next command after a kill needs no fault); its exit and lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = importlib.import_module(module).main(list(args))
    return code, out.getvalue().strip().splitlines()


def start_training(folder: Path, params_file: Path, log: Path, *, command: Sequence[str] | None = None
                   ) -> subprocess.Popen:
    """Start a training (``python -m experiments.train``, or ``command`` such as ``dvc repro``) in ``folder``."""
    argv = list(command or [sys.executable, "-m", "experiments.train", "--params", str(params_file)])
    env = _env() | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log.open("wb") as sink:
        return subprocess.Popen(argv, cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT)


def wait_for_trials(process: subprocess.Popen, log: Path, trials: int, timeout_s: float = 300.0) -> None:
    """Until the training's log shows ``trials`` finished trials (its progress lines)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(line.startswith("trial ") for line in log.read_text(errors="replace").splitlines()) >= trials:
            return
        if process.poll() is not None:
            raise RuntimeError(f"training exited {process.returncode} early:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"no {trials} trials within {timeout_s}s:\n{log.read_text()[-2000:]}")


def running_trials(journal: Path) -> int:
    """How many Optuna trials the study journal says are running."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    return sum(len(optuna.load_study(study_name=name, storage=storage).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))) for name in optuna.get_all_study_names(storage))


def kill_mid_trial(process: subprocess.Popen, journal: Path, timeout_s: float = 120.0) -> int:
    """SIGKILL the training while one of its trials is running; returns how many the journal then shows running."""
    deadline = time.monotonic() + timeout_s
    while running_trials(journal) == 0:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("no trial was running to be killed")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return running_trials(journal)


def children(pid: int) -> list[int]:
    """The pids of every descendant of ``pid`` (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            kids = (task / "children").read_text().split() if (task / "children").exists() else []
            found += map(int, kids)
            todo += map(int, kids)
    return found


def run_states(tracking_uri: str) -> dict[str, Any]:
    """Every MLflow run's status, and the runs left RUNNING or closed as KILLED (with why)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=5000)]
    return {"statuses": {s: sum(r.info.status == s for r in runs) for s in {r.info.status for r in runs}},
            "killed": {r.info.run_name: r.data.tags.get("killed_reason") for r in runs if r.info.status == "KILLED"},
            "versions": len(client.search_model_versions(""))}


def dumps(result: Mapping[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True, default=str)
