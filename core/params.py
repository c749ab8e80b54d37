"""Owns params.yaml: parsed and validated once into frozen, typed settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import click
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from core import strict_yaml
from core.cli import UserError
from core.files import is_special, names_a_folder

PARAMS_FILE = Path("params.yaml")


class _Frozen(BaseModel):
    # strict: YAML already types its values, so `n_trials: "5"` or `n_trials: true` is a mistake to name, not to
    # coerce. Paths and lists (YAML has neither type) say strict=False where they are declared.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _names_a_file(value: Any) -> Any:
    """A path written as a folder's (``dist/``, ``data/.``) is refused: ``Path`` drops the slash, and the export
    was written as a file named ``dist``."""
    if isinstance(value, str) and names_a_folder(value):
        raise ValueError(f"'{value}' names a folder, not a file (end it with the file's name)")
    return value


FilePath = Annotated[Path, BeforeValidator(_names_a_file), Field(strict=False)]
# Column or field names: a YAML list read as a tuple, no name empty.
Names = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(strict=False)]


class Range(_Frozen):
    """A numeric search dimension."""

    low: Annotated[float, Field(allow_inf_nan=False)]
    high: Annotated[float, Field(allow_inf_nan=False)]
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        # Optuna's integer dimensions take integers: a bound such as 0.5 would be cut to 0 without a word.
        if self.int and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError(f"an int range needs whole-number bounds, got {self.low:g}..{self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


# numpy, scikit-learn and Optuna take seeds in [0, 2**32).
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class Choices(_Frozen):
    choices: Annotated[list[str], Field(min_length=1)]


# XGBoost ignores parameters it does not know, so a misspelt name would be searched, logged and have no
# effect; only these are accepted.
BOOSTER_PARAMETERS = {
    "gbtree": {"max_depth", "learning_rate", "min_child_weight", "subsample", "colsample_bytree",
               "colsample_bylevel", "colsample_bynode", "reg_lambda", "reg_alpha", "gamma", "max_bin",
               "max_leaves", "max_delta_step"},
    "gblinear": {"learning_rate", "reg_lambda", "reg_alpha"},
}


# Each parameter's valid values, from XGBoost's documentation ("XGBoost Parameters", parameter.rst): (low,
# high, whether low itself is excluded). A range outside them would fail inside a trial, after MLflow logged.
# The documented "inf" is what XGBoost's C++ types hold: a float parameter is a float32 (1e39 is "Out of range
# value for min_child_weight") and an integer one an int32 (2**31 is "Invalid Parameter format for max_depth").
FLOAT32_MAX, INT32_MAX = 3.4028234663852886e38, 2.0**31 - 1
PARAMETER_BOUNDS = {
    "learning_rate": (0.0, 1.0, False), "max_depth": (0.0, INT32_MAX, False),
    "min_child_weight": (0.0, FLOAT32_MAX, False), "subsample": (0.0, 1.0, True),
    "colsample_bytree": (0.0, 1.0, True), "colsample_bylevel": (0.0, 1.0, True), "colsample_bynode": (0.0, 1.0, True),
    "reg_lambda": (0.0, FLOAT32_MAX, False), "reg_alpha": (0.0, FLOAT32_MAX, False), "gamma": (0.0, FLOAT32_MAX, False),
    "max_bin": (2.0, INT32_MAX, False), "max_leaves": (0.0, INT32_MAX, False), "max_delta_step": (0.0, FLOAT32_MAX, False),
}


# The parameters XGBoost reads as integers ("XGBoost Parameters": max_depth, max_bin, max_leaves are int): a
# float range would make the first trial fail inside XGBoost, after MLflow logged the run.
INTEGER_PARAMETERS = frozenset({"max_depth", "max_bin", "max_leaves"})


def _shown(bound: float) -> str:
    """A bound as written: whole numbers in full (2147483648 is not 2.14748e+09, which is also 2147483647)."""
    return str(int(bound)) if bound.is_integer() and abs(bound) < 1e15 else f"{bound:g}"


def _outside(name: str, space: Range) -> str | None:
    low, high, open_low = PARAMETER_BOUNDS[name]
    if space.low < low or (open_low and space.low == low) or space.high > high:
        return (f"{name} {_shown(space.low)}..{_shown(space.high)} is outside XGBoost's {'(' if open_low else '['}"
                f"{_shown(low)}, {_shown(high)}]")
    return None


class SearchSpace(_Frozen):
    booster: Choices
    gbtree: dict[str, Range] = {}
    gblinear: dict[str, Range] = {}

    @model_validator(mode="after")
    def _known_boosters_and_parameters(self) -> SearchSpace:
        unknown = set(self.booster.choices) - set(BOOSTER_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown booster(s) {sorted(unknown)}; use gbtree and/or gblinear")
        for booster, allowed in BOOSTER_PARAMETERS.items():
            stray = sorted(set(getattr(self, booster)) - allowed)
            if stray:
                raise ValueError(f"{booster}: unknown XGBoost parameter(s) {stray}; known: {sorted(allowed)}")
            for name, space in getattr(self, booster).items():
                if problem := _outside(name, space):
                    raise ValueError(f"{booster}: {problem}")
                if name in INTEGER_PARAMETERS and not space.int:
                    raise ValueError(f"{booster}: {name} takes whole numbers; add int: true to its range")
        return self


class DataParams(_Frozen):
    path: FilePath
    target: Annotated[str, Field(min_length=1)]
    test_size: Annotated[float, Field(gt=0, lt=1)]
    split_seed: Seed
    ignore: Names
    max_categories: Annotated[int, Field(ge=2)]

    @model_validator(mode="after")
    def _ignored_columns(self) -> DataParams:
        if self.target in self.ignore:
            raise ValueError(f"ignore lists the target '{self.target}'")
        repeated = sorted({name for name in self.ignore if self.ignore.count(name) > 1})
        if repeated:
            raise ValueError(f"ignore lists {repeated[0]!r} twice")
        return self


class ModelParams(_Frozen):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class MlflowParams(_Frozen):
    tracking_uri: Annotated[str, Field(min_length=1)]  # empty: MLflow's file store, which it refuses
    experiment: Annotated[str, Field(min_length=1)]


class TrainParams(_Frozen):
    seed: Seed
    n_trials: Annotated[int, Field(ge=1)]
    timeout_s: Annotated[float, Field(gt=0)]
    cv_folds: Annotated[int, Field(ge=2, le=20)]
    max_rounds: Annotated[int, Field(ge=1)]
    early_stopping_rounds: Annotated[int, Field(ge=1)]
    nthread: Annotated[int, Field(ge=1, le=int(INT32_MAX))]  # XGBoost's nthread is an int32, as above
    # Budget by size: the search scores trials on at most search_rows training rows (a seeded sample; the refit
    # uses every row), and on one holdout fold instead of k folds past holdout_above rows. null: no limit.
    search_rows: Annotated[int, Field(ge=100)] | None = None
    holdout_above: Annotated[int, Field(ge=1)] | None = None
    storage: Annotated[str, Field(min_length=1)]
    pruner_startup_trials: Annotated[int, Field(ge=0)]
    search_space: SearchSpace


# MLflow's rules for an alias (mlflow/utils/validation.py, _validate_model_alias_name and ..._reserved): word
# characters and hyphens, at most 255, and neither "latest" nor "v<number>", which name versions.
def _alias(name: str) -> str:
    if name.lower() == "latest" or re.fullmatch(r"[vV]\d+", name):
        raise ValueError(f"'{name}' is reserved by MLflow (it names a version)")
    return name


Alias = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\w-]+$"), AfterValidator(_alias)]


class RegistryParams(_Frozen):
    alias: Alias
    previous_alias: Alias
    # Finite: an infinite tolerance (`.inf`, or 1e999) passed every candidate as if the gate had judged it.
    gate_tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _two_aliases(self) -> RegistryParams:
        if self.alias == self.previous_alias:
            raise ValueError(f"alias and previous_alias are both '{self.alias}'; they must differ")
        return self


class ExportParams(_Frozen):
    path: FilePath


Share = Annotated[float, Field(ge=0, le=1)]


class DriftThresholds(_Frozen):
    """When the drift job (monitoring/drift.py) calls a feature or the prediction drifted."""

    min_sample: Annotated[int, Field(ge=1)]
    psi: Annotated[float, Field(gt=0, allow_inf_nan=False)]  # infinite: an alarm that can never ring
    wasserstein: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    jensen_shannon: Annotated[float, Field(gt=0, le=1)]
    missing_rate_change: Share
    out_of_range_share: Share
    refused_share: Share


class FeedbackParams(_Frozen):
    """When live accuracy (monitoring/feedback.py) is worse than the version's test accuracy."""

    min_labels: Annotated[int, Field(ge=1)]
    rmse_tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class MonitorParams(_Frozen):
    experiment: Annotated[str, Field(min_length=1)]
    capture_dir: FilePath
    drop_fields: Names = ()
    drift: DriftThresholds
    feedback: FeedbackParams


class Params(_Frozen):
    data: DataParams
    model: ModelParams
    mlflow: MlflowParams
    train: TrainParams
    registry: RegistryParams
    export: ExportParams
    monitor: MonitorParams


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


def load_params(path: str | Path = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params.yaml.

    Raises:
        UserError: the file is missing, is not YAML, or a key is missing, unknown or of the wrong type.
    """
    path = Path(path)
    if is_special(path):
        raise UserError(f"{path}: not a regular file")
    try:
        raw = strict_yaml.load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be params") from None
    except strict_yaml.DuplicateKey as err:
        raise UserError(f"{path}: key {err.key!r} is written twice (line {err.line}); keep one") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw | (overrides or {}))
    except ValidationError as err:
        raise UserError(f"{path}: {_first_error(err)}") from None


def params_option(command):
    """The ``--params`` option of every CLI: which params file to read (default ``params.yaml``)."""
    return click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path),
                        default=PARAMS_FILE, show_default=True, help="The params file to read.")(command)
