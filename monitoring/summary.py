"""Owns the drift job's markdown summary: ``python -m monitoring.summary summary.json`` (a CI job summary).

Prints the verdict, the window, the alarms and a table of every column's scores; a missing or unreadable
summary (the job failed before writing one) is said in one line, so the job summary never stays empty.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.files import is_special


def _score(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as markdown."""
    model, window = summary.get("model") or {}, summary.get("window") or {}
    lines = [f"### Drift: {model.get('name', '?')} version {model.get('version') or '–'}: **{summary['verdict']}**",
             "", f"Window {window.get('since') or 'start'} to {window.get('until') or 'now'}: "
             f"{summary.get('records', 0)} predicted records, {summary.get('refused_requests', 0)} refused requests.",
             ""]
    if summary.get("alarms"):
        lines += ["Alarms:", "", *(f"- {alarm}" for alarm in summary["alarms"]), ""]
    if "features" in summary:
        lines += ["| column | kind | PSI | distance | status |", "|---|---|---|---|---|"]
        for name, r in [*summary["features"].items(), ("prediction", summary["prediction"])]:
            distance = r.get("wasserstein", r.get("jensen_shannon"))
            lines.append(f"| {name} | {r.get('kind', '')} | {_score(r.get('psi'))} | {_score(distance)} | "
                         f"{r.get('status', '')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown of the summary file named by the one argument; 0 even without one (the step reports)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(f"usage: python -m monitoring.summary SUMMARY_JSON\n\n{__doc__.splitlines()[0]}")
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m monitoring.summary SUMMARY_JSON", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        if is_special(path):  # a FIFO would wait for a writer forever
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        print(markdown(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        print(f"### Drift\n\nNo drift summary at {args[0]} ({type(err).__name__}): the drift step failed before "
              f"writing one; see its log.\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
