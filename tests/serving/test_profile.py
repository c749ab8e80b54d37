"""The reference profile: what it records about the training split and the test predictions, and its checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.data import infer_schema
from experiments.generate import generate
from serving.layout import ModelError
from serving.profile import (
    PROFILE_FORMAT,
    as_numbers,
    bin_shares,
    build_profile,
    categorical_summary,
    check_profile,
    numeric_summary,
    read_profile,
    write_profile,
)

TARGET = "Exam_Score"


@pytest.fixture(scope="module")
def profile() -> dict:
    frame = generate(2000, 3)
    schema = infer_schema(frame, TARGET)
    columns = {name: frame[name].to_numpy() for name in schema.names}
    return build_profile(schema, columns, predictions=frame[TARGET].to_numpy(dtype=float))


def test_every_feature_is_profiled_by_its_kind(profile: dict) -> None:
    assert profile["profile_format"] == PROFILE_FORMAT and profile["rows"] == 2000
    assert len(profile["features"]) == 19
    hours = profile["features"]["Hours_Studied"]
    assert hours["kind"] == "numeric" and hours["missing_rate"] == 0.0
    assert 1 <= hours["min"] <= hours["percentiles"][50] <= hours["max"] <= 44
    assert hours["std"] == pytest.approx(6, abs=0.6)
    assert len(hours["percentiles"]) == 101 and hours["percentiles"] == sorted(hours["percentiles"])
    assert sum(hours["bins"]["shares"]) == pytest.approx(1.0)
    assert len(hours["bins"]["shares"]) == len(hours["bins"]["edges"]) + 1
    gender = profile["features"]["Gender"]
    assert gender["kind"] == "categorical" and set(gender["shares"]) == {"Female", "Male"}
    assert gender["shares"]["Male"] == pytest.approx(0.58, abs=0.03)
    assert 0.005 < profile["features"]["Teacher_Quality"]["missing_rate"] < 0.03


def test_the_prediction_distribution_is_profiled(profile: dict) -> None:
    assert profile["prediction"]["kind"] == "numeric"
    assert profile["prediction"]["count"] == 2000


def test_a_small_integer_feature_gets_one_bin_per_value() -> None:
    sleep = numeric_summary(np.array([4, 5, 6, 7, 8, 9, 10] * 100, dtype=float))
    assert sleep["bins"]["edges"] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert sleep["bins"]["shares"] == pytest.approx([1 / 7] * 7 + [0.0])


def test_bins_are_right_closed_and_catch_everything_outside_the_edges() -> None:
    assert list(bin_shares([1.0, 2.0], np.array([0.0, 1.0, 1.5, 2.0, 99.0]))) == [0.4, 0.4, 0.2]


def test_missing_values_count_as_missing_not_as_numbers_or_levels() -> None:
    # An integer no float can hold (JSON allows any number of digits) is not a number the model could see.
    # Nor is one beyond float32 (the container refuses it; a few near a double's limit made the mean infinite).
    numbers = numeric_summary([1, None, float("nan"), 3, True, 10**400, 1.7e308, -1.7e308])
    assert numbers["missing_rate"] == pytest.approx(6 / 8) and numbers["present"] == 2
    levels = categorical_summary(["a", None, float("nan"), "b"], levels=("a", "b", "c"))
    assert levels["missing_rate"] == 0.5 and levels["shares"] == {"a": 0.5, "b": 0.5, "c": 0.0}


@pytest.mark.parametrize("values", [
    [1, 2.5, -3, 0.0], [1.0, float("nan"), float("inf"), -float("inf")], [3.5e38, -3.5e38, 3.4e38, 2**64],
    [1, 10**400, 2.0], [1, True, 2.0], [1.5, None, "2"], [], [np.float64(2.0), 1.0],
], ids=["ints-and-floats", "nan-and-inf", "past-float32", "past-a-double", "a-bool", "none-and-text", "empty",
        "numpy-scalar"])
def test_numbers_of_a_plain_list_are_what_each_value_alone_gives(values: list) -> None:
    # The whole-list conversion (the common case, every value an int or float) and the value-by-value rule, which
    # an array of objects always takes, agree.
    by_value = as_numbers(np.array(values, dtype=object))
    assert np.array_equal(as_numbers(values), by_value, equal_nan=True), (as_numbers(values), by_value)


def test_an_all_missing_column_is_summarised_without_statistics() -> None:
    assert numeric_summary([None, None]) == {"kind": "numeric", "count": 2, "missing_rate": 1.0, "present": 0}


def test_the_profile_round_trips_as_strict_json(profile: dict, tmp_path: Path) -> None:
    path = write_profile(tmp_path, profile)
    assert "NaN" not in path.read_text()
    assert read_profile(path) == json.loads(json.dumps(profile))


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ('{"profile_format": 99}', "not a reference profile"),
    ('{"profile_format": 1, "features": {}}', "needs 'features'"),
    ('{"profile_format": 1, "features": {"a": {"kind": "numeric"}}, "prediction": {"kind": "numeric", '
     '"missing_rate": 0}}', "feature 'a' has no valid summary"),
    ('{"profile_format": 1, "features": {"a": {"kind": "numeric", "missing_rate": 0, "present": 3}}, '
     '"prediction": {"kind": "numeric", "missing_rate": 0}}', "lacks bins"),
])
def test_a_broken_profile_is_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "profile.json"
    path.write_text(text)
    with pytest.raises(ModelError, match=message):
        read_profile(path)


def test_a_missing_profile_says_why_it_may_be_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="trained before profiles existed"):
        read_profile(tmp_path / "profile.json")


def test_check_profile_names_where_the_profile_came_from() -> None:
    with pytest.raises(ModelError, match="^models:/x/1: "):
        check_profile([], "models:/x/1")


def _broken(profile: dict, feature: str, field: str, value: object) -> dict:
    """A copy of ``profile`` with one field of one summary set to ``value`` (``...`` deletes it)."""
    broken = json.loads(json.dumps(profile))
    summary = broken[feature] if feature == "prediction" else broken["features"][feature]
    *parents, last = field.split(".")
    for key in parents:
        summary = summary[key]
    if value is ...:
        del summary[last]
    else:
        summary[last] = value
    return broken


@pytest.mark.parametrize(("feature", "field", "value", "message"), [
    ("Hours_Studied", "min", ..., "feature 'Hours_Studied' lacks min"),
    ("Hours_Studied", "percentiles", list(range(10)), "'percentiles' must be a list of 101 finite numbers"),
    ("Hours_Studied", "std", "wide", "'std' must be a finite number at least 0, got 'wide'"),
    ("Hours_Studied", "std", float("nan"), "'std' must be a finite number at least 0, got nan"),
    ("Hours_Studied", "std", -1.0, "'std' must be a finite number at least 0"),
    ("Hours_Studied", "mean", True, "'mean' must be a finite number"),
    pytest.param("Hours_Studied", "max", 10**400, "'max' must be a finite number", id="max-huge-integer"),
    ("Hours_Studied", "bins", "nonsense", "'bins' must be an object with 'edges' and 'shares'"),
    ("Hours_Studied", "bins.edges", [3.0, 1.0, 2.0], "'bins.edges' must be in increasing order"),
    pytest.param("Hours_Studied", "bins", {"edges": [], "shares": [1.0]}, "'bins.edges' must be at least one edge",
                 id="no-edges"),
    ("Hours_Studied", "bins.shares", [0.5, 0.5], "'bins.shares' must be a list of "),
    ("Hours_Studied", "bins.shares", [float("inf")] * 20, "'bins.shares' must be a list of "),
    ("Hours_Studied", "present", "3", "'present' must be a count"),
    ("Hours_Studied", "missing_rate", float("nan"), "'missing_rate' must be a finite number from 0 to 1"),
    ("Gender", "missing_rate", 2, "'missing_rate' must be a finite number from 0 to 1"),
    ("Gender", "shares", 5, "'shares' must be an object of level to share"),
    ("Gender", "shares", {"Male": None}, "'shares' must be an object of level to share"),
    ("prediction", "kind", "categorical", "feature 'prediction' has no valid summary"),
    ("prediction", "percentiles", [1.0] * 100, "'percentiles' must be a list of 101 finite numbers"),
])
def test_a_profile_with_a_bad_field_is_refused_naming_file_feature_and_field(
        profile: dict, tmp_path: Path, feature: str, field: str, value: object, message: str) -> None:
    # Given a profile.json with one field of one summary missing, mistyped, the wrong length or not finite
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(_broken(profile, feature, field, value)))
    # When it is read, then it is refused in one line naming the file, the feature and the field
    with pytest.raises(ModelError) as refused:
        read_profile(path)
    text = str(refused.value)
    assert text.startswith(f"{path}: ") and "\n" not in text, text
    assert message in text and f"'{feature}'" in text, text


def test_the_checks_accept_a_feature_with_one_distinct_value() -> None:
    summary = numeric_summary(np.array([5.0] * 10))
    checked = check_profile({"profile_format": PROFILE_FORMAT, "features": {"a": summary}, "prediction": summary}, "x")
    assert checked["features"]["a"]["bins"]["edges"] == [5.0]


@pytest.mark.timeout(20)
def test_a_profile_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    # Reading a FIFO waits for a writer forever: a drift job given one hung.
    path = tmp_path / "profile.json"
    os.mkfifo(path)
    with pytest.raises(ModelError, match="not a regular file"):
        read_profile(path)
