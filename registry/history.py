"""Owns the promotion history: one registered-model tag per event, ``history.000001`` onwards, holding JSON.

Keeping it in the registry (not a local file) means every machine that can promote sees the same history,
and it survives with the registry's own backups. Each event records who, when, the action, the version
moved from and to, why, and the gate's scores.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from datetime import UTC, datetime
from typing import Any

import click

from core.cli import UserError
from registry.versions import Registry, mlflow_errors

TAG_PREFIX = "history."
_NUMBERED = re.compile(re.escape(TAG_PREFIX) + r"[0-9]{1,9}")
COLUMNS = ("#", "when", "action", "decision", "from", "to", "who", "candidate_rmse", "production_rmse", "reason")


def who() -> str:
    """The person or CI actor making the change: ``$GITHUB_ACTOR`` in GitHub Actions, else the OS user."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a container user without a passwd entry
        return "unknown"


MAX_REASON = 1000  # the plan and the event both carry it; a registered model tag's value is VARCHAR(5000) in MLflow's SQL store


def check_reason(reason: str | None) -> str | None:
    """``reason`` as given, if it is one printable line of at most ``MAX_REASON`` characters.

    Raises:
        click.BadParameter: a newline or control character (it would draw rows of its own in ``--history``),
            or a reason too long for the registry to record.
    """
    if reason is not None and not reason.isprintable():
        raise click.BadParameter("must be one line of printable characters (no newline or control character)")
    # Counted as stored: the event is JSON with ASCII escapes, so "é" takes 6 characters of the tag, an emoji 12.
    if reason is not None and (stored := len(json.dumps(reason)) - 2) > MAX_REASON:
        raise click.BadParameter(f"is {stored:,} characters as the registry stores it (a non-ASCII character "
                                 f"takes 6 or 12); at most {MAX_REASON:,}")
    return reason


def now() -> str:
    """The current time as ISO 8601 UTC with second precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read(registry: Registry) -> list[dict[str, Any]]:
    """Every recorded event, oldest first, each with its sequence number under ``"#"``."""
    with mlflow_errors(f"reading the history of '{registry.name}'"):
        tags = registry.client.get_registered_model(registry.name).tags
    events = []
    # Only ``history.NNNNNN`` is ours: another tag that happens to start with "history." is somebody else's.
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    for key in sorted((k for k in tags if _NUMBERED.fullmatch(k)), key=lambda k: int(k.removeprefix(TAG_PREFIX))):
        try:
            event = json.loads(tags[key])
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict):  # edited by hand: shown as it is, never in the way of the next event
            event = {"action": "unreadable", "reason": tags[key][:60]}
        events.append({**event, "#": int(key.removeprefix(TAG_PREFIX))})
    return events


def rolled_back(events: list[dict[str, Any]]) -> set[str]:
    """The versions a rollback took production from that no later promotion or rollback moved it back to."""
    gone: set[str] = set()
    for event in events:  # oldest first; an event edited by hand lacks the keys and changes nothing
        gone.discard(str(event.get("to")))
        if event.get("action") == "rollback" and event.get("from") is not None:
            gone.add(str(event["from"]))
    return gone


def append(registry: Registry, event: dict[str, Any]) -> str:
    """Record one event under the next free sequence number; returns the tag key."""
    numbers = [e["#"] for e in read(registry)]
    number = max(numbers, default=0) + 1
    if number >= 10**9:  # past what ``read`` reads back: the entry would be lost, and each next one overwrite it
        raise UserError(f"the history of '{registry.name}' has an entry numbered {number - 1:,} (a tag edited by "
                        "hand?); nothing is recorded past 999,999,999: remove or renumber that tag")
    key = f"{TAG_PREFIX}{number:06d}"
    with mlflow_errors(f"recording history of '{registry.name}'"):
        registry.client.set_registered_model_tag(registry.name, key, json.dumps(event, sort_keys=True))
    return key


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    # A newline or an escape sequence in a hand-edited entry must not draw rows or colours of its own.
    return "".join(c if c.isprintable() else "?" for c in str(value))


def format_table(events: list[dict[str, Any]]) -> str:
    """A plain-text table, one event per line, for a terminal or a CI log."""
    if not events:
        return "no promotions recorded yet"
    rows = [list(COLUMNS)] + [[_cell(e.get(c)) for c in COLUMNS] for e in events]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)
