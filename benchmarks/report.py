"""Owns the results: the targets, their pass/miss verdicts, the machine description and latest.{json,md}.

Every target is a ratio (or, for p99, milliseconds) measured within one run, so absolute speed drifts of a
shared machine cancel out. A missed target says by how much: the factor between the measured value and
the target.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# A name with "|" lists alternatives: the CPU-only wheel of xgboost is another distribution of the same package.
LIBRARIES = ("xgboost|xgboost-cpu", "optuna", "mlflow", "scikit-learn", "pandas", "numpy", "flask", "werkzeug", "gunicorn",
             "uvicorn")


# A load point whose fastest rep beats its slowest by more than this was disturbed by other work.
NOISY_SPREAD = 1.2


@dataclass(frozen=True)
class Target:
    """One target: ``value`` compared with ``limit`` (``at_least`` or at most)."""

    key: str
    title: str
    value: float | None
    limit: float
    at_least: bool
    unit: str = "×"
    detail: str = ""

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def verdict(self) -> str:
        """``pass``, ``not measured`` or ``miss`` with the factor that separates the value from the limit."""
        if self.passed is None:
            return "not measured"
        if self.passed:
            return "pass"
        if self.value == 0:
            return "miss"
        factor = self.limit / self.value if self.at_least else self.value / self.limit
        return f"miss ({factor:.2f}× off)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "verdict": self.verdict}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def targets(m: Mapping[str, Any]) -> list[Target]:
    """The issue's targets from the run's medians ``m`` (see ``benchmarks.run.summarise`` for the keys)."""
    def get(*path: str) -> float | None:
        node: Any = m
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    ours_1, ref_1, noop_1 = get("load", "ours_1", "rps"), get("load", "reference_1", "rps"), get("load", "noop_1", "rps")
    ours_100, ref_100 = get("load", "ours_100", "rows_per_s"), get("load", "reference_100", "rows_per_s")
    cold_ours, cold_ref, cold_mlflow = (get("cold_start_s", k) for k in ("ours", "reference", "mlflow"))
    rss_ours, rss_ref = get("rss_mb", "ours"), get("rss_mb", "reference")
    t_on, t_off, t_ref = (get("training", k, "wall_s") for k in ("ours_logging_on", "ours_logging_off", "reference"))
    rmse_ours, rmse_ref = get("training", "ours_logging_on", "test_rmse"), get("training", "reference", "test_rmse")
    mlflow_s = get("training", "ours_logging_on", "mlflow_s")

    def fmt(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,.4g}{unit}"

    logging_diff = ratio(None if t_on is None or t_off is None else t_on - t_off, t_on)
    return [
        Target("single_vs_reference", "Single-record throughput vs reference", ratio(ours_1, ref_1), 10, True,
               detail=f"{fmt(ours_1)} vs {fmt(ref_1)} req/s"),
        Target("single_vs_noop", "Single-record throughput vs no-op route", ratio(ours_1, noop_1), 0.5, True,
               detail=f"{fmt(ours_1)} vs {fmt(noop_1)} req/s"),
        Target("p99_single", "p99 latency, single record, 8 connections", get("load", "ours_1", "p99_ms"), 10,
               False, unit=" ms", detail=f"reference {fmt(get('load', 'reference_1', 'p99_ms'), ' ms')}"),
        Target("batch_vs_reference", "100-record rows/s vs reference", ratio(ours_100, ref_100), 8, True,
               detail=f"{fmt(ours_100)} vs {fmt(ref_100)} rows/s"),
        Target("cold_vs_reference", "Cold start vs reference", ratio(cold_ours, cold_ref), 0.5, False,
               detail=f"{fmt(cold_ours, ' s')} vs {fmt(cold_ref, ' s')}"),
        Target("cold_vs_mlflow", "Cold start vs `mlflow models serve`", ratio(cold_ours, cold_mlflow), 0.15, False,
               detail=f"{fmt(cold_ours, ' s')} vs {fmt(cold_mlflow, ' s')}"),
        Target("memory_vs_reference", "Worker RSS at ready vs reference", ratio(rss_ours, rss_ref), 0.5, False,
               detail=f"{fmt(rss_ours, ' MB')} vs {fmt(rss_ref, ' MB')}"),
        Target("training_time_vs_reference", "Training wall time vs reference", ratio(t_on, t_ref), 0.5, False,
               detail=f"{fmt(t_on, ' s')} vs {fmt(t_ref, ' s')}"),
        Target("training_rmse_vs_reference", "Test RMSE vs reference (no worse)", ratio(rmse_ours, rmse_ref), 1.0,
               False, detail=f"{fmt(rmse_ours)} vs {fmt(rmse_ref)}"),
        # The whole price of logging: MLflow is never touched with logging off (medians of the reps).
        Target("logging_share", "MLflow logging share of study wall time", logging_diff, 0.05, False,
               unit="", detail=f"wall {fmt(t_on, ' s')} with logging vs {fmt(t_off, ' s')} without; "
                               f"{fmt(mlflow_s, ' s')} of it inside the logging calls"),
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip() if (done.stdout or done.stderr) else "?"


def machine() -> dict[str, Any]:
    """CPU model, core count, OS, Python, library versions and the load average (how busy the machine was)."""
    libs = {}
    for names in LIBRARIES:
        for name in names.split("|"):
            try:
                libs[name] = version(name)
                break
            except PackageNotFoundError:
                continue
        else:
            libs[names.split("|")[0]] = "not installed"
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version(), "libraries": libs, "wrk": _wrk_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _fmt_value(t: Target) -> str:
    if t.value is None:
        return "n/a"
    if t.unit == "":
        return f"{100 * t.value:.1f}%"
    return f"{t.value:.3g}{t.unit}"


def _fmt_limit(t: Target) -> str:
    sign = "≥" if t.at_least else "≤"
    limit = f"{100 * t.limit:g}%" if t.unit == "" else f"{t.limit:g}{t.unit}"
    return f"{sign} {limit}"


def targets_table(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown lines of a targets table, from targets as ``Target.to_json`` wrote them."""
    rows = [Target(**{k: v for k, v in t.items() if k not in ("passed", "verdict")}) for t in targets]
    lines = ["| Target | Measured | Goal | Result | Detail |", "|---|---|---|---|---|"]
    return lines + [f"| {t.title} | {_fmt_value(t)} | {_fmt_limit(t)} | {t.verdict} | {t.detail} |" for t in rows]


