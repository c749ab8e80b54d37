"""Owns the time window a monitoring job reads: ``--since``/``--until``/``--days`` as UTC times, and the one form
of capture time (``serving/contract.py``'s ``capture_time``) that is compared with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from core.cli import UserError
from serving import contract

CAPTURE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)


def parse_time(text: str, option: str) -> datetime:
    """``YYYY-MM-DD`` or an ISO 8601 time (UTC unless it says otherwise).

    Raises:
        UserError: not a date or time.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} must be a date (YYYY-MM-DD) or an ISO 8601 time, got {text!r}") from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in the year 0 in UTC
        raise UserError(f"{option} {text!r} is outside the dates there are once in UTC") from None


@dataclass(frozen=True)
class Window:
    """``since`` (inclusive) to ``until`` (exclusive), in UTC; None is open-ended."""

    since: datetime | None
    until: datetime | None

    @classmethod
    def of(cls, since: str | None, until: str | None, *, default_days: float | None) -> Window:
        """From the command line: ``until`` defaults to now, ``since`` to ``default_days`` before it (or open)."""
        end = parse_time(until, "--until") if until else datetime.now(UTC)
        if since or default_days is None:
            start = parse_time(since, "--since") if since else None
        else:
            try:
                start = end - timedelta(days=default_days)
            except OverflowError:  # a --days reaching before year 1
                raise UserError(f"--days {default_days:g} reaches before the first date there is") from None
            if start >= end:  # timedelta rounds to whole microseconds
                raise UserError(f"--days {default_days:g} is shorter than a microsecond: the window is empty")
        if start is not None and start >= end:
            raise UserError(f"--since ({start:%Y-%m-%dT%H:%M:%SZ}) must be before --until ({end:%Y-%m-%dT%H:%M:%SZ})")
        return cls(start, end)

    @cached_property
    def _texts(self) -> tuple[str | None, str | None]:
        """The bounds as capture times, written once per window rather than once per record read."""
        return tuple(None if moment is None else contract.capture_time(moment.timestamp())
                     for moment in (self.since, self.until))

    def contains(self, time_text: str) -> bool:
        """Whether a capture record's ``time`` (text that ``is_capture_time``, so it sorts as time) falls inside."""
        since, until = self._texts
        return (since is None or time_text >= since) and (until is None or time_text < until)

    def days(self) -> tuple[str | None, str | None]:
        """The first and last ``dt=`` day that can hold records of the window."""
        # isoformat, not strftime: "%Y" writes the year 300 as "300", which sorts after "2025"
        last = None if self.until is None else (self.until - timedelta(microseconds=1)).date().isoformat()
        return (None if self.since is None else self.since.date().isoformat()), last

    def bounds(self) -> dict[str, str | None]:
        """``{"since": ..., "until": ...}`` as capture times (None where open)."""
        since, until = self._texts
        return {"since": since, "until": until}

    def label(self) -> str:
        bounds = self.bounds()
        return f"{bounds['since'] or 'start'}..{bounds['until'] or 'now'}"


def is_capture_time(value: Any) -> bool:
    """Whether ``value`` is a capture time as the contract writes it (``2026-12-01T15:04:05.123Z``), the only form
    that sorts as text in time order: "2025-12-01 10:00", an offset or a month 13 would land in another window."""
    if not (isinstance(value, str) and CAPTURE_TIME.fullmatch(value)):
        return False
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True
