"""Rollback and the promotion history, kept as registered-model tags in a real MLflow store."""

from __future__ import annotations

import json

import pytest

from core.cli import UserError
from registry import promote
from serving import bundle

# Every test here uses the session's real training and MLflow store.
pytestmark = pytest.mark.slow


def _promote_both(store) -> tuple[str, str]:
    first, second = store.good
    assert promote.main(store.args("--version", first, "--no-export", "--reason", "first")) == 0
    assert promote.main(store.args("--version", second, "--force", "--no-export", "--reason", "second")) == 0
    return first, second


def test_rollback_swaps_production_and_previous(store, capsys):
    first, second = _promote_both(store)
    code = promote.main(store.args("--rollback", "--no-export", "--reason", "bad latency"))
    assert code == 0, capsys.readouterr().err
    assert store.aliases() == {"production": first, "previous": second}


def test_rollback_twice_returns_to_the_start(store):
    first, second = _promote_both(store)
    assert promote.main(store.args("--rollback", "--no-export")) == 0
    assert promote.main(store.args("--rollback", "--no-export")) == 0
    assert store.aliases() == {"production": second, "previous": first}


def test_rollback_exports_the_restored_version(store):
    first, _ = _promote_both(store)
    assert promote.main(store.args("--rollback")) == 0
    unpacked = bundle.unpack(store.root / "dist" / "model.tar.gz", store.root / "dist" / "check")
    assert bundle.verify(unpacked)["version"] == first


def test_rollback_dry_run_changes_nothing(store, capsys):
    _promote_both(store)
    before = store.snapshot()
    assert promote.main(store.args("--rollback", "--dry-run")) == 0
    assert "dry run: would move @production" in capsys.readouterr().out
    assert store.snapshot() == before


def test_history_records_each_promotion_and_rollback(store, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "octo-releaser")
    first, second = _promote_both(store)
    assert promote.main(store.args("--rollback", "--no-export", "--reason", "bad latency")) == 0
    tags = store.client().get_registered_model(store.name).tags
    events = [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith("history."))]
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("promote", None, first), ("promote", first, second), ("rollback", second, first)]
    assert [e["reason"] for e in events] == ["first", "second", "bad latency"]
    assert {e["who"] for e in events} == {"octo-releaser"}
    assert events[0]["candidate_rmse"] > 0 and events[0]["production_rmse"] is None
    assert events[1]["decision"] == "forced"
    assert all(e["when"].endswith("Z") for e in events)
    rollback = events[2]
    assert rollback["decision"] == "rollback"
    assert rollback["candidate_rmse"] > 0 and rollback["production_rmse"] > 0, "both scored on today's data"


def test_gated_promotion_records_both_scores_in_history(store):
    worse, better = sorted(store.good, key=lambda v: -float(
        store.client().get_model_version(store.name, v).tags["test_rmse"]))
    assert promote.main(store.args("--version", worse, "--no-export")) == 0
    assert promote.main(store.args("--version", better, "--no-export")) == 0
    tags = store.client().get_registered_model(store.name).tags
    last = json.loads(tags[max(k for k in tags if k.startswith("history."))])
    assert last["decision"] == "accepted"
    assert last["candidate_rmse"] < last["production_rmse"]


def test_history_command_prints_a_table(store, capsys):
    first, second = _promote_both(store)
    capsys.readouterr()
    assert promote.main(store.args("--history")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["#", "when", "action", "decision", "from", "to"]
    assert len(lines) == 3
    # The second was forced past the gate, and the table says so (the tags always did).
    assert lines[2].split()[2:6] == ["promote", "forced", first, second]
    assert lines[2].rstrip().endswith("second")


def test_history_when_empty(store, capsys):
    assert promote.main(store.args("--history")) == 0
    assert "no promotions recorded yet" in capsys.readouterr().out


def test_failed_promotion_is_not_in_history(store):
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    promote.main(store.args("--version", store.weak, "--no-export"))
    tags = store.client().get_registered_model(store.name).tags
    assert sum(k.startswith("history.") for k in tags) == 1


def test_history_tags_edited_by_hand_neither_break_history_nor_the_next_promotion(store, capsys):
    # Given a promotion on record, then tags someone wrote by hand under the history prefix
    first, second = store.good
    assert promote.main(store.args("--version", first, "--no-export", "--reason", "first")) == 0
    client = store.client()
    client.set_registered_model_tag(store.name, "history.notes", "{}")  # not ours: not a sequence number
    client.set_registered_model_tag(store.name, "history.000002", "[1, 2]")  # ours, but not an event
    client.set_registered_model_tag(store.name, "history.000003", json.dumps({"#": "x", "action": "promote"}))
    capsys.readouterr()
    # When the history is shown and the next promotion recorded
    assert promote.main(store.args("--history")) == 0, capsys.readouterr().err
    shown = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in shown[1:]] == ["1", "2", "3"] and "unreadable" in shown[2]
    assert promote.main(store.args("--version", second, "--force", "--no-export", "--reason", "second")) == 0
    # Then it goes after them, with the aliases it moved
    tags = client.get_registered_model(store.name).tags
    assert json.loads(tags["history.000004"])["to"] == second
    assert store.aliases() == {"production": second, "previous": first}


def test_rollback_is_not_blocked_by_data_it_cannot_score(store, capsys):
    # Given two promotions, and then the data file gone (or a version that cannot score it)
    first, second = _promote_both(store)
    store.params.data.path.rename(store.params.data.path.with_suffix(".away"))
    try:
        # When production is rolled back in an emergency
        code = promote.main(store.args("--rollback", "--reason", "bad answers"))
    finally:
        store.params.data.path.with_suffix(".away").rename(store.params.data.path)
    # Then it happens, says the scores were not taken, and the history records none
    err = capsys.readouterr().err
    assert code == 0, err
    assert "not scored on today's data" in err
    assert store.aliases() == {"production": first, "previous": second}
    tags = store.client().get_registered_model(store.name).tags
    last = json.loads(tags[max((k for k in tags if k.startswith("history.")), key=lambda k: int(k.split(".")[1]))])
    assert (last["action"], last["candidate_rmse"], last["production_rmse"]) == ("rollback", None, None)


def test_history_is_read_in_number_order_and_never_numbered_past_what_it_reads(store, capsys):
    # Given entries numbered 7 and 10 (six digits) and one written with extra zeros by hand
    client = store.client()
    for key, to in (("history.000007", "a"), ("history.000010", "b"), ("history.0000008", "c")):
        client.set_registered_model_tag(store.name, key, json.dumps({"action": "promote", "to": to}))
    # Then they read in number order, not as text
    from registry import history
    from registry.versions import Registry
    registry = Registry(client=client, uri=store.uri, name=store.name)
    assert [e["to"] for e in history.read(registry)] == ["a", "c", "b"]
    # And an entry numbered at the top of what is read back stops the next append in one line, not silently
    client.set_registered_model_tag(store.name, "history.999999999", json.dumps({"action": "promote", "to": "z"}))
    with pytest.raises(UserError, match="999,999,999"):
        history.append(registry, {"action": "promote", "to": "next"})
    assert "history.1000000000" not in client.get_registered_model(store.name).tags
