"""Owns the big-batch benchmark: rows/s of 10,000-record requests, ours vs the reference, and the payload limits.

Usage: ``python -m benchmarks.batches [--quick]`` (``make bench-batches``). Results:
``benchmarks/results/batches.{json,md}``. Everything happens in a throwaway folder, only loopback.

1. Models, as ``make bench`` trains them (``benchmarks/training.py``, ``benchmarks/bundles.py``): our default
   study with logging on (which registers the version exported to ``model.tar.gz``), and the reference
   design's 50-trial search packed as its tarball.
2. Throughput: ours (``serving/serve``, one worker) and the reference (``gunicorn benchmarks.reference.app:app``)
   both up under real gunicorn, both pinned to CPU 0, this client on CPU 1. Each round posts the same
   10,000 records of the sample data (cycled) a few times to each server, the order alternating per round;
   the figure is the median latency over all posts and rows/s = rows / that median. Ours is also timed with
   the same records as MLflow's ``dataframe_split`` and as CSV (the reference reads JSON records only).
3. Payload limits: the largest count of sample records whose body fits under SageMaker's limits (6 MB for
   real-time ``InvokeEndpoint``, 4 MB for serverless), found by encoding real records for each body shape,
   each limit read as MiB and as decimal MB; the largest body under 6 MiB of each shape is then posted to
   ours (200 expected) and one record more (413 expected, the container's ``SERVING_MAX_BODY_BYTES``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from benchmarks import bundles, report, servers, training
from benchmarks.payloads import (
    LIMITS,
    MIB,
    SHAPES,
    cycled,
    json_records,
    largest_batch,
    payload_table,
    sample_records,
)
from benchmarks.run import FULL, QUICK, SERVER_CPU, log
from core.cli import UserError, run_cli

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
CLIENT_CPU = 1
ROWS = 10_000
TARGET = 5.0


@dataclass(frozen=True)
class Plan:
    """Rounds and posts per round of one run, and how the models are trained."""

    mode: str
    rounds: int
    posts: int
    train_overrides: dict[str, Any]
    reference_trials: int


BATCH_FULL = Plan("full", rounds=7, posts=3, train_overrides=FULL.train_overrides,
                  reference_trials=FULL.reference_trials)
BATCH_QUICK = Plan("quick", rounds=1, posts=1, train_overrides=QUICK.train_overrides,
                   reference_trials=QUICK.reference_trials)


# --- HTTP --------------------------------------------------------------------------------------------------

def post(port: int, body: bytes, content_type: str, timeout_s: float = 60.0) -> tuple[int, bytes, float]:
    """One ``POST /invocations``; the status, the answer and the seconds from sending to the whole answer."""
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=timeout_s)
    try:
        started = time.perf_counter()
        # A body over the limit is refused before it is all sent: the answer is read all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", servers.INVOCATIONS, body=body, headers={"Content-Type": content_type})
        reply = conn.getresponse()
        answer = reply.read()
        return reply.status, answer, time.perf_counter() - started
    finally:
        conn.close()


def timed(port: int, body: bytes, content_type: str, rows: int) -> float:
    """Seconds for one request, after checking it answered 200 with one prediction per row."""
    status, answer, seconds = post(port, body, content_type)
    if status != 200:
        raise RuntimeError(f"answered {status} to a {rows}-record body: {answer[:300]!r}")
    predictions = json.loads(answer)["predictions"]
    if len(predictions) != rows:
        raise RuntimeError(f"answered {len(predictions)} predictions to {rows} records")
    return seconds


def summarise(seconds: list[float], rows: int) -> dict[str, float]:
    med = report.median(seconds)
    return {"median_ms": med * 1000, "min_ms": min(seconds) * 1000, "max_ms": max(seconds) * 1000,
            "rows_per_s": rows / med, "spread": max(seconds) / min(seconds), "posts": len(seconds)}


# --- the run -----------------------------------------------------------------------------------------------

def train_models(work: Path, csv_path: Path, plan: Plan) -> tuple[Path, Path, dict[str, Any]]:
    """Our registered version exported to ``model.tar.gz`` and the reference's tarball, as ``make bench`` has them."""
    ours, reference = work / "ours", work / "reference"
    results = {}
    for folder, args in ((ours, ["ours", "--log"]), (reference, ["reference", "--trials", str(plan.reference_trials)])):
        folder.mkdir()
        params = training.write_params(folder, csv_path, plan.train_overrides)
        if folder == ours:
            training.run_isolated(["store", "--params", str(params)], folder, folder / "store.log")
        log(f"batches: training {folder.name} ...")
        results[folder.name] = training.run_isolated([*args, "--params", str(params)], folder, folder / "train.log")
    ours_tar = bundles.export_ours(ours, str(results["ours"]["version"]), work / "ours-model")
    ref_tar = bundles.pack_reference(reference, work / "reference-model")
    return ours_tar, ref_tar, results


