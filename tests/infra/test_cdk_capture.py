"""The capture infrastructure: Firehose into the artifact bucket, its lifecycle, the Lambda's one permission, the
drift workflow's read-only role; real synth with cdk-nag, asserted on resource properties."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from infra.api.infrastructure import PredictApi
from infra.app import ConfigError, build_app
from infra.capture.infrastructure import CaptureReader, CaptureStream, data_prefix
from infra.stacks import BootstrapStack
from infra.storage.infrastructure import ArtifactBucket
from serving import contract
from tests.infra.test_cdk_stacks import REPO, inputs

pytestmark = pytest.mark.slow


def _app() -> App:
    """An app with cdk.json's feature flags, as the real one has."""
    return App(context=json.loads((Path(__file__).resolve().parents[2] / "infra" / "cdk.json").read_text())["context"])


def _nag_clean(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # raises ValidationFailed on any unacknowledged finding


@pytest.fixture(scope="module")
def parts() -> tuple[Template, Template]:
    """A bucket with its capture stream, and a predict API capturing to it (no endpoint or image needed)."""
    app = _app()
    storage = Stack(app, "Storage")
    bucket = ArtifactBucket(storage, "Artifacts").bucket
    capture = CaptureStream(storage, "Capture", bucket=bucket, retention_days=45)
    serving = Stack(app, "Serving")
    PredictApi(serving, "Api", endpoint_name="ep", endpoint_arn="arn:aws:sagemaker:us-east-1:1:endpoint/ep",
               memory_mb=256, throttle_rate=1, throttle_burst=1, api_key_required=False, max_records=100,
               capture_stream=capture.stream, capture_share=0.25, capture_drop_fields=("Gender", "Family_Income"))
    _nag_clean(app)
    return Template.from_stack(storage), Template.from_stack(serving)


def test_the_stream_is_encrypted_and_delivers_gzip_json_lines_partitioned_as_the_contract_says(parts) -> None:
    storage, _ = parts
    (stream,) = storage.find_resources("AWS::KinesisFirehose::DeliveryStream").values()
    props = stream["Properties"]
    assert props["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}, "cdk-nag KDF1"
    s3 = props["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == data_prefix() == (
        "capture/model=!{partitionKeyFromQuery:model}/version=!{partitionKeyFromQuery:version}/"
        "dt=!{partitionKeyFromQuery:dt}/")
    assert "!{firehose:error-output-type}" in s3["ErrorOutputPrefix"], "required once the prefix has expressions"
    assert not s3["ErrorOutputPrefix"].startswith("capture/"), "errors never mix with captures"
    assert s3["CompressionFormat"] == "GZIP"
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    (processor,) = s3["ProcessingConfiguration"]["Processors"]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    assert processor["Type"] == "MetadataExtraction" and parameters["JsonParsingEngine"] == "JQ-1.6"
    query = parameters["MetadataExtractionQuery"]
    for key, expression in contract.CAPTURE_PARTITIONS.items():
        assert f'"{key}":{expression}' in query
    bucket_id = next(iter(storage.find_resources("AWS::S3::Bucket", {"Properties": {"VersioningConfiguration":
                                                                                    Match.any_value()}})))
    assert s3["BucketARN"] == {"Fn::GetAtt": [bucket_id, "Arn"]}, "the artifact bucket, not a bucket of its own"
    assert 1 <= s3["BufferingHints"]["SizeInMBs"] <= 128 and s3["BufferingHints"]["IntervalInSeconds"] <= 900


BUCKET_ARN = "arn:aws:s3:::artifacts"


def _arn(value: Any, bucket_id: str) -> str:
    """A template ARN as text, the artifact bucket's ``Fn::GetAtt`` standing for ``BUCKET_ARN``."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_arn(part, bucket_id) for part in parts)
    return BUCKET_ARN if value == {"Fn::GetAtt": [bucket_id, "Arn"]} else json.dumps(value)


def _allows(statements: list[dict[str, Any]], action: str, resource: str, bucket_id: str) -> bool:
    """IAM's verdict for one identity policy: some Allow matches and no Deny does (wildcards as IAM reads them)."""
    def matches(patterns: Any, value: str, *, fold: bool) -> bool:
        texts = [_arn(p, bucket_id) for p in (patterns if isinstance(patterns, list) else [patterns])]
        return any(fnmatchcase(value.lower(), t.lower()) if fold else fnmatchcase(value, t) for t in texts)

    def applies(s: dict[str, Any]) -> bool:
        acted = matches(s["Action"], action, fold=True) if "Action" in s else not matches(s["NotAction"], action,
                                                                                         fold=True)
        on = matches(s["Resource"], resource, fold=False) if "Resource" in s else not matches(
            s["NotResource"], resource, fold=False)
        return acted and on

    return (any(applies(s) for s in statements if s["Effect"] == "Allow")
            and not any(applies(s) for s in statements if s["Effect"] == "Deny"))


def test_firehose_may_write_and_read_the_capture_prefixes_only_and_delete_nothing(parts) -> None:
    # Given the delivery role the stream uses, with every statement of its policies
    storage, _ = parts
    (stream,) = storage.find_resources("AWS::KinesisFirehose::DeliveryStream").values()
    role_id = stream["Properties"]["ExtendedS3DestinationConfiguration"]["RoleARN"]["Fn::GetAtt"][0]
    statements = [s for p in storage.find_resources("AWS::IAM::Policy").values()
                  if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    bucket_id = next(iter(storage.find_resources("AWS::S3::Bucket", {"Properties": {"VersioningConfiguration":
                                                                                    Match.any_value()}})))
    key = f"{BUCKET_ARN}/capture/model=m/version=1/dt=2026-01-01/part.gz"
    error = f"{BUCKET_ARN}/capture-errors/processing-failed/2026-01-01/part.gz"
    # Then it may do what AWS's Firehose guide lists, objects only under the capture prefixes...
    needed = [("s3:PutObject", key), ("s3:PutObject", error), ("s3:GetObject", key), ("s3:AbortMultipartUpload", error),
              ("s3:GetBucketLocation", BUCKET_ARN), ("s3:ListBucket", BUCKET_ARN),
              ("s3:ListBucketMultipartUploads", BUCKET_ARN)]
    assert [n for n in needed if not _allows(statements, *n, bucket_id)] == []
    # ...and nothing to the DVC remote or MLflow's artifacts beside them, nor delete or lock any object
    others = [f"{BUCKET_ARN}/dvc/files/md5/ab/cdef", f"{BUCKET_ARN}/mlflow/1/run/artifacts/model.pkl"]
    refused = [(a, o) for a in ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload")
               for o in others]
    refused += [(a, k) for a in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
                                 "s3:PutObjectLegalHold", "s3:GetObjectVersion", "s3:PutObjectTagging")
                for k in (key, error, *others)]
    refused += [("s3:ListBucketVersions", BUCKET_ARN), ("s3:GetBucketPolicy", BUCKET_ARN)]
    assert [r for r in refused if _allows(statements, *r, bucket_id)] == []


def test_captures_and_delivery_errors_expire_after_the_retention_days(parts) -> None:
    storage, _ = parts
    rules = [r for b in storage.find_resources("AWS::S3::Bucket").values()
             for r in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])]
    expiring = {r["Prefix"]: r["ExpirationInDays"] for r in rules if "Prefix" in r}
    assert expiring == {"capture/": 45, "capture-errors/": 45}


