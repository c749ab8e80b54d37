"""SIGKILL between the steps of a promotion or an export: the registry stays one consistent story.

Each test kills a real ``python -m registry.promote`` right after one step (benchmarks/faults.py wraps the
step from outside), checks what the kill left (production valid, no half-written tarball), promotes again,
and checks the registry, history and tarball agree and nothing is left behind.
"""

from __future__ import annotations

import signal
import time

import pytest

from benchmarks import faults
from core.cli import UserError
from registry import promote
from registry.lock import lock_name, promotion_lock
from registry.versions import Registry
from tests.registry.conftest import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def promoted(store: Store) -> Store:
    """The first good version in production and exported: the state a second promotion starts from."""
    assert promote.main(store.args("--version", store.good[0], "--force")) == 0
    assert faults.problems(faults.registry_state(store.params_file)) == []
    return store


@pytest.mark.parametrize("point", faults.PROMOTE_POINTS)
def test_a_promotion_killed_at_any_step_is_finished_by_the_next(promoted: Store, point: str) -> None:
    first, second = promoted.good

    result = faults.promote_fault(promoted.params_file, second, point)

    assert result["killed"], f"the fault was not injected at {point}"
    assert result["after_kill_problems"] == [], faults.dumps(result)
    assert result["after_kill"]["aliases"]["production"] in (first, second), "production is always a version"
    assert result["next_exit"] == 0, faults.dumps(result)
    assert any("died" in line for line in result["next_said"]), "the next promotion says what it found"
    assert result["final_problems"] == [], faults.dumps(result)
    final = result["final"]
    assert final["aliases"] == {"production": second, "previous": first}
    assert [e["to"] for e in final["history"]] == [first, second], "exactly one entry per promotion"
    assert final["exported"] == second


@pytest.mark.parametrize("point", faults.PROMOTE_POINTS)
def test_a_promotion_stopped_by_ctrl_c_at_any_step_leaves_one_consistent_registry(promoted: Store, point: str
                                                                                  ) -> None:
    # Given production = first, when a promotion of the second is interrupted (SIGINT) right after a step,
    first, second = promoted.good

    result = faults.promote_interrupted(promoted.params_file, second, point)

    # then it exits as interrupted, and the registry already says one thing: no lock, production and previous
    # are what the history's last entry says (the change either happened whole or not at all).
    assert result["exit"] == 130, faults.dumps(result)
    after = result["after"]
    assert not after["locked"], faults.dumps(result)
    assert result["after_problems"] == [], faults.dumps(result)
    last = after["history"][-1]
    assert after["aliases"]["production"] == last["to"], faults.dumps(result)
    assert after["aliases"].get("previous") == last["from"], faults.dumps(result)
    assert [e["to"] for e in after["history"]] in ([first], [first, second]), faults.dumps(result)
    if after["aliases"]["production"] == second and point not in ("history-written", "mid-tarball", "tarball-written"):
        assert any("stopped part-way" in line for line in result["said"]), "it says what it made of the change"
    # and the next promotion has nothing to repair (at most the export it did not get to).
    assert promote.main(promoted.args("--version", second, "--force")) == 0
    assert faults.problems(faults.registry_state(promoted.params_file)) == []


def test_a_stop_while_finishing_a_dead_promotion_loses_nothing(promoted: Store) -> None:
    # Given a promotion killed right after it moved the aliases (its plan left on the lock, no history entry yet)
    first, second = promoted.good
    args = ["--params", str(promoted.params_file), "--version", second, "--force"]
    assert faults.run_killed("registry.promote", args, "alias-moved", promoted.root).returncode == -9
    # When the next promotion, finishing that plan, is stopped with Ctrl-C part-way through
    stopped = faults.run_killed("registry.promote", args, "recovering", promoted.root, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    # Then the plan was not lost with the lock it was taken over from: the one after finds everything in order,
    # with exactly one history entry per promotion
    assert promote.main(promoted.args("--version", second, "--force")) == 0
    final = faults.registry_state(promoted.params_file)
    assert faults.problems(final) == [], faults.dumps(final)
    assert [e["to"] for e in final["history"]] == [first, second], faults.dumps(final)


def test_an_export_killed_mid_write_leaves_the_old_tarball_whole(promoted: Store) -> None:
    result = faults.export_fault(promoted.params_file)

    assert result["killed"]
    assert result["after_kill"]["exported"] == promoted.good[0], "the previous tarball is untouched"
    assert result["after_kill"]["temp_files"], "the killed export did leave its temp file"
    assert result["next_exit"] == 0
    assert result["final"]["temp_files"] == [], "the next export removed it"


def test_a_lock_held_on_another_host_says_when_it_is_taken_for_dead(store: Store) -> None:
    registry = Registry(client=store.client(), uri=store.uri, name=store.name)
    registry.client.create_registered_model(lock_name(registry), tags={
        "lock.holder": "ci@builder-7 pid 4242", "lock.owner": "builder-7:4242:99", "lock.since": f"{time.time()}"})
    try:
        with pytest.raises(UserError, match=r"held by ci@builder-7 pid 4242 \(on another host\) since .*; it is "
                                            r"taken for dead in (89[0-9]|900) s"):
            with promotion_lock(registry, wait_s=0.3):
                pass
    finally:
        registry.client.delete_registered_model(lock_name(registry))
