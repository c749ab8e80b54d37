"""Owns the capture benchmark: what capturing adds to the median latency through the local chain (target: ≤ 5%).

The chain is the stand-in's (``infra/local``): HTTP -> front door -> the real predict handler -> boto3 ->
stand-in endpoint -> the real container (gunicorn) on the exported model. The modes take turns on the same
chain, in a shuffled order each round, each in blocks of sequential single-record requests on one keep-alive
connection:
``off`` (no capture), ``folder`` (capture records appended to a local folder, the stand-in's default) and
``firehose`` (put to moto's Firehose -> S3 in its own process, with the real boto3 client), all with the
handler's default batching (``CAPTURE_LINGER_MS``), and ``firehose_no_linger`` (one put per request, to show
what the batching saves); ``off_again`` repeats ``off``, so the run shows its own noise floor. Capture is flushed
after each block, untimed, followed by a garbage collection and a short pause, so a block pays for its own
records and leaves nothing for the next. The
headline is what each mode adds to the median, paired by round (the median over rounds of its block's median
over the ``off`` block's, ``paired_overhead``), beside each mode's own median and p90 over all its requests;
the records each mode left behind are counted, to prove it captured.

Usage: ``python -m benchmarks.capture [--model-tarball PATH] [--quick]`` (``make bench-capture``).
Results: ``benchmarks/results/capture.{json,md}``.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import random
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from benchmarks import report
from core.cli import UserError, run_cli
from core.params import load_params
from infra.local import cli as stand_in
from infra.local import container as local_container
from infra.local.capture import start_moto
from infra.local.endpoint import start_endpoint
from infra.local.front_door import start_front_door

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
MODES = ("off", "folder", "firehose", "firehose_no_linger", "off_again")
TARGET = 0.05
SETTLE_S = 0.2


def front_linger() -> str:
    from infra.api.runtime.capture import DEFAULT_LINGER_MS

    return DEFAULT_LINGER_MS


def bodies(count: int) -> list[bytes]:
    """Single-record JSON bodies from the sample generator (seed fixed), missing values as null."""
    from experiments.generate import generate

    frame = generate(count, seed=99).drop(columns=["Exam_Score"])
    return [json.dumps(record).encode() for record in json.loads(frame.to_json(orient="records"))]


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> float:
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    answer.read()
    if answer.status != 200:
        raise UserError(f"the chain answered {answer.status}")
    return (time.perf_counter() - started) * 1000


def _lines(folder: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in folder.rglob("*") if path.is_file())


def run(tarball: Path, *, rounds: int, block: int, warmup: int) -> dict[str, Any]:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        work = Path(tmp)
        local_container.unpack(tarball, work / "model")
        port = local_container.free_port()
        process = local_container.start_container(model_dir=work / "model", port=port)
        stack.callback(local_container.stop_container, process)
        container = f"http://{local_container.LOOPBACK}:{port}"
        local_container.wait_ready(container, timeout_s=60, process=process)
        endpoint = start_endpoint(endpoint_name="bench", container_url=container, host=local_container.LOOPBACK)
        stack.callback(endpoint.shutdown)
        os.environ.update(stand_in.handler_environment(endpoint_name="bench", endpoint_url=endpoint.url))
        moto = start_moto(host=local_container.LOOPBACK, port=local_container.free_port())
        stack.callback(moto.stop)
        front = start_front_door(host=local_container.LOOPBACK, port=0)
        stack.callback(front.shutdown)
        capture = front.handler.capture
        envs = {"off": {}, "folder": {"CAPTURE_DIR": str(work / "folder")}, "firehose": moto.handler_environment(),
                "firehose_no_linger": {**moto.handler_environment(), "CAPTURE_LINGER_MS": "0"}, "off_again": {}}
        host, front_port = front.server_address[:2]
        path = f"/{front.url.split('/', 3)[3]}"
        conn = http.client.HTTPConnection(host, front_port, timeout=30)
        stack.callback(conn.close)
        payloads = bodies(block)
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        blocks: dict[str, list[float]] = {mode: [] for mode in MODES}  # each round's median, per mode
        shuffle = random.Random(7)
        for index in range(rounds + 1):
            order = list(MODES)
            shuffle.shuffle(order)
            for mode in order:
                for name in ("CAPTURE_DIR", "CAPTURE_STREAM", "FIREHOSE_ENDPOINT_URL", "CAPTURE_LINGER_MS"):
                    os.environ.pop(name, None)
                os.environ.update(envs[mode])
                capture.sender.cache_clear()
                timings = [_post(conn, path, body) for body in payloads[: warmup if index == 0 else block]]
                if not capture.flush(30):
                    raise UserError(f"{mode}: capture did not drain within 30 s")
                # The same quiet start for every block: nothing of the previous block left to collect or send.
                gc.collect()
                time.sleep(SETTLE_S)
                if index:  # round 0 warms every mode up
                    latencies[mode] += timings
                    blocks[mode].append(statistics.median(timings))
        moto.mirror(work / "moto")
        captured = {"folder": _lines(work / "folder"), "firehose": _lines(work / "moto")}  # both firehose modes
    medians = {mode: statistics.median(values) for mode, values in latencies.items()}
    # Paired within each round (the machine's load drifts between rounds): a mode's block against the mean of
    # that round's two capture-free blocks; the median of those ratios is the headline.
    baseline = [(a + b) / 2 for a, b in zip(blocks["off"], blocks["off_again"], strict=True)]
    paired = {mode: round(statistics.median(m / b for m, b in zip(blocks[mode], baseline, strict=True)) - 1, 4)
              for mode in MODES[1:-1]}
    noise = round(statistics.median(b / a for a, b in zip(blocks["off"], blocks["off_again"], strict=True)) - 1, 4)
    return {"paired_overhead": paired, "noise": noise,"requests_per_mode": rounds * block, "rounds": rounds, "block": block,
            "median_ms": {m: round(v, 3) for m, v in medians.items()},
            "p90_ms": {m: round(statistics.quantiles(v, n=10)[-1], 3) for m, v in latencies.items()},
            "overhead": {m: round(medians[m] / medians["off"] - 1, 4) for m in MODES[1:]},
            "captured_records": captured, "expected_records": {"folder": rounds * block + warmup,
                                                               "firehose": 2 * (rounds * block + warmup)},
            "linger_ms": int(front_linger()), "target": TARGET}


def markdown(r: dict[str, Any]) -> str:
    lines = ["| Capture mode | median ms | p90 ms | added to the median (paired by round) | records left behind |",
             "|---|---|---|---|---|"]
    for mode in MODES:
        if mode in r["paired_overhead"]:
            added = r["paired_overhead"][mode]
            extra = f"{added:+.1%} ({'pass' if added <= r['target'] else 'miss'} ≤ {r['target']:.0%})"
        else:
            extra = "baseline" if mode == "off" else f"{r['noise']:+.1%} vs off: the run's noise floor"
        sink = "firehose" if mode.startswith("firehose") else mode
        left = "–" if mode.startswith("off") else f"{r['captured_records'][sink]:,} of {r['expected_records'][sink]:,}"
        lines.append(f"| {mode} | {r['median_ms'][mode]} | {r['p90_ms'][mode]} | {extra} | {left} |")
    return "\n".join(lines) + f"\n\n{r['requests_per_mode']:,} single-record requests per mode in {r['rounds']} " \
        f"rounds of {r['block']}, one keep-alive connection, through front door, handler, stand-in endpoint " \
        "and gunicorn container.\n"


@click.command(help="Median latency through the local chain with capture off, to a folder, to moto's Firehose.")
@click.option("--model-tarball", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Exported model (default: params.yaml export.path).")
@click.option("--rounds", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--block", type=click.IntRange(min=10), default=50, show_default=True)
@click.option("--quick", is_flag=True, help="2 rounds of 20: a smoke run.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR)
def cli(model_tarball: Path | None, rounds: int, block: int, quick: bool, results_dir: Path) -> None:
    stem = "capture-quick" if quick else "capture"
    report.results_folder(results_dir, files=(f"{stem}.json", f"{stem}.md"))
    tarball = model_tarball or ROOT / load_params(ROOT / "params.yaml").export.path
    if not tarball.is_file():
        raise UserError(f"no model tarball at {tarball}: export a model first (make run) or pass --model-tarball")
    rounds, block = (2, 20) if quick else (rounds, block)
    clock = report.RunClock()
    result = run(tarball, rounds=rounds, block=block, warmup=min(block, 50))
    result["run"] = clock.record(mode="quick" if quick else "full")
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (results_dir / f"{stem}.md").write_text(markdown(result))
    click.echo(markdown(result))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
