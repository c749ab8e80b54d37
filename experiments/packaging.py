"""Owns the MLflow model: the pyfunc logged as code, its signature, input example and requirements.

MLflow executes ``experiments/mlflow_model.py`` when the model is loaded ("models from code"), so nothing
is pickled; a copy of the predict path (``serving``'s predictor and the modules it imports) travels with
the model as a code path, so the pyfunc, training evaluation and the container share one predict path.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec
from mlflow.types import Schema as MlflowSchema

from serving.layout import BOOSTER_FILE, SCHEMA_FILE
from serving.predictor import NUMERIC, Schema
from serving.profile import PROFILE_FILE

PYFUNC_FILE = Path(__file__).with_name("mlflow_model.py")
SERVING_DIR = Path(__file__).resolve().parent.parent / "serving"
# The predict path and what it imports; none of the container's app, launcher or Dockerfile.
PREDICT_MODULES = ("__init__.py", "booster_file.py", "columns.py", "layout.py", "xgb_capi.py", "predictor.py")
# Stated rather than inferred: inference re-imports the model in a subprocess, which costs seconds.
REQUIREMENTS = ("mlflow", "xgboost-cpu", "numpy", "pandas")


def signature(schema: Schema, frame: pd.DataFrame) -> ModelSignature:
    """The model's input columns (raw features, nullable where training saw missing values), one double out."""
    # MLflow refuses int64 -> float64 as unsafe, so integer columns are declared "long" (the container
    # itself accepts any JSON number for a numeric feature).
    def kind(feature) -> str:  # noqa: ANN001
        if feature.kind != NUMERIC:
            return "string"
        return "long" if pd.api.types.is_integer_dtype(frame[feature.name]) else "double"

    inputs = MlflowSchema([ColSpec(kind(f), f.name, required=not f.nullable) for f in schema.features])
    return ModelSignature(inputs=inputs, outputs=MlflowSchema([ColSpec("double")]))


def table_schema(schema: Schema, frame: pd.DataFrame) -> MlflowSchema:
    """The training table's columns, as the dataset input declares them: the signature's inputs, then the target."""
    target = "long" if pd.api.types.is_integer_dtype(frame[schema.target]) else "double"
    return MlflowSchema([*signature(schema, frame).inputs.inputs, ColSpec(target, schema.target)])


def input_example(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw records, including one with a missing value when the data has any, so users see null is allowed."""
    has_missing = frame[frame.isna().any(axis=1)].head(1)
    return plain(pd.concat([frame.head(2), has_missing]).reset_index(drop=True))


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its categorical columns as plain text (None where missing), as requests carry them."""
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if not text:
        return frame
    out = frame.astype({c: object for c in text})
    out[text] = out[text].where(out[text].notna(), None)
    return out


def predict_package(folder: Path) -> Path:
    """A copy of the ``serving`` package holding only the predict path, to travel with the MLflow model."""
    package = folder / "serving"
    package.mkdir()
    for name in PREDICT_MODULES:
        shutil.copy2(SERVING_DIR / name, package / name)
    return package


def requirements() -> list[str]:
    """The pinned packages the pyfunc needs, at the versions installed here."""
    return [f"{pkg}=={version(pkg)}" for pkg in REQUIREMENTS]


def log_pyfunc(model_dir: Path, schema: Schema, features: pd.DataFrame) -> ModelInfo:
    """Log the model in ``model_dir`` (booster, schema and reference profile) to the active run as a pyfunc from code.

    The profile rides along as an artifact the pyfunc never reads, so that the registry's export carries it.
    """
    with tempfile.TemporaryDirectory() as code:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"booster": str(model_dir / BOOSTER_FILE), "schema": str(model_dir / SCHEMA_FILE),
                       "profile": str(model_dir / PROFILE_FILE)},
            code_paths=[str(predict_package(Path(code)))],
            signature=signature(schema, features),
            input_example=input_example(features),
            pip_requirements=requirements(),
        )
