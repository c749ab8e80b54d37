"""Owns the benchmark run: training, export, cold starts, memory and load, then the results table.

Usage: ``python -m benchmarks.run [--quick]`` (``make bench``). Needs Debian's ``wrk`` for load
(``apt-get install wrk``); this script installs nothing and stops with a one-line error without it.
Everything happens in a throwaway folder (its own MLflow store, Optuna journal and models), only loopback.

1. Training, each in a fresh interpreter on the same data and split: our default study (``params.yaml``
   as is) with MLflow logging on — which also registers the version served below — then the reference
   design's 50-trial search, then our study with logging off.
2. Export: the registered version to ``model.tar.gz`` with ``registry.export`` (``benchmarks/bundles.py``);
   the reference's pickles to a tarball too.
3. Cold start and worker RSS at ready: ours, the reference and ``mlflow models serve``, alternating, each
   from launch until its first 200 from ``POST /invocations``.
4. Load: ours, the reference and the no-op route together (one worker each, server on CPU 0, wrk on CPU 1,
   8 connections), single-record and 100-record bodies, a warm-up then alternating timed reps; medians.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from benchmarks import bundles, load, report, servers, training
from core.cli import FiniteRange, UserError, run_cli

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = 8
BATCH_ROWS = 100


@dataclass(frozen=True)
class Plan:
    """Durations and counts of one run."""

    mode: str
    seconds: float
    warmup_s: float
    reps: int
    cold_reps: int
    train_reps: int
    train_overrides: dict[str, Any]
    reference_trials: int

    def scaled(self, fraction: float) -> Plan:
        """Both searches cut to ``fraction`` of their trials (their proportion kept); 1.0 is the spec."""
        if fraction == 1.0:
            return self
        ours = self.train_overrides.get("n_trials") or training.default_trials()
        return replace(self, train_overrides={**self.train_overrides, "n_trials": max(1, round(ours * fraction))},
                       reference_trials=max(1, round(self.reference_trials * fraction)))


FULL = Plan("full", seconds=10, warmup_s=3, reps=3, cold_reps=3, train_reps=2, train_overrides={},
            reference_trials=50)
QUICK = Plan("quick", seconds=2, warmup_s=1, reps=1, cold_reps=1, train_reps=1,
             train_overrides={"n_trials": 2, "cv_folds": 2, "max_rounds": 50, "pruner_startup_trials": 1},
             reference_trials=1)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def test_records(params_file: Path) -> list[dict[str, Any]]:
    """The raw test-split records (JSON-ready, missing values as None) of the params' data."""
    from core.params import load_params
    from experiments.data import load_and_split
    from serving.predictor import records_from_frame

    params = load_params(params_file)
    _, _, test = load_and_split(params)
    features = [c for c in test.columns if c != params.data.target]
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in records_from_frame(test[features])]


# --- 1. training -------------------------------------------------------------------------------------------

def run_training(work: Path, csv: Path, plan: Plan) -> dict[str, dict[str, Any]]:
    """Each training ``plan.train_reps`` times, alternating; medians, with the first rep's registered version."""
    steps = [("ours_logging_on", ["ours", "--log"]),
             ("reference", ["reference", "--trials", str(plan.reference_trials)]),
             ("ours_logging_off", ["ours", "--no-log"])]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in steps}
    for rep in range(plan.train_reps):
        for name, args in steps:
            folder = work / (name if rep == 0 else f"{name}-{rep + 1}")
            folder.mkdir()
            params = training.write_params(folder, csv, plan.train_overrides)
            if name == "ours_logging_on":
                # The steady state of a project: its tracking store and experiment exist from earlier runs.
                training.run_isolated(["store", "--params", str(params)], folder, folder / "store.log")
            log(f"training: {name} (rep {rep + 1}/{plan.train_reps}) ...")
            result = training.run_isolated([*args, "--params", str(params)], folder, folder / "train.log")
            runs[name].append(result)
            log(f"training: {name} {result['wall_s']:.1f} s, test RMSE {result['test_rmse']:.4f}")
    return {name: summarise_training(results) for name, results in runs.items()}


