"""Owns the load test's picture: latency percentiles over time above offered, served and failed requests/s."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], path: Path) -> None:
    """Write a two-panel PNG of ``result``'s windows to ``path`` (matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = result["windows"]
    t = [w["t_s"] for w in windows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, constrained_layout=True)
    for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
        top.plot(t, [w[key] for w in windows], style, marker=".", label=key.split("_")[0])
    top.set_ylabel("latency of served requests (ms)")
    top.set_yscale("log")
    top.legend(loc="upper left")
    top.set_title(f"{result['meta']['profile']} against {result['meta']['target']}")
    bottom.plot(t, [w["offered_rps"] for w in windows], label="offered")
    bottom.plot(t, [w["served_rps"] for w in windows], label="served")
    failed = [w["offered_rps"] - w["served_rps"] for w in windows]
    bottom.bar(t, failed, width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 0.8, align="edge", alpha=0.4,
               color="tab:red", label="failed")
    knee_rps = result["knee"]["knee_rps"]
    if knee_rps is not None:
        bottom.axhline(knee_rps, color="grey", linestyle="--", linewidth=1, label=f"knee {knee_rps:g}/s")
    bottom.set_ylabel("requests/s")
    bottom.set_xlabel("seconds since start")
    bottom.legend(loc="upper left")
    fig.savefig(path, dpi=90)
    plt.close(fig)
