"""Owns the drift report people look at: one HTML page (plots embedded) and the figure it shows.

The figure has one panel per feature and one for the prediction: reference shares (training split, or the test
split's predictions) against the window's, over the reference's bins (numbers) or levels (categories), with the
panel's title in red when the column drifted and in orange for a data-quality alarm.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.profile import PREDICTION

COLOURS = {"drift": "#c0392b", "quality": "#d68910", "ok": "#1e8449", "not enough data": "#7f8c8d",
           "not captured": "#7f8c8d"}
VERDICT_COLOURS = {"drift": "#c0392b", "no drift": "#1e8449", "not enough data": "#7f8c8d"}


def _bars(ax, labels: list[str], reference: list[float], live: list[float]) -> None:  # noqa: ANN001
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], reference, width=0.4, label="reference", color="#95a5a6")
    ax.bar([x + 0.2 for x in xs], live, width=0.4, label="live", color="#2e86c1")
    ax.set_xticks(list(xs))
    # parse_math=False: matplotlib reads text between two "$" as TeX, so price levels "$" "$$" "$$$" stopped the job
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=6, parse_math=False)
    ax.tick_params(axis="y", labelsize=6)


def _edges_labels(edges: list[float]) -> list[str]:
    def fmt(v: float) -> str:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"
    return [f"≤{fmt(edges[0])}", *(f"≤{fmt(b)}" for b in edges[1:]), f">{fmt(edges[-1])}"]


def figure(summary: Mapping[str, Any], path: Path) -> Path:
    """Draw every column's reference vs live shares into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*summary["features"].items(), (PREDICTION, summary[PREDICTION])]
    per_row = 4
    rows = math.ceil(len(columns) / per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * 3.2, rows * 2.4), squeeze=False)
    for ax, (name, result) in zip(axes.flat, columns, strict=False):
        if "bins" in result:
            _bars(ax, _edges_labels(result["bins"]["edges"]), result["bins"]["reference"], result["bins"]["live"])
        elif "shares" in result:
            _bars(ax, result["shares"]["levels"], result["shares"]["reference"], result["shares"]["live"])
        else:
            ax.text(0.5, 0.5, result.get("status", "no data"), ha="center", va="center", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        score = result.get("wasserstein", result.get("jensen_shannon"))
        detail = "" if result.get("psi") is None else f"\nPSI {result['psi']:.2f}" + (
            "" if score is None else f", dist {score:.2f}")
        ax.set_title(f"{name}{detail}", fontsize=8, color=COLOURS.get(result.get("status", "ok"), "black"),
                     parse_math=False)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _cell(value: Any, fmt: str = "{:.3f}") -> str:
    return "–" if value is None else fmt.format(value)


def _row(name: str, r: Mapping[str, Any]) -> str:
    distance = r.get("wasserstein", r.get("jensen_shannon"))
    missing = r.get("missing_rate") or {}
    colour = COLOURS.get(r.get("status", ""), "black")
    reasons = "; ".join([*r.get("reasons", []), *r.get("quality", [])]) or ""
    return (f"<tr><td>{html.escape(name)}</td><td>{r.get('kind', '')}</td><td>{_cell(r.get('psi'))}</td>"
            f"<td>{_cell(distance)}</td><td>{_cell(missing.get('reference'), '{:.1%}')} → "
            f"{_cell(missing.get('live'), '{:.1%}')}</td><td>{_cell(r.get('out_of_range_share'), '{:.1%}')}</td>"
            f"<td style='color:{colour};font-weight:bold'>{html.escape(r.get('status', ''))}</td>"
            f"<td>{html.escape(reasons)}</td></tr>")


def write_html(summary: Mapping[str, Any], png: Path, path: Path) -> Path:
    """The report: verdict, alarms, the per-column table and the figure (embedded, so the file stands alone)."""
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    model, window = summary["model"], summary["window"]
    verdict = summary["verdict"]
    alarms = "".join(f"<li>{html.escape(a)}</li>" for a in summary["alarms"]) or "<li>none</li>"
    rows = "".join(_row(n, r) for n, r in summary["features"].items()) + _row(PREDICTION, summary[PREDICTION])
    t = summary["thresholds"]
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift: {html.escape(model['name'])} v{html.escape(str(model['version']))}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} th{{background:#f4f6f7}}
.verdict{{color:white;background:{VERDICT_COLOURS[verdict]};padding:4px 12px;border-radius:4px}}</style></head>
<body><h1>Drift report: {html.escape(model['name'])} version {html.escape(str(model['version']))}
<span class="verdict">{verdict}</span></h1>
<p>Window {html.escape(window['since'] or 'start')} to {html.escape(window['until'] or 'now')}:
{summary['records']} predicted records of this version; {summary['requests']} requests to every version,
{summary['refused_requests']} refused ({summary['refused_share']:.1%}). Minimum sample {summary['min_sample']} records.</p>
<h2>Alarms</h2><ul>{alarms}</ul>
<h2>Columns</h2>
<p>Drift: PSI ≥ {t['psi']}, or Wasserstein ≥ {t['wasserstein']} training SDs (numbers), or Jensen-Shannon
≥ {t['jensen_shannon']} (categories). Quality: missing rate up ≥ {t['missing_rate_change']:.0%}, values outside
the training range ≥ {t['out_of_range_share']:.0%}, refused requests ≥ {t['refused_share']:.0%}.</p>
<table><tr><th>column</th><th>kind</th><th>PSI</th><th>distance</th><th>missing</th><th>out of range</th>
<th>status</th><th>why</th></tr>{rows}</table>
<h2>Reference vs live</h2><img alt="reference vs live shares per column" src="data:image/png;base64,{image}">
</body></html>
"""
    path.write_text(text, encoding="utf-8")
    return path
