"""Owns the MLflow pyfunc model, logged as code (MLflow "models from code"), so nothing is pickled.

MLflow executes this file when the model is loaded; ``serving.predictor`` travels with the model as a
code path, so the pyfunc, training evaluation and the container share one predict path.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from serving.predictor import Predictor, records_from_frame


class ExamScoreModel(PythonModel):
    """Raw records (a DataFrame of the schema's features) in, one predicted score per row out."""

    def load_context(self, context: PythonModelContext) -> None:
        self.predictor = Predictor.load(context.artifacts["booster"], context.artifacts["schema"])

    # ``pd.DataFrame`` is one of the hints MLflow infers no schema from and converts nothing for: the logged
    # signature stays the one validation uses, and MLflow stops asking for hints at every logging. MLflow 3's
    # source: ``mlflow.types.type_hints.type_hints_no_signature_inference`` (no validation wrapper is made) and
    # ``mlflow.pyfunc.model._PythonModelPyfuncWrapper._convert_input`` (a DataFrame passes through as it is).
    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params=None) -> np.ndarray:  # noqa: ANN001
        return self.predictor.predict(records_from_frame(model_input))


mlflow.models.set_model(ExamScoreModel())
