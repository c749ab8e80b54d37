"""The parent run's dataset input: declared columns and size, no rows kept or hashed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source

from experiments import packaging, parent_run
from serving.predictor import CATEGORICAL, NUMERIC, Feature, Schema


def test_training_table_declares_the_signature_columns_whatever_its_rows_hold(tmp_path) -> None:
    # One missing level in 3,000 rows: a sample of rows would likely miss it and call the column required.
    rows = 3000
    frame = pd.DataFrame({"hours": np.arange(rows, dtype=np.int64),
                          "school": pd.Categorical(["a", "b"] * (rows // 2)),
                          "score": np.arange(rows, dtype=np.int64) % 100})
    frame.loc[1234, "school"] = None
    schema = Schema(features=(Feature("hours", NUMERIC, nullable=False, center=0.0, scale=1.0),
                              Feature("school", CATEGORICAL, nullable=True, levels=("a", "b"))),
                    target="score")
    columns = packaging.table_schema(schema, frame)
    table = parent_run.TrainingTable(frame, columns=columns, source=resolve_dataset_source(str(tmp_path / "t.csv")),
                                     targets="score", name="t", digest="d")

    logged = table.to_dict()
    assert json.loads(logged["schema"])["mlflow_colspec"] == [
        {"type": "long", "name": "hours", "required": True},
        {"type": "string", "name": "school", "required": False},
        {"type": "long", "name": "score", "required": True}]
    assert json.loads(logged["profile"]) == {"num_rows": rows, "num_elements": rows * 3}
    assert logged["digest"] == "d"
    assert table.df.empty, "no rows are kept for MLflow: it logs the schema and profile only"
