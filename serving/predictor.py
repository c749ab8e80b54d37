"""Owns the one predict path: the feature schema, request validation, encoding and prediction.

Training evaluation, the MLflow pyfunc model and the serving container all call ``Predictor.predict``,
so a record is turned into model input in exactly one place. Only numpy and xgboost are needed here:
the container installs nothing else to predict, and nothing is ever unpickled.

A model directory holds ``booster.ubj`` (XGBoost's own format) and ``schema.json`` (feature names,
kinds, category levels, and a self-test record with its expected prediction); see ``serving.layout``.

Validation policy, applied to every record:
- every feature must be present; unknown fields are refused (a typo would otherwise be silently dropped);
- numbers for numeric features (no booleans, no strings, no infinities, nothing the model's float32 input
  cannot hold), strings for categorical ones; a prediction that is not finite is refused, naming the row;
- a category never seen in training is refused, naming the allowed levels;
- ``null`` (or NaN) is accepted only for features that had missing values in the training data, and is
  then handled by XGBoost's learned default direction.
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from serving import booster_file, columns
from serving.columns import FLOAT32_MAX, is_missing
from serving.layout import BOOSTER_FILE, CATEGORICAL, NUMERIC, SCHEMA_FILE, ModelError
from serving.xgb_capi import CapiError, DensePredict

SCHEMA_FORMAT = 1
SELF_TEST_TOLERANCE = 1e-4
# Below this many records a request is encoded record by record: numpy's per-call costs outweigh its gains.
COLUMN_PASS_MIN_ROWS = 8


class SchemaError(ValueError):
    """A record does not match the schema; names the field and the row."""

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None) -> None:
        self.message = message
        self.field = field
        self.row = row
        where = []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Feature:
    """One input column: its kind, whether it may be missing, and its levels if categorical."""

    name: str
    kind: str
    nullable: bool = False
    levels: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # Numeric features are standardised with the training split's mean and standard deviation: trees do
    # not care, and the linear booster converges several times faster on centred, scaled inputs.
    center: float = 0.0
    scale: float = 1.0

    @property
    def width(self) -> int:
        return 1 if self.kind == NUMERIC else len(self.levels)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "nullable": self.nullable}
        if self.kind == CATEGORICAL:
            out["levels"] = list(self.levels)
        else:
            out.update(minimum=self.minimum, maximum=self.maximum, center=self.center, scale=self.scale)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> Feature:
        """One feature of ``schema.json``; ModelError naming the feature and field whose value is not usable."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise ModelError("schema: each feature must be an object with a 'name' string")
        where = f"schema: feature '{raw['name']}'"
        kind = raw.get("kind")
        if kind not in (NUMERIC, CATEGORICAL):
            raise ModelError(f"{where} has unknown kind {kind!r}")
        # Read as written, not coerced: bool("false") is True, and float("1e3") would take a string for a number.
        if not isinstance(raw.get("nullable"), bool):
            raise ModelError(f"{where}: 'nullable' must be true or false, got {raw.get('nullable')!r}")
        levels = raw.get("levels", [])
        if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels) \
                or len(set(levels)) != len(levels):
            raise ModelError(f"{where}: 'levels' must be a list of distinct strings")
        number = {key: _number(raw, key, default, where) for key, default in
                  (("center", 0.0), ("scale", 1.0), ("minimum", None), ("maximum", None))}
        center, scale = number["center"], number["scale"]
        if not (math.isfinite(center) and math.isfinite(scale) and scale > 0):
            raise ModelError(f"{where} needs a finite center and a positive scale, got {center} and {scale}")
        return cls(name=raw["name"], kind=kind, nullable=raw["nullable"], levels=tuple(levels),
                   minimum=number["minimum"], maximum=number["maximum"], center=float(center), scale=float(scale))


