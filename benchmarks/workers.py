"""Owns the distributed-search benchmark: trials per minute with 1 and 2 workers sharing one study.

Usage: ``python -m benchmarks.workers [--trials N] [--out benchmarks/results]``. It starts its own team stack
(PostgreSQL, moto, mlflow server), then for 1, 2 and again 1 worker runs the same fixed list of trials through
``experiments.worker.work`` — the code the worker command runs, MLflow child-run logging included — each
worker a process with one XGBoost thread (``train.nthread: 1``). Pruning is off and every run evaluates the
same parameter sets (drawn once, seeded), so both runs do the same work. Throughput is counted from Optuna's
own trial timestamps, from the first trial's start to the last one's end: process start-up (imports, data
loading) is not search work and is left out. Writes ``workers.json`` and ``workers.md`` into ``--out``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import optuna
import yaml

from benchmarks import report
from core.cli import run_cli
from experiments import search
from experiments.budget import FINISHED

ROOT = Path(__file__).resolve().parent.parent


def _params_file(folder: Path, trials: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["path"] = str(ROOT / params["data"]["path"])
    # No pruning: a pruned trial's cost depends on which trials finished before it, which differs by run.
    params["train"].update(n_trials=trials, nthread=1, pruner_startup_trials=trials, timeout_s=3600)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def _fixed_trials(params, count: int, seed: int = 7) -> list[dict]:
    """``count`` parameter sets drawn once from the search space, so that every run evaluates the same ones."""
    draft = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial = draft.ask()
        search.suggest(trial, params.train.search_space)
        drawn.append(dict(trial.params))
        draft.tell(trial, 0.0)
    return drawn


def _worker(params_file: str, study: str, storage: str, barrier, cpu) -> None:
    from core.params import load_params
    from core.tracking import quiet_mlflow
    from experiments.worker import work

    quiet_mlflow()
    params = load_params(params_file)
    barrier.wait()  # imports are done: from here on, every worker is searching
    started = time.process_time()
    work(params, study_name=study, storage=storage)
    cpu.put(time.process_time() - started)


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process, ours included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _run(workers: int, params_file: Path, storage: str, parent_run_id: str, trials: list[dict], index: int) -> dict:
    from core.params import load_params
    from experiments.data import prepare

    params = load_params(params_file)
    name = f"bench-{index}-{workers}-workers"
    study = search.make_study(name=name, storage=storage, seed=params.train.seed,
                              startup_trials=params.train.pruner_startup_trials)
    study.set_user_attr(search.DIGEST_ATTR, search.search_digest(params, prepare(params).data_hash))
    study.set_user_attr(search.PARENT_RUN_ATTR, parent_run_id)
    for fixed in trials:
        study.enqueue_trial(fixed)
    context = multiprocessing.get_context("spawn")
    barrier, cpu = context.Barrier(workers), context.Queue()
    procs = [context.Process(target=_worker, args=(str(params_file), name, storage, barrier, cpu))
             for _ in range(workers)]
    busy_before = _busy_cpu_seconds()
    for proc in procs:
        proc.start()
    cpu_seconds = [cpu.get() for _ in procs]
    busy = _busy_cpu_seconds() - busy_before
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise click.ClickException(f"a worker exited with code {proc.exitcode}")
    done = study.get_trials(deepcopy=False, states=FINISHED)
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    seconds = (end - start).total_seconds()
    # CPU the workers got over the window, per worker: well below 1.0 means something else had the cores.
    return {"workers": workers, "trials": len(done), "seconds": round(seconds, 2),
            "trials_per_minute": round(len(done) / seconds * 60, 2),
            "worker_cpu_share": round(sum(cpu_seconds) / (seconds * workers), 3),
            # Cores busy with anything but the workers' search (the stack's servers, other jobs), on average.
            "other_cores_busy": round(max(busy - sum(cpu_seconds), 0.0) / seconds, 2),
            "load_average_after": round(os.getloadavg()[0], 2)}


def _machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    import mlflow
    import xgboost

    # Module versions, not distribution names: XGBoost ships as xgboost or xgboost-cpu.
    versions = {"xgboost": xgboost.__version__, "optuna": optuna.__version__, "mlflow": mlflow.__version__}
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib, "os": platform.platform(),
            "python": platform.python_version(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            **versions}


def _markdown(result: dict) -> str:
    m = result["machine"]
    rows = "\n".join(f"| {r['workers']} | {r['trials']} | {r['seconds']:.1f} | {r['trials_per_minute']:.1f} | "
                     f"{r['worker_cpu_share']:.2f} | {r['other_cores_busy']:.2f} | {r['load_average_after']} |"
                     for r in result["runs"])
    return (f"# Distributed search: trials per minute\n\n"
            f"{result['trials']} fixed trials (no pruning, {result['cv_folds']}-fold CV, one XGBoost thread per "
            f"worker) through PostgreSQL, each logged as an MLflow child run on the team server.\n\n"
            f"| workers | trials | seconds | trials/min | CPU share per worker | other cores busy | load avg after |\n"
            f"| --- | --- | --- | --- | --- | --- | --- |\n{rows}\n\n"
            f"**Speed-up with 2 workers: {result['speedup']:.2f}×** (goal ≥ 1.7×), against the mean of the "
            f"two 1-worker runs (one before, one after, so warm-up and drift cancel out). A CPU share well below 1.0 "
            f"means other processes (the stack's own servers, or anything else on the machine) had the cores; "
            f"run it on an otherwise idle machine.\n\n"
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
            f"XGBoost {m['xgboost']}, Optuna {m['optuna']}, MLflow {m['mlflow']}; load average at start "
            f"{m['load_average_at_start']}. Run at {result['at']} with `python -m benchmarks.workers`.\n")


@click.command(help="Trials per minute with 1 and 2 workers sharing one study (starts its own team stack).")
@click.option("--trials", type=click.IntRange(min=4), default=48, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "benchmarks" / "results",
              show_default=True)
def cli(trials: int, out: Path) -> None:
    from mlflow.tracking import MlflowClient

    from core.params import load_params
    from team import stack

    report.results_folder(out, "--out", files=("workers.json", "workers.md"))
    machine = _machine()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp)
        params_file = _params_file(folder, trials)
        params = load_params(params_file)
        endpoints = stack.up(folder / "stack")
        try:
            os.environ["MLFLOW_TRACKING_URI"] = endpoints.tracking_uri  # the spawned workers inherit it
            client = MlflowClient(endpoints.tracking_uri)
            experiment = client.create_experiment("bench-workers")
            fixed = _fixed_trials(params, trials)
            runs = []
            # One worker before and after two, so that warm-up and drift in the machine's load cancel out.
            for index, workers in enumerate((1, 2, 1)):
                parent = client.create_run(experiment, run_name=f"bench-{workers}-workers").info.run_id
                runs.append(_run(workers, params_file, endpoints.optuna_storage, parent, fixed, index))
                client.set_terminated(parent)
                click.echo(f"{workers} worker(s): {runs[-1]['trials_per_minute']:.1f} trials/min")
        finally:
            stack.down(folder / "stack", force=True)
    one = (runs[0]["trials_per_minute"] + runs[2]["trials_per_minute"]) / 2
    result = {"trials": trials, "cv_folds": params.train.cv_folds, "runs": runs,
              "speedup": round(runs[1]["trials_per_minute"] / one, 3),
              "machine": machine, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "workers.md").write_text(_markdown(result), encoding="utf-8")
    click.echo(f"speed-up with 2 workers: {result['speedup']:.2f}x; wrote {out / 'workers.json'} and workers.md")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
