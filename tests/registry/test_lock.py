"""Promotions are serialised by a lock built on the registry's atomic create of a registered model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from core import liveness
from core.cli import UserError
from registry import history
from registry import lock as lock_module
from registry.lock import _try_acquire, lock_name, promotion_lock
from registry.versions import Registry
from tests.registry.conftest import REPO, Store


def _registry(store: Store) -> Registry:
    return Registry(client=store.client(), uri=store.uri, name=store.name)


def test_the_lock_is_exclusive_and_released(store: Store) -> None:
    registry = _registry(store)
    with promotion_lock(registry):
        assert not _try_acquire(registry, lock_name(registry)), "a second holder must be refused"
    assert _try_acquire(registry, lock_name(registry)), "released on exit"
    registry.client.delete_registered_model(lock_name(registry))


def test_a_held_lock_makes_a_promotion_wait_then_fail_in_one_line(store: Store) -> None:
    registry = _registry(store)
    with promotion_lock(registry):
        started = time.monotonic()
        with pytest.raises(UserError, match="promotion lock of 'student-score-test' is held by"):
            with promotion_lock(registry, wait_s=0.6):
                pass
        assert time.monotonic() - started >= 0.6


def test_a_stale_lock_of_a_killed_promotion_is_broken(store: Store) -> None:
    registry = _registry(store)
    registry.client.create_registered_model(lock_name(registry), tags={"lock.holder": "ghost",
                                                                        "lock.since": f"{time.time() - 3600}"})
    with promotion_lock(registry, wait_s=1, stale_after_s=60):
        pass
    assert not registry.client.search_registered_models(f"name = '{lock_name(registry)}'")


@pytest.mark.parametrize("since", ["abc", "nan", "1e400", "-5"])
def test_a_lock_whose_time_was_edited_by_hand_is_stale_not_a_traceback(store: Store, since: str) -> None:
    registry = _registry(store)
    registry.client.create_registered_model(lock_name(registry), tags={"lock.holder": "ghost", "lock.since": since})
    with promotion_lock(registry, wait_s=1, stale_after_s=60):
        pass
    assert not registry.client.search_registered_models(f"name = '{lock_name(registry)}'")


@pytest.mark.parametrize("plan", ["not json", "[1]", '{"action": "promote"}', '{"action": "promote", "alias": "p", '
                                  '"previous_alias": "q", "to": "2", "id": "x", "event": 5}'])
def test_an_abandoned_plan_edited_by_hand_stops_in_one_line_and_the_lock_stays(store: Store, plan: str) -> None:
    registry = _registry(store)
    name = lock_name(registry)
    registry.client.create_registered_model(name, tags={"lock.holder": "ghost", "lock.since": "1", "lock.plan": plan})
    try:
        with pytest.raises(UserError, match=rf"left by ghost with a plan that cannot be read; .* '{name}' to go on$"):
            with promotion_lock(registry, wait_s=1, stale_after_s=60):
                pytest.fail("the lock must not be taken over with a plan nobody can finish")
        assert registry.client.get_registered_model(name).tags["lock.plan"] == plan, "left for a person to look at"
    finally:
        registry.client.delete_registered_model(name)  # as that person would: the store is shared with other tests


@pytest.mark.slow
def test_two_concurrent_promotions_are_serialised(store: Store) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    first, second = store.good
    procs = [subprocess.Popen([sys.executable, "-m", "registry.promote", *store.args("--version", v, "--force",
                                                                                     "--no-export")],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for v in (first, second)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]

    assert [code for code, _ in outcomes] == [0, 0], outcomes
    events = history.read(_registry(store))
    assert [e["#"] for e in events] == [1, 2], "two entries, neither overwritten"
    assert events[0]["from"] is None
    assert events[1]["from"] == events[0]["to"], "the second promotion saw the first one's result"
    aliases = store.aliases()
    assert aliases == {"production": str(events[1]["to"]), "previous": str(events[0]["to"])}, json.dumps(events)


def test_a_lock_judged_dead_is_not_deleted_once_another_process_has_taken_it_over(store: Store) -> None:
    # Given a dead holder's lock, judged dead by one process...
    registry = _registry(store)
    name = lock_name(registry)
    registry.client.create_registered_model(name, tags={"lock.holder": "ghost", "lock.owner": "elsewhere:1:1",
                                                        "lock.since": f"{time.time() - 3600}"})
    judged = dict(registry.client.get_registered_model(name).tags)
    # ...while another process took it over meanwhile (deleted the dead lock, created its own)
    registry.client.delete_registered_model(name)
    assert _try_acquire(registry, name)
    # When the first now releases the lock it judged dead
    lock_module._release(registry, name, judged["lock.owner"])
    # Then the living holder's lock is still there
    assert registry.client.get_registered_model(name).tags["lock.owner"] == str(liveness.me())
    registry.client.delete_registered_model(name)
