"""Owns the training measurements: our default study (MLflow logging on or off) and the reference search.

Each measurement runs in a fresh interpreter (``python -m benchmarks.training ...``) inside its own folder,
so no import, cache or MLflow state carries over from one to the next, and prints one JSON line. The clock
starts after the imports, just before the training call, and stops when it returns: for ours that is the
whole DVC train stage (load, split, search, refit, evaluate, write outputs and, with logging, every trial's
child run, the parent run's artifacts, the pyfunc model and its registration).

With logging on, the tracking store and its experiment exist before the clock starts (``store`` creates
them in a process of their own), as they do for every training of a project after its first; connecting to
the store is timed. With logging off MLflow is never touched, so the difference of the two wall times is the
whole price of logging. ``mlflow_s`` is the part of it spent inside the project's MLflow calls (connecting,
which imports MLflow's SQL store; trial runs; the lost-trial check; the parent run from start to end; model
registration), as the stage itself reports it (``TrainResult.mlflow_s``), and ``mlflow_parts`` the same seconds
by part (set-up, trial runs, parent run, figures, model, registry).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from core.cli import run_cli

ROOT = Path(__file__).resolve().parent.parent
RESULT_MARKER = "BENCH_TRAINING "


def write_params(folder: Path, csv: Path, train_overrides: dict[str, Any] | None = None) -> Path:
    """Copy ``params.yaml`` into ``folder`` with the data at ``csv`` and every store inside ``folder``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["path"] = str(csv)
    params["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    params["train"]["storage"] = f"journal:{folder / 'optuna.journal'}"
    params["train"].update(train_overrides or {})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def default_trials() -> int:
    """``train.n_trials`` of the repository's ``params.yaml``."""
    return int(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["train"]["n_trials"])


def train_ours(params_file: Path, *, log: bool) -> dict[str, Any]:
    """Run our train stage in the current directory; wall time, MLflow time, test RMSE, registered version."""
    from core.params import load_params
    from core.tracking import quiet_mlflow
    from experiments import train as stage

    quiet_mlflow()
    params = load_params(params_file)
    at_start = rss_mb()
    started = time.perf_counter()
    result = stage.train(params, log=log)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "mlflow_s": result.mlflow_s, "mlflow_parts": result.mlflow_parts,
            "test_rmse": result.metrics["test_rmse"],
            "n_trials": params.train.n_trials, "version": result.version,
            "booster": result.best_params.get("booster"), "peak_rss_mb": peak_rss_mb(), "rss_at_start_mb": at_start}


def rss_mb() -> float:
    """This process's resident memory now, in MB: after the imports, before any data is read."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_idiom(params_file: Path, *, log: bool) -> dict[str, Any]:
    """The standard MLflow idiom (benchmarks/idiom.py) on our search: wall time and test RMSE."""
    from benchmarks import idiom
    from core.params import load_params
    from core.tracking import quiet_mlflow

    quiet_mlflow()
    return idiom.train(load_params(params_file), log=log) | {"peak_rss_mb": peak_rss_mb()}


def train_reference(params_file: Path, out_dir: Path, *, n_trials: int) -> dict[str, Any]:
    """Run the reference design's training on the same data and split as ours."""
    from benchmarks.reference import train as reference
    from core.params import load_params

    params = load_params(params_file)
    result = reference.train(params.data.path, out_dir, target=params.data.target,
                             test_size=params.data.test_size, split_seed=params.data.split_seed,
                             seed=params.train.seed, n_trials=n_trials)
    return {"wall_s": result.wall_s, "test_rmse": result.test_rmse, "n_trials": result.n_trials,
            "cv_rmse": result.cv_rmse}


def run_isolated(args: Sequence[str], folder: Path, log_file: Path) -> dict[str, Any]:
    """Run ``python -m benchmarks.training ARGS`` in ``folder``; returns its JSON result.

    Raises:
        RuntimeError: the run failed (the log's tail is included).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("OPTUNA_STORAGE", None)
    with log_file.open("wb") as handle:
        done = subprocess.run([sys.executable, "-m", "benchmarks.training", *args], cwd=folder, env=env,
                              stdout=subprocess.PIPE, stderr=handle, check=False)
    out = done.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line.removeprefix(RESULT_MARKER))
    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"training {' '.join(args)} failed (exit {done.returncode}):\n{tail}")


def create_store(params_file: Path) -> dict[str, Any]:
    """Create the params' tracking store and experiment, as a project has them after its first training."""
    from core import tracking
    from core.params import load_params

    tracking.quiet_mlflow()
    params = load_params(params_file)
    started = time.perf_counter()
    experiment_id = tracking.use_experiment(tracking.tracking_uri(params.mlflow.tracking_uri),
                                            params.mlflow.experiment)
    return {"wall_s": time.perf_counter() - started, "experiment_id": experiment_id}


@click.command(help="Run one training measurement in the current directory and print a JSON result line.")
@click.argument("which", type=click.Choice(["ours", "idiom", "reference", "store"]))
@click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--log/--no-log", default=True, help="Ours and the idiom: MLflow logging on (default) or off.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Reference: trial count (default 50).")
def cli(which: str, params_file: Path, log: bool, trials: int | None) -> None:
    if which == "store":
        result = create_store(params_file)
    elif which == "ours":
        result = train_ours(params_file, log=log)
    elif which == "idiom":
        result = train_idiom(params_file, log=log)
    else:
        from benchmarks.reference.train import N_TRIALS
        result = train_reference(params_file, Path.cwd(), n_trials=trials or N_TRIALS)
    click.echo(RESULT_MARKER + json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one training measurement; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
