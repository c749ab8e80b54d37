"""Helpers for the monitoring tests: a reference profile of the sample generator, and windows of capture records.

The "model" here is the generator's own ground truth (``experiments.generate.ground_truth``): a deterministic
function of the inputs, so reference and live predictions come from the same model without training one.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.data import infer_schema, split
from experiments.generate import generate, ground_truth
from serving import contract
from serving.profile import build_profile, write_profile

TARGET = "Exam_Score"
MODEL = "student-score"
HEADERS = {"X-Model-Name": MODEL, "X-Model-Version": "3", "X-Data-Hash": "abc.dir"}
DAY = 1_764_547_200.0  # 2025-12-01T00:00:00Z


def reference_profile() -> dict[str, Any]:
    """The profile the train stage would save for the sample data (seed 42), with ground truth as the model."""
    frame = generate(6607, 42)
    train, test = split(frame, test_size=0.2, seed=42, min_train_rows=8)
    schema = infer_schema(frame, TARGET, stats_from=train)
    return json.loads(json.dumps(build_profile(schema, {n: train[n].to_numpy() for n in schema.names},
                                               ground_truth(test))))


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Feature records as a JSON body carries them (Python numbers, None for missing)."""
    return json.loads(frame.drop(columns=[TARGET], errors="ignore").to_json(orient="records"))


def capture_window(frame: pd.DataFrame, *, version: str = "3", start: float = DAY, per_request: int = 10,
                   predictions: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Capture records for ``frame`` as the front door would make them, one request per ``per_request`` rows."""
    records = plain_records(frame)
    predicted = ground_truth(frame) if predictions is None else predictions
    out = []
    for i in range(0, len(records), per_request):
        out += contract.prediction_records(
            request_id=f"req-{version}-{int(start)}-{i}", records=records[i:i + per_request],
            predictions=[float(p) for p in predicted[i:i + per_request]],
            headers=dict(HEADERS, **{"X-Model-Version": version}), latency_ms=5.0, now=start + i)
    return out


def write_capture(folder: Path, captures: list[dict[str, Any]]) -> Path:
    """Write capture records in the folder layout the stand-in uses."""
    contract.folder_put(folder)([contract.capture_line(c) for c in captures])
    return folder


def tarball_with_profile(folder: Path, profile: dict[str, Any], *, version: str = "3", name: str = MODEL) -> Path:
    """A model.tar.gz carrying only ``profile.json`` and ``metadata.json`` (enough for --profile)."""
    model = folder / "bundle"
    model.mkdir(parents=True)
    write_profile(model, profile)
    (model / "metadata.json").write_text(json.dumps({"registered_name": name, "version": version}))
    path = folder / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for file in model.iterdir():
            tar.add(file, arcname=file.name)
    return path


def shifted_hours(frame: pd.DataFrame, sd: float) -> pd.DataFrame:
    out = frame.copy()
    out["Hours_Studied"] = out["Hours_Studied"] + sd
    return out


def doubled_level(frame: pd.DataFrame, column: str, level: str, seed: int = 0) -> pd.DataFrame:
    """``frame`` with ``level``'s share of ``column`` doubled, the other levels shrunk in proportion."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    present = out[column].notna()
    share = float((out.loc[present, column] == level).mean())
    others = out.index[present & (out[column] != level)]
    # Moving k rows of other levels to `level` takes its share from s to s + k/n: k = s*n doubles it.
    moved = rng.choice(others, size=round(share * present.sum()), replace=False)
    out.loc[moved, column] = level
    return out


__all__ = ["DAY", "HEADERS", "MODEL", "capture_window", "doubled_level", "generate", "plain_records",
           "reference_profile", "shifted_hours", "tarball_with_profile", "write_capture"]