def _number(raw: Mapping[str, Any], key: str, default: float | None, where: str) -> Any:
    value = raw.get(key, default)
    if value is not None and (type(value) is bool or not isinstance(value, (int, float))):
        raise ModelError(f"{where}: '{key}' must be a number, got {value!r}")
    return value


@dataclass(frozen=True)
class Schema:
    """The model's input contract, inferred at training time and checked on every request."""

    target: str
    features: tuple[Feature, ...]
    example: Mapping[str, Any] = field(default_factory=dict)
    expected: float | None = None

    def __post_init__(self) -> None:
        # Per-feature lookups prepared once: the request hot path only indexes into these.
        offsets, offset = [], 0
        for feat in self.features:
            offsets.append(offset)
            offset += feat.width
        object.__setattr__(self, "_width", offset)
        object.__setattr__(self, "_names", frozenset(f.name for f in self.features))
        object.__setattr__(self, "_level_index", tuple(
            {level: i for i, level in enumerate(f.levels)} for f in self.features))
        object.__setattr__(self, "_plan", tuple(
            (f, f.name, f.kind == NUMERIC, f.nullable, off, f.width, index, f.center, f.scale)
            for f, off, index in zip(self.features, offsets, self._level_index, strict=True)))
        object.__setattr__(self, "_columns", columns.ColumnPlan(
            width=offset, names=tuple(self.names),
            numeric=tuple(columns.NumericColumn(f.name, i, off, f.nullable, f.center, f.scale)
                          for i, (f, off) in enumerate(zip(self.features, offsets, strict=True)) if f.kind == NUMERIC),
            categorical=tuple(columns.CategoricalColumn(f.name, i, index, off, f.width, f.nullable)
                              for i, (f, off, index) in enumerate(zip(self.features, offsets, self._level_index,
                                                                      strict=True)) if f.kind == CATEGORICAL)))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def column_plan(self) -> columns.ColumnPlan:
        """The schema prepared for the column pass (``serving.columns``, ``serving.typed_json``)."""
        return self._columns

    @property
    def columns(self) -> list[str]:
        """Names of the encoded model columns: numeric features as-is, categoricals one-hot."""
        cols: list[str] = []
        for feat in self.features:
            cols.extend([feat.name] if feat.kind == NUMERIC else [f"{feat.name}={lv}" for lv in feat.levels])
        return cols

    def encode(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validate raw records and return the float32 model matrix.

        Raises:
            SchemaError: naming the first offending field and row.
        """
        # A batch of clean records is checked and encoded a column at a time in numpy. Anything that column
        # pass is not sure of goes through the record-by-record pass, which alone decides what is an error
        # and reports the first one in reading order; both passes give bit-identical matrices.
        if len(records) >= COLUMN_PASS_MIN_ROWS:
            matrix = self._encode_columns(records)
            if matrix is not None:
                return matrix
        return self._encode_rows(records)

    def _encode_rows(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        width = self._width
        matrix = np.zeros((len(records), width), dtype=np.float32)
        names = self._names
        # The non-zero cells are collected as flat positions and values and written in one numpy call:
        # a numpy item assignment per cell would cost more than all the checks of the record.
        cells: list[int] = []
        values: list[float] = []
        for row, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise SchemaError("expected an object of feature values", row=row)
            if len(record) != len(names) or not names.issuperset(record):
                self._raise_key_error(record, row)
            base = row * width
            for feat, name, numeric, nullable, offset, span, index, center, scale in self._plan:
                value = record[name]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    if not nullable:
                        raise SchemaError("a value is required (no missing values were seen in training)",
                                          field=name, row=row)
                    cells.extend(range(base + offset, base + offset + span))
                    values.extend([math.nan] * span)
                elif numeric:
                    # Exact int/float first: the numbers.Real ABC check is slow and only needed for the rest.
                    if type(value) is not float and type(value) is not int and not _is_number(value):
                        raise SchemaError(f"expected a number, got {type(value).__name__}", field=name, row=row)
                    try:
                        finite = math.isfinite(value)
                    except OverflowError:  # a JSON integer with hundreds of digits
                        finite = False
                    if not finite:
                        raise SchemaError("expected a finite number", field=name, row=row)
                    scaled = (value - center) / scale
                    if not -FLOAT32_MAX <= scaled <= FLOAT32_MAX:
                        raise SchemaError(f"{value:g} is beyond the model's float32 range", field=name, row=row)
                    cells.append(base + offset)
                    values.append(scaled)
                else:
                    if not isinstance(value, str):
                        raise SchemaError(f"expected a string, got {type(value).__name__}", field=name, row=row)
                    position = index.get(value)
                    if position is None:
                        raise SchemaError(f"unknown category '{value}'; expected one of {list(feat.levels)}",
                                          field=name, row=row)
                    cells.append(base + offset + position)
                    values.append(1.0)
        if cells:
            matrix.reshape(-1)[cells] = values
        return matrix

    def _encode_columns(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
        """The matrix of a batch of clean records, or None when the row pass must decide (``serving.columns``)."""
        return columns.encode(self._columns, records)

    def _raise_key_error(self, record: Mapping[str, Any], row: int) -> None:
        for name in self.names:
            if name not in record:
                raise SchemaError("missing feature", field=name, row=row)
        unknown = sorted(str(k) for k in record if k not in self._names)
        raise SchemaError("unknown feature", field=unknown[0], row=row)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SCHEMA_FORMAT,
            "target": self.target,
            "features": [f.to_json() for f in self.features],
            "columns": self.columns,
            "self_test": {"record": dict(self.example), "prediction": self.expected},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Schema:
        try:
            if raw.get("format") != SCHEMA_FORMAT:
                raise ModelError(f"schema: unsupported format {raw.get('format')!r}, expected {SCHEMA_FORMAT}")
            if not isinstance(raw.get("features"), list) or not raw["features"]:
                raise ModelError("schema: 'features' must be a non-empty list")
            features = tuple(Feature.from_json(f) for f in raw["features"])
            names = [f.name for f in features]
            twice = [name for name, count in Counter(names).items() if count > 1]
            if twice:
                raise ModelError(f"schema: feature '{twice[0]}' is listed twice")
            test = raw.get("self_test") or {}
            example, expected = test.get("record") or {}, test.get("prediction")
            if not isinstance(example, Mapping):
                raise ModelError("schema: 'self_test.record' must be an object of feature values")
            if expected is not None and (type(expected) is bool or not isinstance(expected, (int, float))):
                raise ModelError(f"schema: 'self_test.prediction' must be a number, got {expected!r}")
            if not isinstance(raw.get("target"), str):
                raise ModelError(f"schema: 'target' must be the target column's name, got {raw.get('target')!r}")
            return cls(target=raw["target"], features=features, example=example, expected=expected)
        except (KeyError, TypeError, AttributeError) as err:
            raise ModelError(f"schema: malformed ({err.__class__.__name__}: {err})") from err


class Predictor:
    """A booster and its schema: raw records in, predictions out."""

    def __init__(self, booster: xgb.Booster, schema: Schema) -> None:
        if booster.num_features() != len(schema.columns):
            raise ModelError(f"booster expects {booster.num_features()} columns, "
                             f"schema encodes {len(schema.columns)}")
        self.booster = booster
        self.schema = schema
        # One thread per request: gunicorn scales with processes, and oversubscribing cores hurts tails.
        self.booster.set_param({"nthread": 1})
        kind = json.loads(booster.save_config())["learner"]["gradient_booster"]["name"]
        # gblinear has no in-place prediction; trees skip building a DMatrix.
        self._dense = None if kind == "gblinear" else DensePredict(booster)

    @classmethod
    def from_dir(cls, path: str | Path) -> Predictor:
        """Load ``booster.ubj`` and ``schema.json`` from a model directory.

        Raises:
            ModelError: a file is missing or cannot be parsed.
        """
        return cls.load(Path(path) / BOOSTER_FILE, Path(path) / SCHEMA_FILE)

    @classmethod
    def load(cls, booster_path: str | Path, schema_path: str | Path) -> Predictor:
        """Load a booster file and its schema file, checking they belong together.

        Raises:
            ModelError: a file is missing or cannot be parsed, or the two do not match.
        """
        booster_path, schema_path = Path(booster_path), Path(schema_path)
        for file in (booster_path, schema_path):
            if not file.is_file():
                raise ModelError(f"model file {file} not found")
        try:
            schema = Schema.from_json(json.loads(schema_path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelError(f"{schema_path} is not valid JSON: {err}") from err
        data = booster_path.read_bytes()
        try:
            # XGBoost's reader crashes the process on some corrupt files; only a checked file reaches it.
            booster_file.check(data)
            booster = xgb.Booster()
            booster.load_model(bytearray(data))
            return cls(booster, schema)
        except booster_file.MalformedBooster as err:
            raise ModelError(f"{booster_path} is not a valid XGBoost model ({err})") from None
        except (xgb.core.XGBoostError, CapiError, ValueError, KeyError) as err:  # UnicodeDecodeError: a ValueError
            raise ModelError(f"{booster_path} is not a valid XGBoost model ({type(err).__name__})") from None

    def predict(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validate and predict; returns one float per record. Raises ``SchemaError`` naming a record at fault."""
        if not records:
            return np.empty(0, dtype=np.float64)
        return self.predict_matrix(self.schema.encode(records))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predict a matrix ``Schema.encode`` wrote (or the typed JSON path, bit-identical); one float per row.

        Raises:
            SchemaError: a prediction is not finite, naming its row.
        """
        try:
            out = self._dense(matrix) if self._dense is not None else np.asarray(
                self.booster.predict(xgb.DMatrix(matrix, nthread=1)), dtype=np.float64).reshape(-1)
        except CapiError as err:
            raise ModelError(str(err)) from None
        if not np.isfinite(out).all():  # the linear booster overflows on values far outside the training range
            raise SchemaError("the prediction is not a finite number", row=int(np.flatnonzero(~np.isfinite(out))[0]))
        return out

    def self_test(self) -> float:
        """Predict the schema's example record and compare it to the prediction recorded at training.

        Raises:
            ModelError: the prediction differs, which means the booster or schema is not the trained pair.
        """
        if not self.schema.example or self.schema.expected is None:
            raise ModelError("schema has no self-test record")
        try:
            got = float(self.predict([self.schema.example])[0])
        except SchemaError as err:  # the record the bundle itself carries: the bundle is at fault, not a request
            raise ModelError(f"schema: the self-test record does not fit the schema ({err})") from None
        if not math.isclose(got, self.schema.expected, abs_tol=SELF_TEST_TOLERANCE):
            raise ModelError(f"self-test failed: predicted {got}, expected {self.schema.expected}")
        return got


def records_from_frame(frame: Any) -> list[dict[str, Any]]:
    """Rows of a pandas DataFrame as plain dicts, every missing value as None (what JSON would carry).

    Duck-typed so this module never imports pandas.
    """
    rows = frame.astype(object).to_dict(orient="records")
    pandas_na = ("NAType", "NaTType")
    return [{k: (None if is_missing(v) or type(v).__name__ in pandas_na else v) for k, v in row.items()}
            for row in rows]


def save_model_dir(path: str | Path, booster: xgb.Booster, schema: Schema) -> Path:
    """Write a model directory; the schema must already carry its self-test record and prediction."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path / BOOSTER_FILE))
    (path / SCHEMA_FILE).write_text(json.dumps(schema.to_json(), indent=2, sort_keys=True) + "\n",
                                    encoding="utf-8")
    return path