def test_an_expired_capture_s_last_version_is_deleted_a_day_later_not_kept_with_the_bucket_s_versions(parts) -> None:
    # Given the versioned artifact bucket, whose bucket-wide rule keeps noncurrent versions for a year
    storage, _ = parts
    (bucket,) = storage.find_resources("AWS::S3::Bucket", {"Properties": {"VersioningConfiguration":
                                                                          {"Status": "Enabled"}}}).values()
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    # Then expiring a capture (which only makes it noncurrent) deletes that version a day later
    noncurrent = {r.get("Prefix", "(bucket)"): r.get("NoncurrentVersionExpiration") for r in rules}
    assert noncurrent == {"(bucket)": {"NoncurrentDays": 365}, "capture/": {"NoncurrentDays": 1},
                          "capture-errors/": {"NoncurrentDays": 1}}


def test_the_lambda_may_put_records_to_that_one_stream_and_knows_what_to_capture(parts) -> None:
    storage, serving = parts
    (function,) = serving.find_resources("AWS::Lambda::Function").values()
    env = function["Properties"]["Environment"]["Variables"]
    assert env["CAPTURE_SHARE"] == "0.25" and env["CAPTURE_DROP_FIELDS"] == "Gender,Family_Income"
    assert "Fn::ImportValue" in json.dumps(env["CAPTURE_STREAM"]), "the storage stack's stream"
    statements = [s for p in serving.find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    firehose = [s for s in statements if "firehose" in json.dumps(s["Action"])]
    (grant,) = firehose
    assert sorted(grant["Action"]) == ["firehose:PutRecord", "firehose:PutRecordBatch"]
    assert "Fn::ImportValue" in grant["Resource"] and "*" not in json.dumps(grant["Resource"])


def test_without_a_stream_the_lambda_captures_nothing_and_may_put_nothing() -> None:
    app = _app()
    stack = Stack(app, "Serving")
    PredictApi(stack, "Api", endpoint_name="ep", endpoint_arn="arn:aws:sagemaker:us-east-1:1:endpoint/ep",
               memory_mb=256, throttle_rate=1, throttle_burst=1, api_key_required=False, max_records=100)
    template = Template.from_stack(stack)
    (function,) = template.find_resources("AWS::Lambda::Function").values()
    assert not any(k.startswith("CAPTURE_") for k in function["Properties"]["Environment"]["Variables"])
    assert "firehose" not in json.dumps(template.find_resources("AWS::IAM::Policy"))


def test_retention_must_be_a_positive_number_of_days() -> None:
    stack = Stack(_app(), "S")
    with pytest.raises(ValueError, match="retention_days must be at least 1"):
        CaptureStream(stack, "C", bucket=ArtifactBucket(stack, "A").bucket, retention_days=0)


def _statements(template: Template) -> list[dict[str, Any]]:
    return [s for p in template.find_resources("AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_the_drift_workflow_s_role_reads_the_capture_prefix_only() -> None:
    app = _app()
    stack = BootstrapStack(app, "Bootstrap", github_repo=REPO, data_bucket_name="team-artifacts")
    template = Template.from_stack(stack)
    roles = {k: r for k, r in template.find_resources("AWS::IAM::Role").items() if "CaptureReader" in k}
    (role,) = roles.values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    # The drift job runs in the monitor environment (drift.yml): its token's subject names that, not the branch
    assert trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == \
        f"repo:{REPO}:environment:monitor"
    (policy,) = [p for p in template.find_resources("AWS::IAM::Policy").values()
                 if "CaptureReader" in json.dumps(p["Properties"]["Roles"])]
    by_action = {json.dumps(s["Action"]): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(by_action) == {'"s3:ListBucket"', '"s3:GetObject"'}, "read, nothing else"
    assert by_action['"s3:ListBucket"']["Condition"] == {"StringLike": {"s3:prefix": ["capture/*", "capture"]}}
    assert json.dumps(by_action['"s3:GetObject"']["Resource"]).endswith('team-artifacts/capture/*"]]}')
    assert "MonitorRoleArn" in template.to_json()["Outputs"]


def test_the_reader_may_log_to_the_given_mlflow_server_only_and_is_nag_clean() -> None:
    app = _app()
    stack = Stack(app, "Reader")
    from aws_cdk import aws_iam as iam

    provider = iam.OidcProviderNative(stack, "P", url="https://token.actions.githubusercontent.com",
                                      client_ids=["sts.amazonaws.com"])
    server = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"
    CaptureReader(stack, "R", provider=provider, github_repo=REPO, bucket_name="b",
                  mlflow_tracking_server_arn=server)
    statements = _statements(Template.from_stack(stack))
    mlflow = [s for s in statements if "sagemaker-mlflow" in json.dumps(s["Action"])]
    assert [s["Resource"] for s in mlflow] == [server]
    # The drift job's calls, each by name (tests/infra/test_drift_mlflow_calls.py checks the job makes no other)
    assert mlflow[0]["Action"] == [
        "sagemaker-mlflow:CreateExperiment", "sagemaker-mlflow:CreateRun",
        "sagemaker-mlflow:GetDownloadURIForModelVersionArtifacts", "sagemaker-mlflow:GetExperiment",
        "sagemaker-mlflow:GetExperimentByName", "sagemaker-mlflow:GetRegisteredModel", "sagemaker-mlflow:GetRun",
        "sagemaker-mlflow:LogBatch", "sagemaker-mlflow:SetExperimentTag", "sagemaker-mlflow:UpdateRun"]
    _nag_clean(app)
    with pytest.raises(ValueError, match="OWNER/REPO"):
        CaptureReader(Stack(App(), "X"), "R", provider=provider, github_repo="nope", bucket_name="b")
    with pytest.raises(ValueError, match="GitHub environment name"):
        CaptureReader(Stack(App(), "Y"), "R", provider=provider, github_repo=REPO, bucket_name="b",
                      environment="monitor:x")


def test_the_app_captures_in_both_environments_and_context_switches_it_off(tmp_path: Path) -> None:
    off = build_app(context={**inputs(tmp_path, b"m"), "capture_enabled": "false"},
                    outdir=str(tmp_path / "out")).synth()
    serving = Template.from_json(off.get_stack_by_name("StudentScore-dev-Serving").template)
    (function,) = serving.find_resources("AWS::Lambda::Function").values()
    assert "CAPTURE_STREAM" not in function["Properties"]["Environment"]["Variables"]
    alarms = serving.find_resources("AWS::CloudWatch::Alarm").values()
    assert not [a for a in alarms if a["Properties"]["AlarmDescription"].startswith("Capture")], "nothing captured"
    storage = off.get_stack_by_name("StudentScore-dev-Storage").template
    assert "CaptureUri" in storage["Outputs"], "the stream stays: switching capture on again loses no history"


@pytest.mark.parametrize(("context", "fragment"), [({"capture_share": "1.5"}, "capture_share must be 0..1"),
                                                   ({"capture_retention_days": "0"}, "at least 1"),
                                                   ({"capture_enabled": "maybe"}, "capture_enabled")])
def test_bad_capture_settings_are_refused_by_name(tmp_path: Path, context: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_app(context={**inputs(tmp_path, b"m"), **context}, outdir=str(tmp_path / "out"))
