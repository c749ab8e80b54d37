"""Owns the stopwatch a job uses to say where its seconds went, a part at a time (the train stage: MLflow's share)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any


class Stopwatch:
    """Adds up the seconds spent inside its ``part(name)`` blocks, per part: what logging to MLflow costs the train stage.

    Parts do not nest (that would count seconds twice); one thread times them (Optuna's callbacks come on it).
    """

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self._open: str | None = None

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        if self._open is not None:
            raise RuntimeError(f"stopwatch part {name!r} opened inside {self._open!r}")
        self._open, started = name, time.perf_counter()
        try:
            yield
        finally:
            self._open = None
            self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - started

    def timed(self, name: str, callback: Callable[..., None]) -> Callable[..., None]:
        def wrapper(*args: Any) -> None:
            with self.part(name):
                callback(*args)
        return wrapper
