"""Tests for the load profiles (bounded) and the request bodies drawn from the sample data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from capacity import bodies, profiles
from core.params import load_params

ROOT = Path(__file__).resolve().parents[2]


def test_a_ramp_climbs_in_equal_steps_to_the_peak() -> None:
    steps = profiles.build("ramp", peak_rps=16, duration_s=14, steps=7, start_rps=4)
    assert [s.rps for s in steps] == [4, 6, 8, 10, 12, 14, 16]
    assert sum(s.seconds for s in steps) == pytest.approx(14)


def test_a_spike_jumps_to_the_peak_and_back_and_a_soak_holds() -> None:
    spike = profiles.build("spike", peak_rps=20, duration_s=10)
    assert [s.rps for s in spike] == [2, 20, 2]
    assert [s.rps for s in profiles.build("soak", peak_rps=20, duration_s=10)] == [10]


def test_rate_and_step_follow_the_clock_and_end() -> None:
    steps = profiles.build("ramp", peak_rps=4, duration_s=4, steps=2)
    assert (profiles.rate_at(steps, 0.5), profiles.rate_at(steps, 2.5), profiles.rate_at(steps, 4.0)) == (2, 4, None)
    assert (profiles.step_index(steps, 1.9), profiles.step_index(steps, 2.0)) == (0, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "storm", "peak_rps": 5, "duration_s": 5}, "unknown profile 'storm'"),
        ({"profile": "ramp", "peak_rps": 0, "duration_s": 5}, "peak rate"),
        ({"profile": "ramp", "peak_rps": 201, "duration_s": 5}, "at most 200"),
        ({"profile": "ramp", "peak_rps": 5, "duration_s": 601}, "at most 600 s"),
        ({"profile": "ramp", "peak_rps": 5, "duration_s": 5, "start_rps": 6}, "start rate"),
        ({"profile": "ramp", "peak_rps": 5, "duration_s": 5, "steps": 1}, "at least 2 steps"),
        ({"profile": "ramp", "peak_rps": 0.0001, "duration_s": 40},
         r"ramp step 1 offers 0 requests \(0 requests/s for 5 s\): each step must offer at least one"),
        ({"profile": "ramp", "peak_rps": 20, "duration_s": 0.01}, r"ramp step 1 offers 0.00313 requests \(2.5 requests/s for 0.00125 s\)"),
        ({"profile": "soak", "peak_rps": 1, "duration_s": 1}, r"soak step 1 offers 0.5 requests"),
        ({"profile": "spike", "peak_rps": 1, "duration_s": 2}, r"spike step 1 offers 0.3 requests"),
    ],
    ids=["unknown", "zero-rate", "rate-above-bound", "too-long", "start-above-peak", "one-step",
         "rate-rounding-to-zero", "steps-too-short", "soak-offering-none", "spike-offering-none"],
)
def test_an_unbounded_or_unknown_profile_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profiles.build(**kwargs)


def test_bodies_are_sample_records_without_the_target_alone_or_in_batches() -> None:
    params = load_params(ROOT / "params.yaml")
    records = bodies.read_records(ROOT / params.data.path, target=params.data.target, limit=50)
    made = [json.loads(b) for b in bodies.make_bodies(records, count=200, batch_share=0.3, batch_size=5)]
    singles = [b for b in made if isinstance(b, dict)]
    batches = [b for b in made if isinstance(b, list)]
    assert singles and batches, "both kinds are sent"
    assert all(len(b) == 5 for b in batches)
    assert all(params.data.target not in r for r in singles + [r for b in batches for r in b])
    assert isinstance(singles[0]["Hours_Studied"], int), "numbers are sent as JSON numbers"


@pytest.mark.parametrize(
    ("content", "message"), [(None, "file not found"), ("", "no records"), (b"\xff\xfe\x00", "not a readable CSV")],
    ids=["missing", "empty", "not-utf8"],
)
def test_a_bad_sample_file_is_one_clear_error(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "data.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        bodies.read_records(path, target="Exam_Score")


@pytest.mark.parametrize(("share", "size"), [(1.5, 5), (0.5, 0), (0.5, 101)])
def test_batch_settings_out_of_range_are_refused(share: float, size: int) -> None:
    with pytest.raises(ValueError, match="batch_"):
        bodies.make_bodies([{"a": 1}], count=1, batch_share=share, batch_size=size)


def test_an_empty_cell_is_sent_as_null_as_a_client_would(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("Hours_Studied,Teacher_Quality,Exam_Score\n5,,70\n6,High,71\n")
    assert bodies.read_records(path, target="Exam_Score") == [
        {"Hours_Studied": 5, "Teacher_Quality": None}, {"Hours_Studied": 6, "Teacher_Quality": "High"}]


def test_records_are_read_as_training_reads_the_table(tmp_path: Path) -> None:
    # Given a table with an ignored id column, spaces after commas, and a text column whose cells look numeric
    path = tmp_path / "data.csv"
    path.write_text("Student_Id,Hours_Studied,Room,Exam_Score\n7, 5, 12,70\n8, 6, B2,71\n")
    # Then the records the load test sends are the model's features, typed by column as training types them
    assert bodies.read_records(path, target="Exam_Score", ignore=["Student_Id"]) == [
        {"Hours_Studied": 5, "Room": "12"}, {"Hours_Studied": 6, "Room": "B2"}]


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_sample_path_that_is_no_file_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.csv"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    with pytest.raises(ValueError, match="not a regular file"):
        bodies.read_records(path, target="Exam_Score")
