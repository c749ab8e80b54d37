"""A bundle's schema.json read as written: a value of the wrong type is refused at load, naming the field."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving import wsgi
from serving.layout import ModelError
from serving.predictor import Predictor

Edit = Callable[[dict[str, Any]], None]


def _set(path: tuple[Any, ...], value: Any) -> Edit:
    def edit(schema: dict[str, Any]) -> None:
        *parents, last = path
        target = schema
        for key in parents:
            target = target[key]
        target[last] = value
    return edit


def _twice(schema: dict[str, Any]) -> None:
    schema["features"].append(dict(schema["features"][0]))


def _without(key: str) -> Edit:
    return lambda schema: schema["features"][0].pop(key)


# (edit, what the one-line refusal says). features[0] is numeric (Hours_Studied), features[2] categorical.
EDITS: dict[str, tuple[Edit, str]] = {
    "nullable-as-text": (_set(("features", 0, "nullable"), "false"), "'nullable' must be true or false"),
    "nullable-absent": (_without("nullable"), "'nullable' must be true or false"),
    "center-not-a-number": (_set(("features", 0, "center"), "abc"), "'center' must be a number"),
    "center-as-text": (_set(("features", 0, "center"), "19.95"), "'center' must be a number"),
    "scale-a-boolean": (_set(("features", 0, "scale"), True), "'scale' must be a number"),
    "minimum-as-text": (_set(("features", 0, "minimum"), "1"), "'minimum' must be a number"),
    "levels-a-string": (_set(("features", 2, "levels"), "High"), "'levels' must be a list of distinct strings"),
    "levels-numbers": (_set(("features", 2, "levels"), [1, 2, 3]), "'levels' must be a list of distinct strings"),
    "levels-repeated": (_set(("features", 2, "levels"), ["High", "High", "Low"]),
                        "'levels' must be a list of distinct strings"),
    "name-a-number": (_set(("features", 0, "name"), 7), "each feature must be an object with a 'name' string"),
    "feature-a-list": (_set(("features", 0), ["Hours_Studied"]),
                       "each feature must be an object with a 'name' string"),
    "no-features": (_set(("features",), []), "'features' must be a non-empty list"),
    "a-feature-twice": (_twice, "feature 'Hours_Studied' is listed twice"),
    "prediction-as-text": (_set(("self_test", "prediction"), "67"), "'self_test.prediction' must be a number"),
    "record-a-list": (_set(("self_test", "record"), ["x"]), "'self_test.record' must be an object"),
    "target-a-number": (_set(("target",), 5), "'target' must be the target column's name"),
}


def _bundle(model_dir: Path, tmp_path: Path, edit: Edit) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    schema = json.loads((folder / "schema.json").read_text(encoding="utf-8"))
    edit(schema)
    (folder / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    return folder


@pytest.mark.parametrize("case", list(EDITS))
def test_a_schema_value_of_the_wrong_type_is_refused_at_load_naming_the_field(model_dir: Path, tmp_path: Path,
                                                                              case: str) -> None:
    edit, message = EDITS[case]
    folder = _bundle(model_dir, tmp_path, edit)
    with pytest.raises(ModelError) as refused:
        Predictor.from_dir(folder)
    assert message in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


def test_a_self_test_record_that_does_not_fit_the_schema_is_the_bundles_fault(model_dir: Path,
                                                                               tmp_path: Path) -> None:
    folder = _bundle(model_dir, tmp_path, lambda schema: schema["self_test"]["record"].pop("Hours_Studied"))
    predictor = Predictor.from_dir(folder)
    with pytest.raises(ModelError, match=r"self-test record does not fit the schema \(.*'Hours_Studied'.*missing"):
        predictor.self_test()


@pytest.mark.parametrize("case", ["center-not-a-number", "prediction-as-text"])
def test_the_container_answers_ping_503_with_the_field_not_a_type_name(model_dir: Path, tmp_path: Path,
                                                                       case: str) -> None:
    # The container checks the bundle's checksums first: a hand-edited schema.json is re-listed, as an
    # exporter bug would list it.
    from serving import bundle
    edit, message = EDITS[case]
    folder = _bundle(model_dir, tmp_path, edit)
    bundle.write_metadata(folder, json.loads((folder / "metadata.json").read_text(encoding="utf-8")))
    answer = wsgi.create(str(folder), 1024).test_client().get("/ping")
    assert answer.status_code == 503
    assert message in answer.get_json()["error"], answer.get_json()
