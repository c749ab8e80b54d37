"""Owns the load test's analysis: rates, latency percentiles and errors over time, the knee, and the outputs.

A row is ``[start_s, latency_s, status, origin, step]`` (``capacity/engine.py``). Latency percentiles are over
the requests that got a prediction (what a served caller waited); errors are counted by origin
(``capacity/classify.py``). Errors or p99 start to climb between the last good step's offered rate and the
first climbing step's; the knee is reported as the midpoint of the two (so a ramp's step size bounds its
error), with both ends. A step that climbs and is followed by a good one is reported as recovered, not as the
knee: a serverless endpoint starting (cold) or scaling out. A step climbs when more than ``ERROR_SHARE`` of its
requests fail, or its p99 is above both twice the p99 of the quietest step (the lowest p99 of a step with at
least ``MIN_SERVED`` served: unloaded and warm) and that p99 plus ``P99_MARGIN_S``. The service time is likewise
the lowest median of such a step.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from capacity.classify import ERRORS, OK
from capacity.profiles import Step
from core.files import check_writable_folder, replace_atomically

ERROR_SHARE = 0.05
P99_MARGIN_S = 0.1
MAX_WINDOWS = 60
MIN_SERVED = 5


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _summary(rows: list[list[Any]], seconds: float) -> dict[str, Any]:
    served = [row[1] for row in rows if row[3] == OK]
    errors = Counter(row[3] for row in rows if row[3] != OK)
    ms = {f"p{q}_ms": None if (v := percentile(served, q)) is None else round(v * 1000, 1) for q in (50, 95, 99)}
    return {
        "requests": len(rows),
        "offered_rps": round(len(rows) / seconds, 2) if seconds else 0.0,
        "served_rps": round(len(served) / seconds, 2) if seconds else 0.0,
        **ms,
        "error_share": round(sum(errors.values()) / len(rows), 4) if rows else 0.0,
        "errors": dict(sorted(errors.items())),
    }


def windows(rows: list[list[Any]], duration_s: float) -> list[dict[str, Any]]:
    """The run cut into equal windows of at least a second (at most ``MAX_WINDOWS``), by request start.

    The last window is what is left of the duration, and its rates are per second of that: divided by a whole
    window's width, a 40.5 s run's last half second read as half the rate it offered.
    """
    width = max(1.0, duration_s / MAX_WINDOWS)
    # A duration that is a whole number of windows must not gain a last one a rounding error wide.
    count = max(1, math.ceil(duration_s / width - 1e-9))
    buckets: list[list[list[Any]]] = [[] for _ in range(count)]
    for row in rows:
        buckets[min(count - 1, int(row[0] // width))].append(row)
    seconds = [width] * (count - 1) + [max(duration_s - (count - 1) * width, 0.0) or width]
    return [{"t_s": round(i * width, 2), **_summary(bucket, seconds[i])} for i, bucket in enumerate(buckets)]


def quietest(step_summaries: list[dict[str, Any]], key: str) -> float | None:
    """The lowest ``key`` over steps with at least ``MIN_SERVED`` served: the chain unloaded and warm."""
    values = [s[key] for s in step_summaries
              if s[key] is not None and s["served_rps"] * s["seconds"] >= MIN_SERVED]
    return min(values) if values else None


def _climb(summary: dict[str, Any], base: float | None) -> str | None:
    """Why ``summary``'s step climbs (errors or p99 over the quiet base), or None when it is good."""
    if summary["requests"] and summary["error_share"] > ERROR_SHARE:
        return f"errors {summary['error_share']:.1%} of requests"
    if base is not None and summary["p99_ms"] is not None and \
            summary["p99_ms"] > max(2 * base, base + P99_MARGIN_S * 1000):
        return f"p99 {summary['p99_ms']:.0f} ms against {base:.0f} ms at the start"
    return None