def markdown(results: Mapping[str, Any]) -> str:
    """The results as markdown: the targets table, the raw medians, and the machine."""
    lines = targets_table(results["targets"])
    m = results["measurements"]
    lines += ["", "| Server load (1 worker, 8 connections) | req/s | rows/s | p50 ms | p99 ms | req/s range |",
              "|---|---|---|---|---|---|"]
    for name, r in m.get("load", {}).items():
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['rows_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {r['rps_min']:,.0f}–{r['rps_max']:,.0f} |")
    spreads = {name: r["rps_max"] / r["rps_min"] for name, r in m.get("load", {}).items() if r["rps_min"] > 0}
    if spreads:
        noisy = max(spreads.values()) > NOISY_SPREAD
        lines += ["", "Spread of req/s across reps (max/min): " + ", ".join(f"{k} {v:.2f}×" for k, v in spreads.items())
                  + (f" — above {NOISY_SPREAD}×: the machine was busy, treat the ratios as rough." if noisy else ".")]
    if m.get("cold_start_s") or m.get("rss_mb"):
        lines += ["", "| Server | cold start s (median) | cold start range s | worker RSS MB |", "|---|---|---|---|"]
        for name in ("ours", "reference", "mlflow", "noop"):
            cold, spread, rss = m.get("cold_start_s", {}).get(name), m.get("cold_start_range_s", {}).get(name), \
                m.get("rss_mb", {}).get(name)
            if cold is None and rss is None:
                continue
            rng = "n/a" if not spread else f"{spread[0]:.2f}–{spread[1]:.2f}"
            lines.append(f"| {name} | {'n/a' if cold is None else f'{cold:.2f}'} | {rng} | "
                         f"{'n/a' if rss is None else f'{rss:.0f}'} |")
    if m.get("training"):
        lines += ["", "| Training | trials | wall s | test RMSE | MLflow s |", "|---|---|---|---|---|"]
        for name, r in m["training"].items():
            mlflow_s = r.get("mlflow_s")
            lines.append(f"| {name} | {r['n_trials']} | {r['wall_s']:.1f} | {r['test_rmse']:.4f} | "
                         f"{'—' if mlflow_s is None else f'{mlflow_s:.1f}'} |")
    mach, run = results["machine"], results["run"]
    libs = ", ".join(f"{k} {v}" for k, v in mach["libraries"].items())
    scaled = "" if run.get("reference_trials", 50) == 50 else " — CUT DOWN with --train-fraction, not the default study vs the spec's 50"
    lines += ["", f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['os']}, Python {mach['python']}, "
                  f"{mach['wrk']}; {libs}.",
              f"Run: {run['mode']} mode, {run['reps']} alternating rep(s) of {run['seconds']} s per load point, "
              f"training {run.get('ours_trials', '?')} trials (ours) vs {run.get('reference_trials', '?')} "
              f"(reference){scaled}; {run['total_s']:.0f} s in all; load average {run['load_before']} before, "
              f"{run['load_after']} after (1, 5, 15 min)."]
    return "\n".join(lines) + "\n"


class RunClock:
    """When a benchmark run started and the machine's load then: ``record`` gives the results' ``run`` section
    (duration, load before and after, date), so every result file says when and under what load it was made."""

    def __init__(self) -> None:
        self.started, self.load_before = time.perf_counter(), _load()

    def record(self, **fields: Any) -> dict[str, Any]:
        return {**fields, "total_s": round(time.perf_counter() - self.started, 1), "load_before": self.load_before,
                "load_after": _load(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def results_folder(folder: Path, option: str = "--results-dir", files: Sequence[str] = ()) -> Path:
    """``folder``, made if missing, and the ``files`` the benchmark will write in it checked: each benchmark calls
    this before its run, so a folder that cannot be made (under a file, read-only) or a results file that is a
    folder (or a FIFO, which would block the write) is one line at the start, not a traceback after minutes of
    measuring.

    Raises:
        UserError: the folder cannot be made, or one of ``files`` exists and is not a regular file.
    """
    from core.cli import UserError
    from core.files import is_special

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{option} {folder}: {err.strerror or err}") from None
    for name in files:
        if is_special(folder / name):
            raise UserError(f"{option} {folder}: {name} is not a regular file (a folder?), so the results could "
                            f"not be written to it")
    return folder


def write(results: Mapping[str, Any], folder: Path, stem: str = "latest") -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.md`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    return json_path, md_path
