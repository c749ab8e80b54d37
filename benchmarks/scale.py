"""Owns the scale benchmark: the default training from the sample size to 200x it, and its growth.

Usage: ``python -m benchmarks.scale [--sizes 6607,66070,330350,1321400] [--quick]`` (``make bench-scale``).
Each table is the project's own generator (``experiments.generate``, seed 42) at that many rows. Per size, in
fresh interpreters on the default params.yaml (``benchmarks/training.py``): our stage with MLflow logging on
(wall time after imports, peak RSS, test RMSE, the seconds spent in logging calls); at the sample size also
with logging off, and the standard MLflow idiom on and off (``benchmarks/idiom.py``). At the largest size, the
real ``dvc repro`` of a copy of the project, timed end to end. Targets (issue: scale):
- largest size: ``dvc repro`` <= 30 min, peak RSS <= 1.5 GB, test RMSE within 1% of the best any model can do
  on that test split (the generator's ground truth: no search, however long, beats it);
- growth from 66k rows up: wall time ~ rows^b with b <= 1.05, and peak RSS <= 10x the encoded training matrix
  (at the largest size; the marginal ratio between sizes is reported beside it);
- MLflow logging <= 5% of the wall at 66k rows and up, and no more than the idiom's at the sample size.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks import project_copy, report, training
from core.cli import UserError, run_cli

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
FULL_SIZES = (6607, 66070, 330350, 1321400)
QUICK_SIZES = (1500, 6000)
QUICK_TRAIN = {"n_trials": 3, "cv_folds": 2, "max_rounds": 40, "pruner_startup_trials": 1, "search_rows": 3000,
               "holdout_above": 2000}
GROWTH_FROM = 66070


def log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_table(rows: int, folder: Path) -> Path:
    """The generator's table of ``rows`` rows as a CSV in ``folder``."""
    from experiments.generate import generate

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "table.csv"
    generate(rows=rows).to_csv(path, index=False)
    return path


def best_possible_rmse(params_file: Path) -> tuple[float, int]:
    """RMSE of the generator's ground truth on the test split (the floor no model can beat), and the
    encoded training matrix's size in bytes."""
    from core.params import load_params
    from experiments.data import load_and_split
    from experiments.generate import ground_truth

    params = load_params(params_file)
    frame, train, test = load_and_split(params)
    truth = ground_truth(test)
    floor = math.sqrt(float(np.mean((test[params.data.target].to_numpy(dtype=float) - truth) ** 2)))
    from experiments.data import infer_schema

    width = len(infer_schema(frame, params.data.target).columns)
    return floor, len(train) * width * 4