@contextlib.contextmanager
def client_cpu(cpu: int):
    """This process (the client) pinned to ``cpu`` while the servers run on ``SERVER_CPU``; restored after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measure(work: Path, ours_tar: Path, ref_tar: Path, records: list[dict[str, Any]], plan: Plan
            ) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Rows/s of every (server, body shape) point over alternating rounds, then the limit checks on ours."""
    batch = cycled(records, ROWS)
    bodies = {shape: (kind, encode(batch)) for shape, (kind, encode) in SHAPES.items()}
    points = [("ours", "json_records"), ("reference", "json_records"), ("ours", "dataframe_split"), ("ours", "csv")]
    times: dict[str, list[float]] = {f"{name}_{shape}": [] for name, shape in points}
    one = json_records(batch[:1])
    with contextlib.ExitStack() as stack:
        ports = {}
        for name, make in (("ours", lambda port: servers.ours(ours_tar.parent, port)),
                           ("reference", lambda port: servers.reference(bundles.fresh_dir(ref_tar, work), port))):
            port = servers.free_port()
            stack.enter_context(servers.serving(make(port), port, work / f"{name}.log", one, cpu=SERVER_CPU))
            ports[name] = port
        stack.enter_context(client_cpu(CLIENT_CPU))
        for name, shape in points:  # warm-up: first big allocations, caches
            timed(ports[name], bodies[shape][1], bodies[shape][0], ROWS)
        for round_ in range(plan.rounds):
            order = points if round_ % 2 == 0 else points[::-1]
            for name, shape in order:
                kind, body = bodies[shape]
                times[f"{name}_{shape}"] += [timed(ports[name], body, kind, ROWS) for _ in range(plan.posts)]
            log(f"batches: round {round_ + 1}/{plan.rounds}: " + ", ".join(
                f"{k} {1000 * statistics.median(v):.0f} ms" for k, v in times.items()))
        limits = check_limits(ports["ours"], records)
    return {key: summarise(values, ROWS) for key, values in times.items()}, limits


