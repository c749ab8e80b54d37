"""Owns the reference design's Flask app, copied faithfully as a baseline (NOT our code; see the package doc).

What the reference container did: at import, unpickle ``final_model.pkl`` and ``label_encoders.pkl`` from
``SM_MODEL_DIR`` (unpacking ``model.tar.gz`` there first when only the tarball was mounted); per request,
build a pandas DataFrame from the JSON record(s), fill missing text values with ``"missing"``, apply each
column's ``LabelEncoder`` and call ``predict``. Served as ``gunicorn -b HOST:PORT benchmarks.reference.app:app``
(one sync worker, gunicorn's default), like its ``ENTRYPOINT ["gunicorn", "-b", "0.0.0.0:8080", "app:app"]``.

Environment: ``SM_MODEL_DIR`` (default ``/opt/ml/model``).
"""

from __future__ import annotations

import os
import pickle
import tarfile

import pandas as pd
from flask import Flask, jsonify, request

from benchmarks.reference.train import ENCODERS_FILE, MISSING, MODEL_FILE

MODEL_DIR = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")

app = Flask(__name__)

if not os.path.exists(os.path.join(MODEL_DIR, MODEL_FILE)):
    with tarfile.open(os.path.join(MODEL_DIR, "model.tar.gz")) as tar:
        tar.extractall(MODEL_DIR, filter="data")
with open(os.path.join(MODEL_DIR, MODEL_FILE), "rb") as f:
    model = pickle.load(f)  # noqa: S301 - the reference design's own format, kept on purpose
with open(os.path.join(MODEL_DIR, ENCODERS_FILE), "rb") as f:
    label_encoders = pickle.load(f)  # noqa: S301
feature_names = list(model.get_booster().feature_names)


@app.route("/ping", methods=["GET"])
def ping():
    return jsonify({"status": "ok"}), 200


@app.route("/invocations", methods=["POST"])
def invocations():
    data = request.get_json()
    if isinstance(data, dict):
        data = [data]
    df = pd.DataFrame(data)
    for column, encoder in label_encoders.items():
        df[column] = encoder.transform(df[column].fillna(MISSING).astype(str))
    predictions = model.predict(df[feature_names])
    return jsonify({"predictions": predictions.tolist()})
