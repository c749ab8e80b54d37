"""Owns mutual exclusion between promotions, built on the registry's own atomic operation.

Creating a registered model is atomic in every MLflow backend (a unique name in the SQL store, whether
SQLite or PostgreSQL behind a team server): exactly one of two concurrent creators succeeds. A promotion
or rollback therefore holds a lock model, ``<name>.promotion-lock``, while it reads production, gates, moves
the aliases and appends to the history, and deletes it afterwards. A lock older than ``stale_after_s``
(its holder was killed) is broken, so a crash never blocks releases for good.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from core.cli import UserError
from registry import history
from registry.versions import Registry

POLL_S = 0.25


def lock_name(registry: Registry) -> str:
    return f"{registry.name}.promotion-lock"


def _try_acquire(registry: Registry, name: str) -> bool:
    holder = f"{history.who()}@{socket.gethostname()} pid {os.getpid()}"
    try:
        registry.client.create_registered_model(
            name, tags={"lock.holder": holder, "lock.since": f"{time.time():.3f}"},
            description=f"held while a promotion of '{registry.name}' runs; deleted when it ends")
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return False
        raise UserError(f"taking the promotion lock: {str(err.message).splitlines()[0]}") from None
    return True


def _holder(registry: Registry, name: str) -> tuple[str, float] | None:
    try:
        tags = registry.client.get_registered_model(name).tags
    except MlflowException:
        return None  # released between our attempt and this look
    return tags.get("lock.holder", "unknown"), float(tags.get("lock.since", "0") or 0)


def _release(registry: Registry, name: str) -> None:
    try:
        registry.client.delete_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"releasing the promotion lock: {str(err.message).splitlines()[0]}") from None


@contextmanager
def promotion_lock(registry: Registry, *, wait_s: float = 120.0, stale_after_s: float = 900.0) -> Iterator[None]:
    """Hold the registry-wide promotion lock of ``registry.name`` for the duration of the block.

    Raises:
        UserError: another promotion held the lock for all of ``wait_s``.
    """
    name = lock_name(registry)
    deadline = time.monotonic() + wait_s
    while not _try_acquire(registry, name):
        held = _holder(registry, name)
        if held is not None and time.time() - held[1] > stale_after_s:
            _release(registry, name)  # its holder died mid-promotion; the aliases were moved or not, atomically
            continue
        if time.monotonic() > deadline:
            who = held[0] if held else "another promotion"
            raise UserError(f"the promotion lock of '{registry.name}' is held by {who}; try again later")
        time.sleep(POLL_S)
    try:
        yield
    finally:
        _release(registry, name)
