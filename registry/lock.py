"""Owns mutual exclusion between promotions, built on the registry's own atomic operation.

Creating a registered model is atomic in every MLflow backend (a unique name in the SQL store, whether
SQLite or PostgreSQL behind a team server): exactly one of two concurrent creators succeeds. A promotion
or rollback therefore holds a lock model, ``<name>.promotion-lock``, while it reads production, gates, moves
the aliases, appends to the history and exports, and deletes it afterwards. Before it changes anything
the holder writes its plan on the lock (``Lock.record``), so that whoever finds the lock abandoned can
finish or undo that change (``registry.recovery``).

The lock names its owner (``core.liveness``): a lock whose owner died on this host is taken over at once;
another host's is taken for dead ``stale_after_s`` after it was taken. A lock held by a live promotion is
waited for, and the refusal says who holds it, since when, and when it would be taken for dead.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException

from core import liveness
from core.cli import UserError
from registry import history
from registry.versions import Registry

POLL_S = 0.25
PLAN_TAG = "lock.plan"


def lock_name(registry: Registry) -> str:
    return f"{registry.name}.promotion-lock"


@dataclass
class Lock:
    """The held lock: where to write the plan, and the plan of a dead holder it replaced (if any)."""

    registry: Registry
    name: str
    abandoned: dict[str, Any] | None = None
    abandoned_by: str = ""
    plans: list[dict[str, Any]] = field(default_factory=list)
    settled: bool = True  # False from ``record`` until ``done``: the registry may say two things meanwhile

    def record(self, plan: dict[str, Any]) -> None:
        """Write what this promotion is about to change, before it changes it."""
        try:
            self.registry.client.set_registered_model_tag(self.name, PLAN_TAG, json.dumps(plan, sort_keys=True))
        except MlflowException as err:
            raise UserError(f"recording the promotion plan: {str(err.message).splitlines()[0]}") from None
        self.plans.append(plan)
        self.settled = False

    def done(self) -> None:
        """The plan's aliases and history entry are written: the registry says one thing again."""
        self.settled = True


def _try_acquire(registry: Registry, name: str) -> bool:
    owner = liveness.me()
    holder = f"{history.who()}@{owner.host} pid {owner.pid}"
    try:
        registry.client.create_registered_model(
            name, tags={"lock.holder": holder, "lock.owner": str(owner), "lock.since": f"{time.time():.3f}"},
            description=f"held while a promotion of '{registry.name}' runs; deleted when it ends")
    except MlflowException as err:
        # Taken, or taken and released at this instant: MLflow's SQL store looks the name up to word "already
        # exists", and finds it gone (RESOURCE_DOES_NOT_EXIST). Either way, not ours this time: try again.
        if err.error_code in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
            return False
        raise UserError(f"taking the promotion lock: {str(err.message).splitlines()[0]}") from None
    return True


def _held(registry: Registry, name: str) -> dict[str, str] | None:
    try:
        return dict(registry.client.get_registered_model(name).tags)
    except MlflowException:
        return None  # released between our attempt and this look


def _release(registry: Registry, name: str, owner: str | None) -> None:
    """Delete the lock if ``owner`` (its ``lock.owner`` tag) still holds it: never one taken since by another.

    MLflow has no conditional delete, so a lock taken over in the instant between the look and the delete is
    still lost; the look closes the wide window (a dead holder's lock judged, then deleted seconds later)."""
    tags = _held(registry, name)
    if tags is None or tags.get("lock.owner") != owner:
        return
    try:
        registry.client.delete_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"releasing the promotion lock: {str(err.message).splitlines()[0]}") from None


def _since(tags: dict[str, str]) -> float:
    """When the lock was taken (epoch seconds); 0, the long past, when its tag was edited into something else."""
    try:
        since = float(tags.get("lock.since", "0") or 0)
    except ValueError:
        return 0.0
    return since if 0 <= since < 2**40 else 0.0  # no NaN, no infinity, nothing time.gmtime cannot show


# What finishing an abandoned plan reads (registry/recovery.py); a plan without them cannot be finished.
PLAN_KEYS = frozenset({"action", "alias", "previous_alias", "to", "id", "event"})