def knee(step_summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Where errors or p99 start to climb for good: the last good step's offered rate, and the reason at the next.

    A step that climbs and is followed by a good one at a higher rate is not the knee: a serverless endpoint
    climbs while it starts (a cold start in the first step) or adds concurrency, then serves the higher rate.
    Such steps are listed under ``recovered``; the knee is the first step from which every later step climbs.
    When only the final step climbs, nothing after it says whether it would have recovered: ``lasting`` is False.
    """
    base = quietest(step_summaries, "p99_ms")
    reasons = [_climb(summary, base) for summary in step_summaries]
    start = len(reasons)
    while start and reasons[start - 1]:
        start -= 1
    recovered = [{"step": s["step"], "offered_rps": s["offered_rps"], "reason": r}
                 for s, r in zip(step_summaries[:start], reasons[:start], strict=True) if r]
    last_good = step_summaries[start - 1] if start else None
    good = last_good["offered_rps"] if last_good else None
    if start == len(step_summaries):
        return {"knee_rps": None, "last_good_rps": good, "climbs_at_rps": None,
                "reason": "not reached: no step climbed for good", "recovered": recovered, "lasting": None}
    climbs = step_summaries[start]
    return {"knee_rps": None if good is None else round((good + climbs["offered_rps"]) / 2, 2),
            "last_good_rps": good, "climbs_at_rps": climbs["offered_rps"], "reason": reasons[start],
            "recovered": recovered, "lasting": start < len(step_summaries) - 1}


def analyse(rows: list[list[Any]], steps: list[Step], meta: dict[str, Any]) -> dict[str, Any]:
    """The whole result, as written to JSON."""
    duration = sum(step.seconds for step in steps)
    by_step = []
    for index, step in enumerate(steps):
        mine = [row for row in rows if row[4] == index]
        by_step.append({"step": index, "target_rps": step.rps, "seconds": step.seconds,
                        **_summary(mine, step.seconds)})
    quiet_p50 = quietest(by_step, "p50_ms")
    return {
        "meta": meta,
        "total": _summary(rows, duration),
        "service_time_s": None if quiet_p50 is None else quiet_p50 / 1000,
        "peak_served_rps": max((s["served_rps"] for s in by_step), default=0.0),
        "knee": knee(by_step) if meta.get("profile", "ramp") == "ramp" else {
            "knee_rps": None, "last_good_rps": None, "climbs_at_rps": None,
            "reason": "not measured: only a ramp climbs through rates", "recovered": [], "lasting": None},
        "steps": by_step,
        "windows": windows(rows, duration),
    }


def knee_sentence(result: dict[str, Any]) -> str:
    """One line: the knee, where it climbs and why, the quiet service time and the most served."""
    found = result["knee"]
    if found["climbs_at_rps"] is None:
        head = found["reason"]
    elif found["knee_rps"] is None:
        head = f"below the first step: it climbs at {found['climbs_at_rps']:g} requests/s ({found['reason']})"
    else:
        head = (f"about {found['knee_rps']:g} requests/s offered: fine at {found['last_good_rps']:g}, climbing "
                f"at {found['climbs_at_rps']:g} ({found['reason']})")
    if found.get("lasting") is False:  # results written before ``lasting`` existed have no such key
        head += ", in the final step only: a longer ramp would tell whether the climb lasts"
    # Results written before ``recovered`` existed have no such key.
    passed = "".join(f"; step {r['step']} at {r['offered_rps']:g}/s climbed and recovered ({r['reason']}: "
                     "a start or scale-out, not the knee)" for r in found.get("recovered", []))
    service = result["service_time_s"]
    quiet = "n/a" if service is None else f"{service * 1000:.0f} ms"
    return f"**Knee:** {head}{passed}. Service time (quietest step's median): {quiet}; most served: " \
           f"{result['peak_served_rps']:g} requests/s."


def markdown(result: dict[str, Any]) -> str:
    """The result as markdown: what ran, the knee, a table per step, errors by origin."""
    meta = result["meta"]
    lines = [
        f"Load test `{meta['profile']}` against {meta['target']}: {result['total']['requests']} requests in "
        f"{sum(s['seconds'] for s in result['steps']):.0f} s.",
        "",
        knee_sentence(result),
        "",
        "| step | target rps | offered rps | served rps | p50 ms | p95 ms | p99 ms | errors | by origin |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in result["steps"]:
        origins = ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "-"
        cells = [s["step"], f"{s['target_rps']:g}", f"{s['offered_rps']:g}", f"{s['served_rps']:g}",
                 *("-" if s[k] is None else f"{s[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                 f"{s['error_share']:.1%}", origins]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    totals = result["total"]["errors"]
    lines += ["", "Errors by origin (whole run): "
              + (", ".join(f"{k} {totals[k]}" for k in ERRORS if k in totals) or "none") + "."]
    return "\n".join(lines) + "\n"


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """Where ``write`` puts ``name``.json, .md and .png, checked before a run so that its end cannot fail on them.

    Creates ``out_dir``. Raises OSError (the folder cannot be made or written) or ValueError (``name`` is not a
    plain file name, or an output is a folder).
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"--name must be a plain file name, got {name!r}")
    check_writable_folder(out_dir)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    for path in paths.values():
        if path.is_dir():
            raise ValueError(f"{path} is a folder")
    return paths


def write(result: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """Write ``name``.json, .md and .png into ``out_dir``; returns their paths.

    The figure is drawn to a temp file first and each file replaces its old self whole, so a failure leaves the
    previous set (which ``make advise`` reads) as it was, not a new JSON beside an old figure.
    """
    from capacity.plot import plot

    paths = output_paths(out_dir, name)
    fd, figure = tempfile.mkstemp(prefix=f".{name}.", suffix=".png", dir=out_dir)
    os.close(fd)
    try:
        plot(result, Path(figure))
        replace_atomically(paths["json"], (json.dumps(result, indent=2) + "\n").encode("utf-8"))
        replace_atomically(paths["md"], markdown(result).encode("utf-8"))
        os.replace(figure, paths["png"])
    except BaseException:
        Path(figure).unlink(missing_ok=True)
        raise
    return paths