def check_limits(port: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest body under 6 MiB of each shape is answered by ours; one record more is refused with 413."""
    out = {}
    for shape, (kind, encode) in SHAPES.items():
        count, size = largest_batch(records, encode, 6 * MIB)
        status, _, seconds = post(port, encode(cycled(records, count)), kind)
        over, _, _ = post(port, encode(cycled(records, count + 1)), kind)
        out[shape] = {"records": count, "bytes": size, "status": status, "seconds": seconds, "one_more_status": over}
    return out


def run(plan: Plan, work: Path, csv_path: Path) -> dict[str, Any]:
    clock = report.RunClock()
    ours_tar, ref_tar, trained = train_models(work, csv_path, plan)
    from core.params import load_params

    records = sample_records(csv_path, load_params(work / "ours" / "params.yaml").data.target)
    payloads = payload_table(records)
    points, limits = measure(work, ours_tar, ref_tar, records, plan)
    ours, ref = points["ours_json_records"]["rows_per_s"], points["reference_json_records"]["rows_per_s"]
    target = report.Target("batch_10k_vs_reference", f"{ROWS:,}-record JSON body: rows/s vs reference",
                           report.ratio(ours, ref), TARGET, True,
                           detail=f"{ours:,.0f} vs {ref:,.0f} rows/s (medians)")
    return {"targets": [target.to_json()], "throughput": points, "payloads": payloads, "limits": limits,
            "training": trained, "machine": report.machine(),
            "run": clock.record(mode=plan.mode, rows=ROWS, rounds=plan.rounds, posts_per_round=plan.posts)}


def markdown(r: dict[str, Any]) -> str:
    t = r["targets"][0]
    lines = ["| Target | Measured | Goal | Result | Detail |", "|---|---|---|---|---|",
             f"| {t['title']} | {t['value']:.2f}× | ≥ {t['limit']:g}× | {t['verdict']} | {t['detail']} |", "",
             f"| Server, body ({r['run']['rows']:,} records) | median ms | min–max ms | rows/s | max/min |",
             "|---|---|---|---|---|"]
    for key, p in r["throughput"].items():
        lines.append(f"| {key} | {p['median_ms']:.1f} | {p['min_ms']:.1f}–{p['max_ms']:.1f} | "
                     f"{p['rows_per_s']:,.0f} | {p['spread']:.2f} |")
    names = [name for name, _ in LIMITS]
    lines += ["", "| Largest batch of sample records (body bytes) | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for shape, row in r["payloads"].items():
        lines.append(f"| {shape} | " + " | ".join(f"{row[n]['records']:,} ({row[n]['bytes']:,} B)" for n in names)
                     + " |")
    lines += ["", "Posted to ours: " + "; ".join(
        f"{shape} {c['records']:,} records ({c['bytes']:,} B) → {c['status']} in {1000 * c['seconds']:.0f} ms, "
        f"one more → {c['one_more_status']}" for shape, c in r["limits"].items()) + "."]
    mach, run = r["machine"], r["run"]
    lines += ["", f"Machine: {mach['cpu']}, {mach['cores']} cores, Python {mach['python']}. Run: {run['mode']} "
                  f"mode, {run['rounds']} alternating rounds of {run['posts_per_round']} posts per point, servers on "
                  f"CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}; {run['total_s']:.0f} s in all; load average "
                  f"{run['load_before']} before, {run['load_after']} after."]
    return "\n".join(lines) + "\n"


@click.command(help="Rows/s of 10,000-record requests, ours vs the reference design, and the largest batch "
                    "under SageMaker's payload limits; write benchmarks/results/batches.{json,md}.")
@click.option("--quick", is_flag=True, help="Smoke run: one round, a few trials (results not comparable).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR,
              show_default=True)
@click.option("--data", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              default=ROOT / "data" / "student_performance.csv", show_default=True)
@click.option("--keep-workdir", is_flag=True, help="Keep the throwaway folder (models, server logs).")
def cli(quick: bool, results_dir: Path, csv_path: Path, keep_workdir: bool) -> None:
    stem = "batches-quick" if quick else "batches"
    report.results_folder(results_dir, files=(f"{stem}.json", f"{stem}.md"))
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: data file not found (run `make data`)")
    if len(os.sched_getaffinity(0)) < 2:
        raise UserError("the benchmark needs two CPUs (servers on one, the client on the other)")
    plan = BATCH_QUICK if quick else BATCH_FULL
    with servers.workdir("bench-batches-", keep=keep_workdir, log=log) as work:
        results = run(plan, work, csv_path.resolve())
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (results_dir / f"{stem}.md").write_text(markdown(results), encoding="utf-8")
    click.echo(markdown(results))
    click.echo(f"wrote {results_dir / stem}.json and .md")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
