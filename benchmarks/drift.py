"""Owns the drift benchmark: the drift job on 100,000 captured records (target: under 30 s on this machine).

The traffic is the sample generator's (another seed than the training data), written as the stand-in writes
capture records (JSON lines in ``capture/model=../version=../dt=../``); the reference profile is the one the
train stage saves, built from the sample table's training split. The "model" behind the captured predictions
and the profile's test-split predictions is the generator's ground truth: the job's cost does not depend on
which model predicted. Timed: ``python -m monitoring.drift`` in a new process (imports, reading, statistics,
report and figure), with ``--no-tracking``, then the same with an MLflow run logged to a new SQLite store;
each after one untimed warm-up run, median of 3 (1 in ``--quick``).

Peer (optional): ``--evidently-python PATH``, an interpreter with Evidently installed (``uv venv`` +
``uv pip install evidently pandas``; not a project dependency), runs Evidently's DataDriftPreset on the same
records against the raw training split (Evidently needs the training data itself, not a profile) and saves
its HTML report, timed the same way.

Usage: ``python -m benchmarks.drift [--records N] [--evidently-python PATH]`` (``make bench-drift``).
Results: ``benchmarks/results/drift.{json,md}``.

Quietness, in the same run: 20 windows of 1,000 records drawn from the training distribution (the generator,
seed 11, as the tests use), judged by our verdict and by Evidently's (a window "alarms" when any column is
flagged): the issue asks for no alarm in at least 95% of such windows.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from benchmarks import report
from core.cli import run_cli
from core.params import load_params

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
TARGET_S = 30.0
DAY = 1_764_547_200.0  # 2025-12-01T00:00:00Z: the window the records are stamped in
EVIDENTLY_SCRIPT = """
import sys, time, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference, current, out = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
Report([DataDriftPreset()]).run(reference_data=reference, current_data=current).save_html(out)
print(time.perf_counter() - started)
"""
EVIDENTLY_WINDOWS_SCRIPT = """
import glob, json, sys, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference = pd.read_csv(sys.argv[1])
flagged = {}
for path in sorted(glob.glob(sys.argv[2] + "/window-*.csv")):
    metrics = Report([DataDriftPreset()]).run(reference_data=reference, current_data=pd.read_csv(path)).dict()
    count = next(m["value"]["count"] for m in metrics["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
    flagged[path] = int(count)
print(json.dumps(flagged))
"""
WINDOWS, WINDOW = 20, 1000


def prepare(work: Path, records: int, params_file: Path) -> tuple[Path, Path, Path, Path]:
    """Capture files, a model tarball holding the reference profile, and both tables as CSV (for the peer)."""
    from experiments.data import infer_schema, load_and_split
    from experiments.generate import generate, ground_truth
    from serving import contract
    from serving.profile import build_profile, write_profile

    params = load_params(params_file)
    frame, train, test = load_and_split(params)
    schema = infer_schema(frame, params.data.target, stats_from=train)
    model = work / "model"
    model.mkdir()
    write_profile(model, build_profile(schema, {n: train[n].to_numpy() for n in schema.names}, ground_truth(test)))
    (model / "metadata.json").write_text(json.dumps({"registered_name": params.model.name, "version": "1"}))
    tarball = work / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in model.iterdir():
            tar.add(path, arcname=path.name)
    live = generate(records, seed=2024)
    rows = json.loads(live.drop(columns=[params.data.target]).to_json(orient="records"))
    predictions = ground_truth(live)
    headers = {"X-Model-Name": params.model.name, "X-Model-Version": "1", "X-Data-Hash": "bench"}
    put = contract.folder_put(work / "bucket")
    for start in range(0, len(rows), 1000):  # one request per record, 1,000 to a write
        lines = []
        for i in range(start, min(start + 1000, len(rows))):
            lines += [contract.capture_line(c) for c in contract.prediction_records(
                request_id=f"bench-{i}", records=[rows[i]], predictions=[float(predictions[i])], headers=headers,
                latency_ms=5.0, now=DAY + i * 0.5)]
        put(lines)
    train.drop(columns=[params.data.target]).to_csv(work / "reference.csv", index=False)
    live.drop(columns=[params.data.target]).to_csv(work / "current.csv", index=False)
    quiet = generate(WINDOWS * WINDOW, seed=11).drop(columns=[params.data.target])
    (work / "windows").mkdir()
    for i in range(WINDOWS):
        quiet.iloc[i * WINDOW:(i + 1) * WINDOW].to_csv(work / "windows" / f"window-{i:02d}.csv", index=False)
    return work / "bucket", tarball, work / "reference.csv", work / "current.csv"


def our_quiet_windows(work: Path, tarball: Path, params_file: Path) -> int:
    """How many of the quiet windows our verdict alarms on (the profile's model is the ground truth)."""
    import pandas as pd

    from experiments.generate import ground_truth
    from monitoring.analysis import analyse
    from serving import contract
    from serving.layout import read_member

    profile, thresholds = read_member(tarball, "profile.json"), load_params(params_file).monitor.drift
    alarms = 0
    for path in sorted((work / "windows").glob("window-*.csv")):
        frame = pd.read_csv(path)
        rows = json.loads(frame.to_json(orient="records"))
        captures = contract.prediction_records(
            request_id="w", records=rows, predictions=[float(p) for p in ground_truth(frame)],
            headers={}, latency_ms=0.0, now=DAY)
        alarms += bool(analyse(profile, captures, [], thresholds)["alarms"])
    return alarms


def timed(argv: list[str], env: dict[str, str] | None = None, reps: int = 1) -> tuple[float, subprocess.CompletedProcess]:
    """Median wall time of ``reps`` runs after one untimed warm-up run.

    The warm-up lets Python write its bytecode caches (``PYTHONDONTWRITEBYTECODE`` is cleared for it), so the
    timed runs measure the job, not the compilation of every library a fresh virtualenv has not yet compiled.
    """
    env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONDONTWRITEBYTECODE"}
    times, done = [], None
    for rep in range(reps + 1):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, check=False, timeout=1800)
        if rep:
            times.append(time.perf_counter() - started)
    return statistics.median(times), done


def run(records: int, evidently_python: Path | None, params_file: Path, results_dir: Path, stem: str,
        reps: int = 1) -> dict:
    clock = report.RunClock()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        work = Path(tmp)
        bucket, tarball, reference, current = prepare(work, records, params_file)
        base = [sys.executable, "-m", "monitoring.drift", "--params", str(params_file), "--capture", str(bucket),
                "--profile", str(tarball), "--since", "2025-12-01", "--until", "2025-12-03"]
        ours_s, done = timed([*base, "--out", str(work / "report"), "--no-tracking"], reps=reps)
        if done.returncode not in (0, 1):
            raise click.ClickException(f"the drift job failed: {done.stderr.strip()[-500:]}")
        summary = json.loads((work / "report" / "summary.json").read_text())
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        tracked_s, done = timed([*base, "--out", str(work / "report2")], env=env, reps=reps)
        result: dict[str, Any] = {
            "records": records, "analysed": summary["records"], "verdict": summary["verdict"], "reps": reps,
            "ours_s": round(ours_s, 2), "ours_with_mlflow_run_s": round(tracked_s, 2), "target_s": TARGET_S,
            "report_bytes": (work / "report" / "report.html").stat().st_size,
            "quiet_windows": WINDOWS, "ours_windows_alarmed": our_quiet_windows(work, tarball, params_file),
        }
        if evidently_python is not None:
            script = work / "evidently_run.py"
            script.write_text(EVIDENTLY_SCRIPT)
            peer_s, done = timed([str(evidently_python), str(script), str(reference), str(current),
                                  str(work / "evidently.html")], reps=reps)
            if done.returncode != 0:
                raise click.ClickException(f"Evidently failed: {done.stderr.strip()[-500:]}")
            peer_report_s = float(done.stdout.split()[-1])
            script = work / "evidently_windows.py"
            script.write_text(EVIDENTLY_WINDOWS_SCRIPT)
            done = subprocess.run([str(evidently_python), str(script), str(reference), str(work / "windows")],
                                  capture_output=True, text=True, check=False, timeout=1800)
            if done.returncode != 0:
                raise click.ClickException(f"Evidently failed on the windows: {done.stderr.strip()[-500:]}")
            flagged = json.loads(done.stdout.strip().splitlines()[-1])
            result |= {"evidently_windows_alarmed": sum(1 for n in flagged.values() if n),
                       "evidently_drifted_columns": sum(flagged.values())}
            result |= {"evidently_s": round(peer_s, 2), "evidently_report_s": round(peer_report_s, 2),
                       "evidently_report_bytes": (work / "evidently.html").stat().st_size,
                       "ours_vs_evidently": round(ours_s / peer_s, 3)}
    result["run"] = clock.record(mode="quick" if stem.endswith("quick") else "full")
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (results_dir / f"{stem}.md").write_text(markdown(result))
    return result


def markdown(r: dict[str, Any]) -> str:
    verdict = "pass" if r["ours_s"] < r["target_s"] else "miss"
    lines = ["| Measurement | Value |", "|---|---|",
             f"| Drift job on {r['records']:,} captured records (new process, median of {r['reps']}) | "
             f"{r['ours_s']} s (target < {r['target_s']:.0f} s: {verdict}) |",
             f"| The same, plus an MLflow run in a new SQLite store | {r['ours_with_mlflow_run_s']} s |",
             f"| Report size | {r['report_bytes'] / 1024:.0f} KiB |",
             f"| Quiet windows ({r['quiet_windows']} × 1,000 records from the training distribution) with an "
             f"alarm: ours | {r['ours_windows_alarmed']} |"]
    if "evidently_s" in r:
        lines += [f"| Evidently DataDriftPreset, same records vs the raw training split | {r['evidently_s']} s "
                  f"({r['evidently_report_s']} s in the report itself) |",
                  f"| Evidently report size | {r['evidently_report_bytes'] / 1024:.0f} KiB |",
                  f"| Ours / Evidently wall time | {r['ours_vs_evidently']}× |",
                  f"| Quiet windows with a drifted column: Evidently (its defaults) | "
                  f"{r['evidently_windows_alarmed']} ({r['evidently_drifted_columns']} column flags) |"]
    return "\n".join(lines) + "\n"


@click.command(help="Time the drift job on N captured records (and Evidently on the same, if given).")
@click.option("--records", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--quick", is_flag=True, help="5,000 records: a smoke run.")
@click.option("--evidently-python", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="An interpreter with Evidently installed, to time it as the peer.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path),
              default=ROOT / "params.yaml", show_default=True)
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR)
def cli(records: int, quick: bool, evidently_python: Path | None, params_file: Path, results_dir: Path) -> None:
    stem = "drift-quick" if quick else "drift"
    report.results_folder(results_dir, files=(f"{stem}.json", f"{stem}.md"))
    result = run(5_000 if quick else records, evidently_python, params_file, results_dir, stem,
                 reps=1 if quick else 3)
    click.echo(markdown(result))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