def dvc_repro(csv: Path, folder: Path) -> dict[str, Any]:
    """``dvc repro`` of a fresh copy of the project on ``csv`` (its own git repo, stores and DVC cache)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("OPTUNA_STORAGE", None)
    project = project_copy.make(folder / "project", leave_out=("infra/", "benchmarks/", "sample-remote/"), csv=csv,
                                env=env)
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "done = subprocess.run(sys.argv[1:]); wall = time.perf_counter() - t; "
             "print(done.returncode, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", probe, "dvc", "repro"], cwd=project, env=env,
                          capture_output=True, text=True, check=False)
    code, wall, rss = done.stdout.strip().splitlines()[-1].split()
    if code != "0":
        raise UserError(f"dvc repro failed at {csv}: {done.stderr.strip().splitlines()[-1:]}")
    metrics = json.loads((project / "metrics.json").read_text())
    return {"wall_s": float(wall), "peak_rss_mb": float(rss), "test_rmse": metrics["test"]["rmse"]}


def measure(rows: int, work: Path, overrides: dict[str, Any], *, idiom: bool, repro: bool) -> dict[str, Any]:
    folder = work / f"rows-{rows}"
    csv = write_table(rows, folder / "data")
    out: dict[str, Any] = {"rows": rows}
    # Logging off only where the idiom is measured: there both costs are on-minus-off walls, compared in one run.
    # Elsewhere our logging share is the stage's own count of seconds spent in MLflow calls (``mlflow_s``),
    # steadier on a shared machine than the difference of two long walls.
    runs = [("on", ["ours", "--log"])]
    if idiom:
        runs += [("off", ["ours", "--no-log"]), ("idiom_on", ["idiom", "--log"]), ("idiom_off", ["idiom", "--no-log"])]
    for name, args in runs:
        run_dir = folder / name
        run_dir.mkdir()
        params = training.write_params(run_dir, csv, overrides)
        if name in ("on", "idiom_on"):
            training.run_isolated(["store", "--params", str(params)], run_dir, run_dir / "store.log")
        log(f"{rows:,} rows: {name} ...")
        out[name] = training.run_isolated([*args, "--params", str(params)], run_dir, run_dir / "train.log")
        log(f"{rows:,} rows: {name} {out[name]['wall_s']:.1f} s, RMSE {out[name]['test_rmse']:.4f}, "
            f"peak {out[name]['peak_rss_mb']:.0f} MB")
    out["floor_rmse"], out["train_matrix_bytes"] = best_possible_rmse(folder / "on" / "params.yaml")
    if repro:
        log(f"{rows:,} rows: dvc repro ...")
        out["dvc_repro"] = dvc_repro(csv, folder)
        log(f"{rows:,} rows: dvc repro {out['dvc_repro']['wall_s']:.0f} s")
    shutil.rmtree(folder / "data", ignore_errors=True)
    return out


def growth_exponent(sizes: Sequence[dict[str, Any]]) -> float | None:
    """The least-squares slope of log(wall) on log(rows) over the sizes from ``GROWTH_FROM`` rows."""
    points = [(s["rows"], s["on"]["wall_s"]) for s in sizes if s["rows"] >= GROWTH_FROM]
    if len(points) < 2:
        return None
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def targets(sizes: Sequence[dict[str, Any]]) -> list[report.Target]:
    top = sizes[-1]
    share = {s["rows"]: s["on"]["mlflow_s"] / s["on"]["wall_s"] for s in sizes}
    big = [s for s in sizes if s["rows"] >= GROWTH_FROM]
    out = [
        report.Target("repro_wall", f"`dvc repro` at {top['rows']:,} rows", top.get("dvc_repro", {}).get("wall_s",
                      top["on"]["wall_s"]) / 60, 30, at_least=False, unit=" min"),
        report.Target("peak_rss", f"Peak RSS at {top['rows']:,} rows", top["on"]["peak_rss_mb"], 1536, at_least=False,
                      unit=" MB"),
        report.Target("rmse_vs_floor", f"Test RMSE vs the best possible at {top['rows']:,} rows",
                      top["on"]["test_rmse"] / top["floor_rmse"], 1.01, at_least=False,
                      detail=f"{top['on']['test_rmse']:.4f} vs {top['floor_rmse']:.4f}"),
        report.Target("growth", f"Wall-time growth exponent from {GROWTH_FROM:,} rows", growth_exponent(sizes), 1.05,
                      at_least=False, unit=" "),
    ]
    if big:
        # The whole peak against the encoded training matrix at the largest size, where the data dominates; below
        # it, a fixed few hundred MB (the imports, MLflow's model logging, XGBoost's buffers) outweigh a small
        # matrix. The marginal ratio (what each extra MB of matrix costs, between the smallest and largest of
        # these sizes) shows the growth without the fixed part.
        first = big[0]
        marginal = ((top["on"]["peak_rss_mb"] - first["on"]["peak_rss_mb"]) * 2**20
                    / (top["train_matrix_bytes"] - first["train_matrix_bytes"])) if len(big) > 1 else None
        out.append(report.Target("memory", f"Peak RSS / encoded training matrix at {top['rows']:,} rows",
                                 top["on"]["peak_rss_mb"] * 2**20 / top["train_matrix_bytes"], 10, at_least=False,
                                 detail=f"marginal from {first['rows']:,} rows: "
                                        f"{'n/a' if marginal is None else f'{marginal:.1f}'}×"))
        worst = max(big, key=lambda s: share[s["rows"]])
        out.append(report.Target("logging_share", "MLflow logging share of the wall (worst size from 66k rows)",
                                 share[worst["rows"]] * 100, 5, at_least=False, unit="%",
                                 detail=f"at {worst['rows']:,} rows"))
    small = sizes[0]
    if "idiom_on" in small:
        ours = small["on"]["wall_s"] - small["off"]["wall_s"]
        theirs = small["idiom_on"]["wall_s"] - small["idiom_off"]["wall_s"]
        out.append(report.Target("logging_vs_idiom", f"Our logging cost vs the standard idiom's at {small['rows']:,} rows",
                                 ours / theirs if theirs > 0 else None, 1.0, at_least=False,
                                 detail=f"{ours:.2f} s vs {theirs:.2f} s"))
    return out


def parts_table(sizes: Sequence[dict[str, Any]]) -> list[str]:
    """Where the seconds in MLflow calls go at each size, part by part as the stage counts them."""
    from experiments.train import SET_UP

    names = list(dict.fromkeys(name for s in sizes for name in s["on"].get("mlflow_parts", {})))
    if not names:
        return []
    lines = ["| rows | " + " | ".join(f"{n} s" for n in names) + " | in MLflow, share of the wall | "
             "the same without set-up |",
             "|---|" + "---|" * (len(names) + 2)]
    for s in sizes:
        on = s["on"]
        parts = on.get("mlflow_parts", {})
        share = 100 * on["mlflow_s"] / on["wall_s"]
        rest = 100 * (on["mlflow_s"] - parts.get(SET_UP, 0.0)) / on["wall_s"]
        lines.append(f"| {s['rows']:,} | " + " | ".join(f"{parts.get(n, 0.0):.2f}" for n in names)
                     + f" | {share:.1f}% | {rest:.1f}% |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    lines = report.targets_table(results["targets"])
    lines += ["", "| rows | wall s | in MLflow calls s | wall s, logging off | peak RSS MB | above the imports MB "
              "| encoded training matrix MB | test RMSE | best possible | `dvc repro` s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in results["sizes"]:
        on, off, repro = s["on"], s.get("off"), s.get("dvc_repro")
        off_wall = f"{off['wall_s']:.1f}" if off else "—"
        repro_wall = f"{repro['wall_s']:.0f}" if repro else "—"
        lines.append(f"| {s['rows']:,} | {on['wall_s']:.1f} | {on['mlflow_s']:.1f} | "
                     f"{off_wall} | {on['peak_rss_mb']:.0f} | "
                     f"{on['peak_rss_mb'] - on['rss_at_start_mb']:.0f} | {s['train_matrix_bytes'] / 2**20:.0f} | "
                     f"{on['test_rmse']:.4f} | {s['floor_rmse']:.4f} | {repro_wall} |")
    lines += ["", *parts_table(results["sizes"])]
    m = results["machine"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}. "
              f"Run: {results['run']['mode']} mode, {results['run']['total_s']:.0f} s in all; load average "
              f"{results['run']['load_before']} before, {results['run']['load_after']} after."]
    return "\n".join(lines) + "\n"


@click.command(help="Train at growing table sizes; write benchmarks/results/scale.{json,md}.")
@click.option("--sizes", default=None, help="Comma-separated row counts (default 6607,66070,330350,1321400).")
@click.option("--quick", is_flag=True, help="Smoke run: two small tables, a tiny search (results not comparable).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR,
              show_default=True)
def cli(sizes: str | None, quick: bool, results_dir: Path) -> None:
    try:
        rows = sorted(int(s) for s in sizes.split(",")) if sizes else list(QUICK_SIZES if quick else FULL_SIZES)
    except ValueError:
        raise UserError(f"--sizes must be comma-separated row counts, got {sizes!r}") from None
    if not rows or rows[0] < 100:
        raise UserError("--sizes: every table needs at least 100 rows")
    from experiments.generate import MAX_ROWS

    if rows[-1] > MAX_ROWS:
        raise UserError(f"--sizes: {rows[-1]:,} rows is more than the generator makes ({MAX_ROWS:,})")
    if len(set(rows)) < len(rows):
        raise UserError(f"--sizes names a row count twice: {sizes}")
    stem = "scale-quick" if quick else "scale"
    report.results_folder(results_dir, files=(f"{stem}.json", f"{stem}.md"))
    clock = report.RunClock()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        measured = [measure(n, work, QUICK_TRAIN if quick else {}, idiom=i == 0, repro=i == len(rows) - 1)
                    for i, n in enumerate(rows)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"targets": [t.to_json() for t in targets(measured)], "sizes": measured, "machine": report.machine(),
               "run": clock.record(mode="quick" if quick else "full")}
    (results_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (results_dir / f"{stem}.md").write_text(markdown(results), encoding="utf-8")
    click.echo(markdown(results))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scale benchmark; returns the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
