"""Owns which IAM action authorizes each MLflow REST call the project's jobs make on a SageMaker managed MLflow server.

The ``sagemaker-mlflow`` plugin signs every MLflow REST call, and the tracking server authorizes each with one
``sagemaker-mlflow:`` action named after the MLflow API ("Actions, resources, and condition keys for Amazon SageMaker
with MLflow", Service Authorization Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/
list_amazonsagemakerwithmlflow.html; every action below is on that page, with the tracking server as its resource).
A call is ``METHOD path`` under ``/api/2.0/mlflow/``, as an ``mlflow server`` access log shows it (a logged model's
id as ``{model_id}``): the method matters, ``registered-models/alias`` is three APIs. Each role picks the calls its
jobs make (``infra.capture``'s ``DRIFT_MLFLOW_CALLS``, ``infra.bootstrap``'s ``RELEASE_MLFLOW_CALLS``), and the tests
in tests/infra run those jobs against a real server and require exactly those calls. Artifacts never pass through
the server: the client reads and writes them in S3 itself (the roles' artifact-store grants).
"""

from __future__ import annotations

from collections.abc import Iterable

ACTIONS = {
    # Experiments and runs
    "GET experiments/get-by-name": "GetExperimentByName",
    "POST experiments/create": "CreateExperiment",
    "GET experiments/get": "GetExperiment",
    "POST experiments/set-experiment-tag": "SetExperimentTag",
    "POST runs/create": "CreateRun",
    "GET runs/get": "GetRun",
    "POST runs/log-batch": "LogBatch",
    "POST runs/set-tag": "SetTag",
    "POST runs/log-inputs": "LogInputs",
    "POST runs/outputs": "LogOutputs",
    "GET metrics/get-history": "GetMetricHistory",
    "POST runs/update": "UpdateRun",
    # Logged models (MLflow 3's log_model). The reference names no action for creating one (MLflow's
    # CreateLoggedModel), so this one line is inferred, not read: LogModel ("log a model") fits, and AWS's sample
    # that logs and registers a model with MLflow 3.1 on a managed server grants a list holding it and nothing
    # named for creating a logged model (aws-samples/sample-aws-deep-learning-containers, mlflow/dlc-with-mlflow,
    # "Step 2: IAM Role Configuration"). Were it wrong, training would fail as it logs the model (dvc repro in the
    # dev job), before anything is registered or deployed.
    "POST logged-models": "LogModel",
    "GET logged-models/{model_id}": "GetLoggedModel",
    "PATCH logged-models/{model_id}": "FinalizeLoggedModel",
    "PATCH logged-models/{model_id}/tags": "SetLoggedModelTags",
    # The model registry
    "POST registered-models/create": "CreateRegisteredModel",
    "GET registered-models/get": "GetRegisteredModel",
    "POST registered-models/set-tag": "SetRegisteredModelTag",
    "DELETE registered-models/delete": "DeleteRegisteredModel",
    "POST model-versions/create": "CreateModelVersion",
    "GET model-versions/get": "GetModelVersion",
    "GET model-versions/search": "SearchModelVersions",
    "GET model-versions/get-download-uri": "GetDownloadURIForModelVersionArtifacts",
    "POST model-versions/set-tag": "SetModelVersionTag",
    "GET registered-models/alias": "GetModelVersionByAlias",
    "POST registered-models/alias": "SetRegisteredModelAlias",
    "DELETE registered-models/alias": "DeleteRegisteredModelAlias",
}


def actions(calls: Iterable[str]) -> list[str]:
    """The ``sagemaker-mlflow:`` actions that authorize ``calls`` (keys of ``ACTIONS``), sorted, each once."""
    return sorted({f"sagemaker-mlflow:{ACTIONS[call]}" for call in calls})