def summarise_training(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall and MLflow seconds of the reps; everything else (RMSE, version) from the first rep."""
    walls = [r["wall_s"] for r in results]
    summary = {**results[0], "wall_s": report.median(walls), "wall_range_s": [min(walls), max(walls)],
               "reps": len(results)}
    if "mlflow_s" in results[0]:
        summary["mlflow_s"] = report.median([r["mlflow_s"] for r in results])
    return summary


# --- 3. cold start and memory ------------------------------------------------------------------------------

def measure_cold(specs: dict[str, Any], work: Path, records: list[dict[str, Any]], reps: int
                 ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Launch → first 200, and the worker's RSS (MB) right then, for each server, alternating ``reps`` times."""
    cold: dict[str, list[float]] = {name: [] for name in specs}
    rss: dict[str, list[float]] = {name: [] for name in specs}
    for rep in range(reps):
        for name, make in specs.items():
            port = servers.free_port()
            spec = make(port)
            server = servers.launch(spec, port, work / f"cold-{name}.log", cpu=SERVER_CPU)
            try:
                cold[name].append(servers.wait_ready(server, spec.body(records[:1])))
                rss[name].append(servers.worker_rss(server) / 1e6)
            finally:
                servers.stop(server)
            log(f"cold start {rep + 1}/{reps}: {name} {cold[name][-1]:.2f} s, worker RSS {rss[name][-1]:.0f} MB")
    return cold, rss


# --- 4. load -----------------------------------------------------------------------------------------------

def measure_load(specs: dict[str, Any], work: Path, records: list[dict[str, Any]], plan: Plan
                 ) -> dict[str, list[load.LoadResult]]:
    """Alternating wrk reps over every (server, body) point, all servers up at once on ``SERVER_CPU``."""
    script = load.write_script(work)
    points = [("ours", 1), ("reference", 1), ("noop", 1), ("ours", BATCH_ROWS), ("reference", BATCH_ROWS)]
    results: dict[str, list[load.LoadResult]] = {f"{n}_{rows}": [] for n, rows in points}
    with contextlib.ExitStack() as stack:
        running = {}
        for name, make in specs.items():
            port = servers.free_port()
            spec = make(port)
            running[name] = stack.enter_context(
                servers.serving(spec, port, work / f"load-{name}.log", spec.body(records[:1]), cpu=SERVER_CPU))
        bodies = {}
        for rows in {rows for _, rows in points}:
            body = work / f"body-{rows}.json"
            body.write_bytes(json.dumps(records[:rows] if rows > 1 else records[0]).encode())
            bodies[rows] = body
        for name, rows in points:
            status, answer = servers.post(running[name].port, bodies[rows].read_bytes())
            if status != 200:
                raise RuntimeError(f"{name} answered {status} to the {rows}-record body: {answer[:300]!r}")
            load.run_wrk(running[name].url, bodies[rows], script, seconds=plan.warmup_s, connections=CONNECTIONS,
                         rows_per_request=rows, cpu=LOAD_CPU)
        for rep in range(plan.reps):
            for name, rows in points:
                load.run_wrk(running[name].url, bodies[rows], script, seconds=1, connections=CONNECTIONS,
                             rows_per_request=rows, cpu=LOAD_CPU)  # re-warm after the other servers' turn
                result = load.run_wrk(running[name].url, bodies[rows], script, seconds=plan.seconds,
                                      connections=CONNECTIONS, rows_per_request=rows, cpu=LOAD_CPU)
                if result.errors:
                    raise RuntimeError(f"{name}_{rows}: {result.errors} errors under load")
                results[f"{name}_{rows}"].append(result)
                log(f"load {rep + 1}/{plan.reps}: {name}_{rows} {result.rps:,.0f} req/s, "
                    f"{result.rows_per_s:,.0f} rows/s, p99 {result.p99_ms:.2f} ms")
    return results


def summarise_load(runs: dict[str, list[load.LoadResult]]) -> dict[str, dict[str, float]]:
    out = {}
    for key, reps in runs.items():
        if not reps:
            continue
        out[key] = {field: report.median([getattr(r, field) for r in reps])
                    for field in ("rps", "rows_per_s", "p50_ms", "p99_ms")}
        out[key] |= {"rps_min": min(r.rps for r in reps), "rps_max": max(r.rps for r in reps)}
    return out


# --- the run -----------------------------------------------------------------------------------------------

def run(plan: Plan, work: Path, csv: Path) -> dict[str, Any]:
    clock = report.RunClock()
    load.wrk_path()  # fail before an expensive training when wrk is missing
    trained = run_training(work, csv, plan)
    version = str(trained["ours_logging_on"]["version"])
    ours_tar = bundles.export_ours(work / "ours_logging_on", version, work / "ours-model")
    ref_tar = bundles.pack_reference(work / "reference", work / "reference-model")
    records = test_records(work / "ours_logging_on" / "params.yaml")
    tracking_uri = f"sqlite:///{work / 'ours_logging_on' / 'mlflow.db'}"
    models = work / "model-dirs"
    models.mkdir()
    ours_dir = ours_tar.parent

    cold_specs = {
        "ours": lambda port: servers.ours(ours_dir, port),
        "reference": lambda port: servers.reference(bundles.fresh_dir(ref_tar, models), port),
        "mlflow": lambda port: servers.mlflow(bundles.model_uri(work / "ours_logging_on", version), tracking_uri, port),
    }
    cold, rss = measure_cold(cold_specs, work, records, plan.cold_reps)
    load_specs = {
        "ours": lambda port: servers.ours(ours_dir, port),
        "reference": lambda port: servers.reference(bundles.fresh_dir(ref_tar, models), port),
        "noop": servers.noop,
    }
    load_runs = measure_load(load_specs, work, records, plan)

    measurements = {
        "training": trained,
        "cold_start_s": {k: report.median(v) for k, v in cold.items() if v},
        "cold_start_range_s": {k: [min(v), max(v)] for k, v in cold.items() if v},
        "rss_mb": {k: report.median(v) for k, v in rss.items() if v},
        "load": summarise_load(load_runs),
        "raw": {"cold_start_s": cold, "rss_mb": rss,
                "load": {k: [r.to_json() for r in v] for k, v in load_runs.items()}},
    }
    return {
        "targets": [t.to_json() for t in report.targets(measurements)],
        "measurements": measurements,
        "machine": report.machine(),
        "run": clock.record(mode=plan.mode, reps=plan.reps, ours_trials=trained["ours_logging_on"]["n_trials"],
                            reference_trials=plan.reference_trials, seconds=plan.seconds, connections=CONNECTIONS,
                            cold_reps=plan.cold_reps),
    }


@click.command(help="Benchmark our container and training against the reference design, the no-op route "
                    "and `mlflow models serve`; write benchmarks/results/latest.{json,md}.")
@click.option("--quick", is_flag=True, help="Smoke run: short loads, one rep, a few trials (results not comparable).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR,
              show_default=True)
@click.option("--data", "csv", type=click.Path(dir_okay=False, path_type=Path),
              default=ROOT / "data" / "student_performance.csv", show_default=True)
@click.option("--train-fraction", type=FiniteRange(0.01, 1.0), default=1.0, show_default=True,
              help="Cut both searches to this share of their trials (ours: train.n_trials, reference 50) when time is short; "
                   "the results say so.")
@click.option("--keep-workdir", is_flag=True, help="Keep the throwaway folder (models, stores, server logs).")
def cli(quick: bool, results_dir: Path, csv: Path, train_fraction: float, keep_workdir: bool) -> None:
    stem = "latest" if not quick else "quick"
    report.results_folder(results_dir, files=(f"{stem}.json", f"{stem}.md"))
    try:
        load.wrk_path()
    except load.WrkMissing as err:
        raise UserError(str(err)) from None
    if not csv.is_file():
        raise UserError(f"{csv}: data file not found (run `make data`)")
    if len(os.sched_getaffinity(0)) < 2:
        raise UserError("the benchmark needs two CPUs (server on one, wrk on the other)")
    plan = (QUICK if quick else FULL).scaled(train_fraction)
    with servers.workdir("bench-", keep=keep_workdir, log=log) as work:
        results = run(plan, work, csv.resolve())
    json_path, md_path = report.write(results, results_dir, stem)
    click.echo(report.markdown(results))
    click.echo(f"wrote {json_path} and {md_path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
