"""Owns the reliability benchmark: the fuzzing and fault-injection suite at volume, its figures in results/.

Usage: ``python -m benchmarks.reliability [--quick] [--results-dir DIR]`` (``make bench-reliability``). It
trains two versions into a throwaway registry, promotes and exports the first, and then, on that bundle:

1. fuzzes ``/invocations`` in-process, through a real gunicorn (worker restarts counted) and through the
   stand-in chain (front door -> predict Lambda -> endpoint -> gunicorn) with benchmarks/fuzz.py's cases;
2. soaks the container with mixed 1- and 100-record bodies on 8 connections (wrk) and reads each worker's
   RSS; SIGTERMs it with requests in flight; SIGKILLs a worker under load; holds connections open with no
   body while timing ``/ping`` — the last two against gunicorn's plain sync worker as well (the peer);
3. loads every hostile tarball of benchmarks/hostile.py;
4. SIGKILLs promote at every step of benchmarks/faults.py, export mid-write, and a training mid-trial.

Writes ``reliability.json`` and ``reliability.md`` (``reliability-quick.*`` with ``--quick``). ``--quick`` is
the smoke run the tests make: a few of everything, figures not comparable. Nothing here is a pass/fail
target on time; the counts that must be zero are the suite's assertions, which the tests make too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import requests
import yaml

from benchmarks import faults, fuzz, fuzz_checks, hostile, load, reliability_report, report, servers, soak
from core.cli import UserError, run_cli

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
SAMPLE = faults.SAMPLE


@dataclass(frozen=True)
class Plan:
    in_process: int
    through_gunicorn: int
    through_chain: int
    soak_s: float
    warmup_s: float
    promote_points: tuple[str, ...]
    train: dict
    throughput_reps: int = 3
    throughput_s: float = 10


FULL = Plan(in_process=30_000, through_gunicorn=5_000, through_chain=1_000, soak_s=60, warmup_s=10,
            promote_points=faults.PROMOTE_POINTS,
            train={"n_trials": 4, "cv_folds": 2, "pruner_startup_trials": 1})
QUICK = Plan(in_process=150, through_gunicorn=60, through_chain=30, soak_s=2, warmup_s=1,
             promote_points=("alias-moved",), throughput_reps=1, throughput_s=2,
             train={"n_trials": 1, "cv_folds": 2, "max_rounds": 30, "early_stopping_rounds": 5,
                    "pruner_startup_trials": 0})


def log(message: str) -> None:
    click.echo(f"[reliability] {message}", err=True)


def fuzz_figures(model_dir: Path, work: Path, plan: Plan) -> dict[str, Any]:
    """The generated bodies in-process, through gunicorn and through the stand-in chain."""
    from serving import wsgi
    from serving.predictor import Predictor

    schema = Predictor.from_dir(model_dir).schema
    client = wsgi.create(str(model_dir), 6 * 1024 * 1024).test_client()

    def in_process(case: fuzz.Case) -> fuzz.Answer:
        reply = client.post("/invocations", data=case.body, headers=case.headers)
        return fuzz.Answer(reply.status_code, dict(reply.headers), reply.data)

    started = time.monotonic()
    out = {"in_process": asdict(fuzz_checks.run(in_process, schema, examples=plan.in_process)),
           "in_process_s": round(time.monotonic() - started, 1)}
    server = soak.start_container(model_dir, work / "fuzz.log")
    session = requests.Session()

    def over_http(case: fuzz.Case) -> fuzz.Answer:
        reply = session.post(f"{soak.base_url(server)}/invocations", data=case.body, headers=case.headers, timeout=30)
        return fuzz.Answer(reply.status_code, dict(reply.headers), reply.content)

    try:
        before = soak.worker_pids(server.process.pid)
        tally = fuzz_checks.run(over_http, schema, examples=plan.through_gunicorn)
        out["through_gunicorn"] = {**asdict(tally), "workers": len(before),
                                   "worker_restarts": len(set(soak.worker_pids(server.process.pid)) - set(before)),
                                   "boots": server.log.read_text().count("Booting worker")}
        out["through_chain"] = chain_figures(soak.base_url(server), schema, work, plan)
    finally:
        servers.stop(server)
    return out


def chain_figures(container: str, schema: Any, work: Path, plan: Plan) -> dict[str, Any]:
    """Generated bodies through the stand-in's front door -> predict Lambda -> endpoint -> the container."""
    from hypothesis import HealthCheck, given, settings

    port = servers.free_port()
    with (work / "chain.log").open("wb") as sink:
        chain = subprocess.Popen([sys.executable, "-m", "infra.local", "--container-url", container, "--port",
                                  str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://{servers.HOST}:{port}/score/predict-student-score"
    statuses: dict[int, int] = {}
    try:
        soak.wait_until(lambda: requests.options(url, timeout=2).status_code == 204, work / "chain.log")

        @settings(max_examples=plan.through_chain, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(fuzz.cases(schema))
        def check(case: fuzz.Case) -> None:
            reply = requests.post(url, data=case.body, headers={"Content-Type": "application/json"}, timeout=60)
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            assert reply.status_code < 500, f"{reply.status_code} through the chain: {reply.text[:300]}"
            plain = case.kind == "json" and case.expect == "ok" and case.records <= 100 and not any(
                case.body.startswith(b'{"' + w.encode()) for w in ("instances", "dataframe"))
            assert reply.status_code == 200 or not plain, f"{reply.status_code} for a valid record: {reply.text}"

        check()
    finally:
        chain.send_signal(signal.SIGTERM)
        chain.wait(timeout=30)
    return {"tried": sum(statuses.values()), "by_status": statuses,
            "server_errors": sum(n for code, n in statuses.items() if code >= 500)}


def load_figures(model_dir: Path, work: Path, plan: Plan, records: list[dict]) -> dict[str, Any]:
    """Soak, SIGTERM and SIGKILL under load, stalled clients, a busy backlog: ours, and gunicorn's sync worker
    beside it."""
    bodies = [work / "one.json", work / "hundred.json"]
    bodies[0].write_text(json.dumps(records[:1]))
    bodies[1].write_text(json.dumps(records[:100]))
    out: dict[str, Any] = {}
    server = soak.start_container(model_dir, work / "soak.log")
    try:
        result = soak.soak(soak.base_url(server), server.process.pid, bodies, work, seconds=plan.soak_s, warmup_s=plan.warmup_s)
        out["soak"] = {**asdict(result), "growth_mb": round(result.growth_mb, 2)}
    finally:
        servers.stop(server)
    for name, worker_class in (("ours", None), ("gunicorn sync", "sync")):
        figures: dict[str, Any] = {}
        server = soak.start_container(model_dir, work / f"stall-{name}.log", worker_class=worker_class)
        try:
            figures["ping_s_behind_4_stalled"] = round(soak.stalled_ping(soak.base_url(server), stalled=4), 3)
        finally:
            servers.stop(server)
        server = soak.start_container(model_dir, work / f"busy-{name}.log", workers=1, worker_class=worker_class)
        try:
            waited_s, status = soak.busy_ping(soak.base_url(server), bodies[1].read_bytes())
            figures["ping_behind_busy_backlog"] = {"seconds": round(waited_s, 3), "status": status}
        finally:
            servers.stop(server)
        server = soak.start_container(model_dir, work / f"term-{name}.log", worker_class=worker_class)
        figures["sigterm"] = soak.sigterm_under_load(soak.base_url(server), server.process, bodies[1].read_bytes())
        out[name] = figures
    out["throughput"] = throughput(model_dir, work, plan, bodies)
    for workers in (1, 2):
        server = soak.start_container(model_dir, work / f"kill-{workers}.log", workers=workers)
        try:
            out[f"sigkill_worker_of_{workers}"] = soak.sigkill_worker_under_load(
                soak.base_url(server), server.process.pid, server.log, bodies[1].read_bytes())
        finally:
            servers.stop(server)
    return out


def throughput(model_dir: Path, work: Path, plan: Plan, bodies: list[Path]) -> dict[str, Any]:
    """One pinned worker, ours and gunicorn's sync worker, alternating reps (medians): req/s, and the worker's CPU
    time per request from /proc, which a busy machine disturbs less than req/s."""
    script = load.write_script(work)
    runs: dict[str, list[tuple[float, float]]] = {}
    for rep in range(plan.throughput_reps):
        for name, worker_class in (("ours", None), ("gunicorn sync", "sync")):
            server = soak.start_container(model_dir, work / f"rps-{name}-{rep}.log", workers=1,
                                          worker_class=worker_class, cpu=0)
            try:
                (worker,) = soak.worker_pids(server.process.pid)
                for body, rows in ((bodies[0], 1), (bodies[1], 100)):
                    before = soak.cpu_seconds(worker)
                    result = load.run_wrk(f"{soak.base_url(server)}/invocations", body, script,
                                          seconds=plan.throughput_s, connections=8, rows_per_request=rows, cpu=1)
                    cpu_us = (soak.cpu_seconds(worker) - before) / max(result.requests, 1) * 1e6
                    runs.setdefault(f"{name} {rows}", []).append((result.rps, round(cpu_us, 1)))
            finally:
                servers.stop(server)
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return {key: {"median_rps": median([r for r, _ in values]), "median_cpu_us": median([c for _, c in values]),
                  "runs": values} for key, values in runs.items()}


def tarball_figures(model_dir: Path, work: Path) -> dict[str, Any]:
    outside = work / "outside"
    outside.mkdir()
    return {name: hostile.load(make, work / "hostile", outside)
            for name, make in hostile.catalogue(model_dir, outside).items()}


def fault_figures(params_file: Path, versions: list[str], plan: Plan, work: Path) -> dict[str, Any]:
    from registry import promote

    out: dict[str, Any] = {"promote": []}
    for point in plan.promote_points:
        reset = promote.main(["--params", str(params_file), "--rollback"]) if point != plan.promote_points[0] else 0
        result = faults.promote_fault(params_file, versions[1], point)
        out["promote"].append({k: result[k] for k in ("point", "killed", "after_kill_problems", "next_exit",
                                                       "final_problems")} | {
            "reset": reset, "production_after_kill": result["after_kill"]["aliases"].get("production"),
            "next_said": [line for line in result["next_said"] if "died" in line][:1]})
    export = faults.export_fault(params_file)
    out["export"] = {"killed": export["killed"], "temp_after_kill": len(export["after_kill"]["temp_files"]),
                     "tarball_after_kill": export["after_kill"]["exported"], "next_exit": export["next_exit"],
                     "temp_after_next": len(export["final"]["temp_files"])}
    folder = work / "train-fault"
    folder.mkdir()
    raw = yaml.safe_load(params_file.read_text())
    raw["train"].update(n_trials=12, storage=f"journal:{folder / 'optuna.journal'}")
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    first = faults.start_training(folder, folder / "params.yaml", folder / "first.log")
    faults.wait_for_trials(first, folder / "first.log", 2)
    left = faults.kill_mid_trial(first, folder / "optuna.journal")
    second = faults.start_training(folder, folder / "params.yaml", folder / "second.log")
    out["training"] = {"trials_left_running": left, "resumed_exit": second.wait(timeout=1200),
                       **faults.run_states(f"sqlite:///{folder / 'mlflow.db'}")}
    return out


def run(plan: Plan, work: Path) -> dict[str, Any]:
    from core.params import load_params
    from serving import bundle
    from serving.predictor import records_from_frame

    started = time.monotonic()
    log("training two versions into a throwaway registry")
    params_file, versions = faults.build_store(work / "project", plan.train)
    model_dir = bundle.unpack(load_params(params_file).export.path, work / "model")
    import pandas as pd

    records = records_from_frame(pd.read_csv(SAMPLE).drop(columns=["Exam_Score"]).head(100))
    log("fuzzing /invocations")
    results: dict[str, Any] = {"fuzz": fuzz_figures(model_dir, work, plan)}
    log("soak, SIGTERM, SIGKILL, stalled clients")
    results["load"] = load_figures(model_dir, work, plan, records)
    log("hostile tarballs")
    results["tarballs"] = tarball_figures(model_dir, work)
    log("faults between steps")
    results["faults"] = fault_figures(params_file, versions, plan, work)
    results["run"] = {"mode": "quick" if plan is QUICK else "full", "minutes": round((time.monotonic() - started) / 60, 1),
                      "cpus": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "load_after": [round(x, 2) for x in os.getloadavg()]}
    return results


@click.command(help="Run the fuzzing and fault-injection suite at volume; write benchmarks/results/reliability.*")
@click.option("--quick", is_flag=True, help="Smoke run: a few of everything (figures not comparable).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR,
              show_default=True)
def cli(quick: bool, results_dir: Path) -> None:
    stem = "reliability-quick" if quick else "reliability"
    report.results_folder(results_dir, files=(f"{stem}.json", f"{stem}.md"))
    try:
        load.wrk_path()
    except load.WrkMissing as err:
        raise UserError(str(err)) from None
    if not SAMPLE.is_file():
        raise UserError(f"{SAMPLE}: data file not found (run `make data`)")
    with servers.workdir("reliability-") as work:
        results = run(QUICK if quick else FULL, work)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    (results_dir / f"{stem}.md").write_text(reliability_report.markdown(results))
    click.echo(reliability_report.markdown(results))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reliability benchmark; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