def _abandoned_plan(registry: Registry, name: str, tags: dict[str, str]) -> dict[str, Any] | None:
    """The plan a dead holder left, or None if it left none.

    Raises:
        UserError: the plan cannot be read (edited by hand): the lock is left for a person to look at.
    """
    text = tags.get(PLAN_TAG)
    if not text:
        return None
    try:
        plan = json.loads(text)
    except ValueError:
        plan = None
    if not isinstance(plan, dict) or not PLAN_KEYS <= plan.keys() or not isinstance(plan["event"], dict):
        raise UserError(f"the promotion lock of '{registry.name}' was left by {tags.get('lock.holder', 'unknown')} "
                        f"with a plan that cannot be read; check the aliases (--history), then delete the "
                        f"registered model '{name}' to go on")
    return plan


def _dead(tags: dict[str, str], stale_after_s: float) -> bool:
    owner = liveness.parse(tags.get("lock.owner"))
    living = liveness.alive(owner) if owner is not None else None
    if living is not None:
        return not living
    return time.time() - _since(tags) > stale_after_s


def _busy(registry: Registry, tags: dict[str, str] | None, stale_after_s: float) -> str:
    if tags is None:
        return f"the promotion lock of '{registry.name}' is held by another promotion; try again"
    since = _since(tags)
    owner = liveness.parse(tags.get("lock.owner"))
    state = ("owner unknown" if owner is None else "alive" if liveness.alive(owner) else "on another host")
    taken = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    if state == "alive":
        return (f"the promotion lock of '{registry.name}' is held by {tags.get('lock.holder', 'unknown')} "
                f"({state}) since {taken}; try again when it has finished")
    expires = since + stale_after_s - time.time()
    return (f"the promotion lock of '{registry.name}' is held by {tags.get('lock.holder', 'unknown')} ({state}) "
            f"since {taken}; it is taken for dead in {max(expires, 0):.0f} s if it does not finish first")


@contextmanager
def promotion_lock(registry: Registry, *, wait_s: float = 120.0, stale_after_s: float = 900.0) -> Iterator[Lock]:
    """Hold the registry-wide promotion lock of ``registry.name`` for the duration of the block.

    Raises:
        UserError: a live promotion held the lock for all of ``wait_s``; the message says who and until when.
    """
    name = lock_name(registry)
    deadline = time.monotonic() + wait_s
    lock = Lock(registry, name)
    try:
        while not _try_acquire(registry, name):
            tags = _held(registry, name)
            if tags is not None and _dead(tags, stale_after_s):
                # Its holder died mid-promotion: keep its plan for the caller to finish, then take the lock over.
                lock.abandoned = _abandoned_plan(registry, name, tags)
                lock.abandoned_by = tags.get("lock.holder", "unknown")
                _release(registry, name, tags.get("lock.owner"))
                continue
            if time.monotonic() > deadline:
                raise UserError(_busy(registry, tags, stale_after_s))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        # Ctrl-C as the lock was being taken: if it was, it is ours and nothing was planned under it yet.
        _release(registry, name, str(liveness.me()))
        raise
    try:
        if lock.abandoned is not None:
            # Taking over deleted the dead holder's lock: its plan goes on ours, so that a stop while finishing
            # it (Ctrl-C, a kill) leaves it for the next promotion instead of losing it.
            lock.record(lock.abandoned)
        yield lock
    except BaseException:
        # Ctrl-C, a CI job's cancel or an error between two writes: made consistent now, not left to the next.
        if not lock.settled and not _settle(lock):
            raise  # the lock keeps the plan; the next promotion or rollback finishes it
        _release(registry, name, str(liveness.me()))
        raise
    _release(registry, name, str(liveness.me()))


def _settle(lock: Lock) -> bool:
    """Finish or undo a plan this process stopped part-way through; whether the registry is consistent now.

    The tarball is left as it is: a stopped command should not start an export; ``promote`` says when the
    bundle lags production ("nothing to do but the export").
    """
    from registry import recovery  # recovery exports through registry.export, which needs no lock

    plan = lock.plans[-1]
    try:
        said = recovery.finish(lock.registry, {**plan, "export": None}, "this process", how="which stopped part-way")
    except (UserError, MlflowException) as err:
        print(f"the {plan['action']} stopped part-way and could not be made consistent now ({err}); the lock "
              f"keeps its plan and the next promote or rollback finishes it", file=sys.stderr)
        return False
    print(said, file=sys.stderr)
    return True
