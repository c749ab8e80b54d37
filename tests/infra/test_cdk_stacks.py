"""Tests for the CDK app: real in-process synth (jsii) with cdk-nag, asserted on resource properties.

Logical ids are never written here: where one resource must point at another, the target's id is looked
up in the same template by its type and properties.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from infra import app as cdk_app
from infra import mlflow_calls, nag
from infra.api import schema as api_schema
from infra.api.infrastructure import LAMBDA_TIMEOUT
from infra.api.runtime import handler
from infra.app import ConfigError, build_app
from infra.bootstrap.infrastructure import RELEASE_MLFLOW_CALLS
from infra.capture.infrastructure import BUFFER_INTERVAL, DRIFT_MLFLOW_CALLS
from infra.monitoring.infrastructure import MEANING
from infra.nag import synth_or_report
from infra.settings import ENVIRONMENTS, settings_from_context
from infra.stacks import BootstrapStack
from serving import contract

pytestmark = pytest.mark.slow

REPO = "acme/student-score"
ROOT = Path(__file__).resolve().parents[2]
RUNTIME_REQUIREMENTS = Path(__file__).resolve().parents[2] / "infra" / "api" / "runtime" / "requirements.txt"


class Synth:
    """One synthesized app: templates by stack name, and the cloud assembly directory."""

    def __init__(self, outdir: Path, context: dict[str, Any]) -> None:
        self.outdir = outdir
        assembly = build_app(context=context, outdir=str(outdir)).synth()
        self.templates = {stack.stack_name: Template.from_json(stack.template) for stack in assembly.stacks}
        self.raw = {stack.stack_name: stack.template for stack in assembly.stacks}

    def only(self, template: str, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.templates[template].find_resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type} in {template}, found {len(found)}"
        return next(iter(found.items()))


def inputs(base: Path, model_bytes: bytes) -> dict[str, str]:
    image = base / "image"
    image.mkdir(parents=True)
    (image / "Dockerfile").write_text("FROM python:3.12-slim\n")
    tarball = base / "model.tar.gz"
    tarball.write_bytes(model_bytes)
    return {"model_tarball": str(tarball), "serving_dir": str(image)}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    base = tmp_path_factory.mktemp("dev")
    return Synth(base / "out", {**inputs(base, b"model one"), "github_repo": REPO})


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    base = tmp_path_factory.mktemp("prod")
    return Synth(base / "out", {**inputs(base, b"model one"), "env": "prod", "alarm_email": "oncall@example.com"})


@pytest.fixture(scope="module")
def dev_new_model(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """A retrained model, synthesized for a concrete account and region as ``cdk deploy`` does."""
    base = tmp_path_factory.mktemp("dev2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDK_DEFAULT_ACCOUNT", "123456789012")
        patch.setenv("CDK_DEFAULT_REGION", "eu-west-1")
        return Synth(base / "out", inputs(base, b"model two, retrained"))


SERVING = "StudentScore-dev-Serving"
PROD_SERVING = "StudentScore-prod-Serving"


# --- the endpoint -----------------------------------------------------------------------------------


def test_the_model_runs_the_image_asset_on_the_tarball_asset_without_a_fixed_name(dev: Synth) -> None:
    _, model = dev.only(SERVING, "AWS::SageMaker::Model")
    props = model["Properties"]
    assert "ModelName" not in props, "a fixed name would collide when the model is replaced"
    container = props["PrimaryContainer"]
    assert "dkr.ecr" in json.dumps(container["Image"]), "the image must be the DockerImageAsset in ECR"
    assert json.dumps(container["ModelDataUrl"]).startswith('{"Fn::Sub": "s3://cdk-')
    assert container["ModelDataUrl"]["Fn::Sub"].endswith(".gz")


def test_the_endpoint_config_is_serverless_with_the_dev_sizes(dev: Synth) -> None:
    model_id, _ = dev.only(SERVING, "AWS::SageMaker::Model")
    _, config = dev.only(SERVING, "AWS::SageMaker::EndpointConfig")
    assert "EndpointConfigName" not in config["Properties"]
    (variant,) = config["Properties"]["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["ModelName"] == {"Fn::GetAtt": [model_id, "ModelName"]}
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 5}


def test_the_endpoint_is_named_after_its_stack_and_follows_the_config(dev: Synth, prod: Synth) -> None:
    # Named after the stack, never a shared literal: dev and prod (two stacks) cannot collide, and the alarms a
    # canary names can be made before the endpoint, from that name.
    config_id, _ = dev.only(SERVING, "AWS::SageMaker::EndpointConfig")
    _, endpoint = dev.only(SERVING, "AWS::SageMaker::Endpoint")
    assert endpoint["Properties"]["EndpointName"] == SERVING
    assert prod.only(PROD_SERVING, "AWS::SageMaker::Endpoint")[1]["Properties"]["EndpointName"] == PROD_SERVING
    assert endpoint["Properties"]["EndpointConfigName"] == {"Fn::GetAtt": [config_id, "EndpointConfigName"]}


def test_the_execution_role_reads_only_the_model_object_and_pulls_only_its_image(dev: Synth) -> None:
    template = dev.templates[SERVING]
    role_id, _ = next(
        (rid, r)
        for rid, r in template.find_resources("AWS::IAM::Role").items()
        if "sagemaker.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    )
    policies = [
        p
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    s3_statements = [s for s in statements if any(str(a).startswith("s3:") for a in _list(s["Action"]))]
    assert [s["Action"] for s in s3_statements] == ["s3:GetObject"]
    model_url = dev.only(SERVING, "AWS::SageMaker::Model")[1]["Properties"]["PrimaryContainer"][
        "ModelDataUrl"
    ]
    object_key = model_url["Fn::Sub"].rsplit("/", 1)[1]
    resource = json.dumps(s3_statements[0]["Resource"])
    assert f'"/{object_key}"' in resource, "read that one object only"
    assert "*" not in resource
    pull = next(s for s in statements if "ecr:BatchGetImage" in _list(s["Action"]))
    assert ":repository/" in json.dumps(pull["Resource"])
    assert "container-assets" in json.dumps(pull["Resource"]), "pull from the assets repository only"


# --- the Lambda and the API ----------------------------------------------------------------------------


def test_the_lambda_runs_the_handler_with_powertools_and_knows_the_endpoint(dev: Synth) -> None:
    endpoint_id, _ = dev.only(SERVING, "AWS::SageMaker::Endpoint")
    _, function = dev.only(SERVING, "AWS::Lambda::Function")
    props = function["Properties"]
    assert props["Handler"] == "handler.lambda_handler"
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Timeout"] == 28
    env = props["Environment"]["Variables"]
    assert env["ENDPOINT_NAME"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    assert env["MAX_RECORDS"] == "100"


def test_the_lambda_layer_is_the_powertools_release_the_tests_run(dev: Synth) -> None:
    # Given the version the tests import (the venv installs infra/api/runtime/requirements.txt's pin via uv.lock)
    from importlib.metadata import version

    tested = version("aws-lambda-powertools")
    pins = re.findall(r"^aws-lambda-powertools==(\S+)", RUNTIME_REQUIREMENTS.read_text(), re.MULTILINE)
    assert pins == [tested], "the Lambda's requirements pin the Powertools the tests run"
    # Then the layer is whatever AWS's public SSM parameter for exactly that release names, resolved at deploy
    _, function = dev.only(SERVING, "AWS::Lambda::Function")
    (layer,) = function["Properties"]["Layers"]
    parameter = dev.raw[SERVING]["Parameters"][layer["Ref"]]
    assert parameter == {"Type": "AWS::SSM::Parameter::Value<String>",
                         "Default": f"/aws/service/powertools/python/arm64/python3.13/{tested}"}


def test_the_lambda_asset_carries_the_wire_contract_itself(dev: Synth) -> None:
    assets = [d for d in dev.outdir.glob("asset.*") if (d / "handler.py").is_file()]
    assert len(assets) == 1, "one Lambda asset holding the handler"
    shipped = assets[0] / "contract.py"
    assert shipped.is_file() and not shipped.is_symlink(), "the link must be followed into a real file"
    assert shipped.read_bytes() == (Path(__file__).resolve().parents[2] / "serving" / "contract.py").read_bytes()
    assert not (assets[0] / "__init__.py").exists()


def test_the_lambda_may_invoke_its_endpoint_and_nothing_else(dev: Synth) -> None:
    endpoint_id, _ = dev.only(SERVING, "AWS::SageMaker::Endpoint")
    template = dev.templates[SERVING]
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    invoke = [s for s in statements if "sagemaker:InvokeEndpoint" in _list(s["Action"])]
    assert invoke == [
        {"Action": "sagemaker:InvokeEndpoint", "Effect": "Allow", "Resource": {"Ref": endpoint_id}}
    ]
    assert not any(
        "AWSLambdaBasicExecutionRole" in json.dumps(r)
        for r in template.find_resources("AWS::IAM::Role").values()
    )


def test_the_client_budget_ends_inside_the_lambda_timeout() -> None:
    worst = handler.worst_case_seconds(
        connect_timeout=handler.DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout=handler.DEFAULT_READ_TIMEOUT_S,
        max_attempts=handler.DEFAULT_MAX_ATTEMPTS,
    )
    assert worst < LAMBDA_TIMEOUT.to_seconds() < 29


def test_the_api_has_a_score_stage_with_throttling_and_access_logs(dev: Synth) -> None:
    template = dev.templates[SERVING]
    template.has_resource_properties("AWS::ApiGateway::RestApi", {"Name": f"{SERVING} API"})
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "score",
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {"ThrottlingRateLimit": 10, "ThrottlingBurstLimit": 20, "LoggingLevel": "ERROR"}
                    )
                ]
            ),
        },
    )


def test_each_environments_5xx_alarm_watches_only_its_own_api(dev: Synth, prod: Synth) -> None:
    # Given dev and prod, which share an account and region by default: API Gateway's metrics are dimensioned by
    # ApiName (+ Stage), so a shared API name would let prod's 5xx alarm count dev's errors
    names = {}
    for synth, stack in ((dev, SERVING), (prod, PROD_SERVING)):
        _, api = synth.only(stack, "AWS::ApiGateway::RestApi")
        names[stack] = api["Properties"]["Name"]
        stage_id, _ = synth.only(stack, "AWS::ApiGateway::Stage")
        alarms = synth.templates[stack].find_resources("AWS::CloudWatch::Alarm", {
            "Properties": {"Namespace": "AWS/ApiGateway", "MetricName": "5XXError"}})
        (alarm,) = alarms.values()
        # Then each alarm's ApiName dimension is its own stack's API and nothing else
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        assert dimensions == {"ApiName": names[stack], "Stage": {"Ref": stage_id}}, stack
    assert names[SERVING] != names[PROD_SERVING], "dev and prod APIs must not share the metrics' ApiName"


def test_post_predict_is_validated_and_open_in_dev(dev: Synth) -> None:
    template = dev.templates[SERVING]
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "predict-student-score"})
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "ApiKeyRequired": False,
            "RequestValidatorId": Match.any_value(),
            "RequestModels": {"application/json": Match.any_value()},
            "Integration": Match.object_like({"Type": "AWS_PROXY"}),
        },
    )
    template.has_resource_properties("AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True})
    _, model = dev.only(SERVING, "AWS::ApiGateway::Model")
    schema = model["Properties"]["Schema"]
    validator = jsonschema.Draft4Validator(schema)
    record = {"Hours_Studied": 23}
    for accepted in (record, [record], [record] * 100):
        assert validator.is_valid(accepted), accepted
    for refused in ([], [record] * 101, [record, 3], "text", {"instances": [record] * 500},
                    {"dataframe_split": {"columns": [], "data": []}}):
        assert not validator.is_valid(refused), refused
    template.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    template.resource_count_is("AWS::ApiGateway::ApiKey", 0)


def test_cors_is_on_the_preflight_and_on_the_gateways_own_errors(dev: Synth) -> None:
    template = dev.templates[SERVING]
    template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "OPTIONS",
            "Integration": Match.object_like(
                {
                    "IntegrationResponses": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "ResponseParameters": Match.object_like(
                                        {"method.response.header.Access-Control-Allow-Origin": "'*'"}
                                    )
                                }
                            )
                        ]
                    )
                }
            ),
        },
    )
    for response_type in ("DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY"):
        template.has_resource_properties(
            "AWS::ApiGateway::GatewayResponse",
            {
                "ResponseType": response_type,
                "ResponseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
            },
        )


def test_the_api_request_model_is_the_wire_contracts_schema(dev: Synth) -> None:
    """The deployed validator and the stand-in's gateway check bodies against one document."""
    models = [r["Properties"] for r in dev.templates[SERVING].find_resources("AWS::ApiGateway::Model").values()]
    assert len(models) == 1
    assert models[0]["ContentType"] == "application/json"
    assert models[0]["Schema"] == contract.request_schema(max_records=ENVIRONMENTS["dev"].max_records)


@pytest.mark.parametrize(("document", "named"), [
    ({"type": "object", "patternProperties": {}}, "patternProperties"),
    ({"type": ["object", "null"]}, "type"),
    ({"type": "date"}, "type"),
    ({"$schema": "http://json-schema.org/draft-07/schema#"}, "version"),
])
def test_a_schema_the_construct_cannot_map_fails_the_synth_naming_it(document: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        api_schema.json_schema(document)


def test_a_body_the_validator_refuses_is_told_what_a_body_must_be(dev: Synth) -> None:
    # Given the synthesized gateway response for a body the request validator refuses
    found = [r["Properties"] for r in dev.templates[SERVING].find_resources("AWS::ApiGateway::GatewayResponse").values()
             if r["Properties"]["ResponseType"] == "BAD_REQUEST_BODY"]
    assert len(found) == 1
    # Then its body is the gateway's JSON shape, naming the deployed record bound and the refused wrappers
    answer = json.loads(found[0]["ResponseTemplates"]["application/json"])
    assert set(answer) == {"message"}, "the gateway's shape: capacity/classify.py tells origins apart by it"
    assert f"1 to {ENVIRONMENTS['dev'].max_records} records" in answer["message"]
    assert all(wrapper in answer["message"] for wrapper in ("instances", "dataframe_records", "dataframe_split"))


# AWS, "Alarms and logs for tracking metrics from serverless endpoints": the exhaustive list of what a serverless
# endpoint publishes (MemoryUtilization is in another namespace).
SERVERLESS_METRICS = {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency", "OverheadLatency",
                      "ModelSetupTime", "ServerlessConcurrentExecutionsUtilization"}

PERCENTILES = "Percentiles"
VALID_STATISTICS = {  # CloudWatch's names for the page's "Valid statistics" ("Max" is Maximum, "Sample Count" SampleCount)
    "Invocation4XXErrors": {"Average", "Sum"}, "Invocation5XXErrors": {"Average", "Sum"},
    "ModelLatency": {"Average", "Sum", "Minimum", "Maximum", "SampleCount", PERCENTILES},
    "OverheadLatency": {"Average", "Sum", "Minimum", "Maximum", "SampleCount"},
    "ModelSetupTime": {"Average", "Minimum", "Maximum", "SampleCount", PERCENTILES},
    "ServerlessConcurrentExecutionsUtilization": {"Average", "Maximum", "Minimum"},
}


def test_alarms_watch_only_metrics_a_serverless_endpoint_publishes_and_notify_the_topic(dev: Synth) -> None:
    template = dev.templates[SERVING]
    alarms = template.find_resources("AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert watched == {
        ("AWS/SageMaker", "Invocation5XXErrors"),
        ("AWS/SageMaker", "Invocation4XXErrors"),
        ("AWS/SageMaker", "ModelLatency"),
        ("AWS/SageMaker", "OverheadLatency"),
        ("AWS/SageMaker", "ModelSetupTime"),
        ("AWS/SageMaker", "ServerlessConcurrentExecutionsUtilization"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/ApiGateway", "5XXError"),
        ("StudentScore", "CaptureFailed"),
        ("AWS/Firehose", "ThrottledRecords"),
        ("AWS/Firehose", "DeliveryToS3.DataFreshness"),
    }
    endpoint_alarms = [a for a in alarms if a["Properties"]["Namespace"] == "AWS/SageMaker"]
    assert {a["Properties"]["MetricName"] for a in endpoint_alarms} <= SERVERLESS_METRICS
    for alarm in endpoint_alarms:
        assert alarm["Properties"]["Dimensions"] == [{"Name": "EndpointName", "Value": SERVING},
                                                     {"Name": "VariantName", "Value": "AllTraffic"}]
    # Each statistic one the page lists for its metric ("Amazon SageMaker AI metrics in Amazon CloudWatch"): a p90 on
    # OverheadLatency, which lists no percentiles, could leave its alarm in INSUFFICIENT_DATA, never firing
    for alarm in endpoint_alarms:
        name, props = alarm["Properties"]["MetricName"], alarm["Properties"]
        statistic = props.get("Statistic") or props.get("ExtendedStatistic")
        assert statistic in VALID_STATISTICS[name] or (statistic.startswith("p") and PERCENTILES in
                                                       VALID_STATISTICS[name]), (name, statistic)
    latency = next(a for a in alarms if a["Properties"]["MetricName"] == "ModelLatency")
    assert latency["Properties"]["Threshold"] == 2000 * 1000, "ModelLatency is in microseconds"
    assert all(a["Properties"]["TreatMissingData"] == "notBreaching" for a in alarms)
    assert all(a["Properties"]["Period"] == 60 for a in alarms), "one-minute periods, to fire inside a canary"
    topic_id, _ = dev.only(SERVING, "AWS::SNS::Topic")
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms), "every alarm notifies"


def test_capture_alarms_watch_the_metric_the_lambda_emits_and_the_stream_it_puts_to(dev: Synth) -> None:
    # Given the Lambda's environment and the capture stream it puts to (the storage stack's, by export)
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    _, function = dev.only(SERVING, "AWS::Lambda::Function")
    env = function["Properties"]["Environment"]["Variables"]
    alarms = {a["Properties"]["AlarmDescription"].split(":")[0]: a["Properties"]
              for a in dev.templates[SERVING].find_resources("AWS::CloudWatch::Alarm").values()}
    # When Powertools emits the handler's capture-loss metric under that environment (as the handler does)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_SERVICE_NAME", env["POWERTOOLS_SERVICE_NAME"])
        metrics = Metrics(namespace=env["POWERTOOLS_METRICS_NAMESPACE"])
        metrics.add_metric(name=handler.CAPTURE_FAILED, unit=MetricUnit.Count, value=1)
        emitted = metrics.serialize_metric_set()
    (declared,) = emitted["_aws"]["CloudWatchMetrics"]
    # Then the loss alarm watches exactly that metric: namespace, name and dimensions (EMF names them, values beside)
    lost = alarms["CaptureFailed"]
    assert lost["Namespace"] == declared["Namespace"]
    assert lost["MetricName"] == declared["Metrics"][0]["Name"] == "CaptureFailed"
    assert lost["Dimensions"] == [{"Name": name, "Value": emitted[name]} for name in declared["Dimensions"][0]]
    assert (lost["Statistic"], lost["Threshold"]) == ("Sum", ENVIRONMENTS["dev"].alarm_error_count)
    # And the stream's alarms are on the stream the Lambda puts to, by Firehose's own dimension
    for name, metric in (("CaptureThrottled", "ThrottledRecords"), ("CaptureDeliveryLate", "DeliveryToS3.DataFreshness")):
        assert (alarms[name]["Namespace"], alarms[name]["MetricName"]) == ("AWS/Firehose", metric)
        assert alarms[name]["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": env["CAPTURE_STREAM"]}]
    # Late means past what buffering explains: dynamic partitioning may take 1.5 x the buffering hint, AWS's
    # guidance is the 15-minute buffering limit
    late = alarms["CaptureDeliveryLate"]
    assert late["Statistic"] == "Maximum"
    assert 1.5 * BUFFER_INTERVAL.to_seconds() < late["Threshold"] <= 900


def test_the_readme_says_what_every_alarm_means(dev: Synth) -> None:
    created = {a["Properties"]["AlarmDescription"].split(":")[0]
               for a in dev.templates[SERVING].find_resources("AWS::CloudWatch::Alarm").values()}
    table = re.findall(r"^\| `(\w+)`", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert created == set(MEANING) and created <= set(table), sorted(created - set(table))


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_mails_the_given_address(
        prod: Synth) -> None:
    key_id, key = prod.only(PROD_SERVING, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    grants = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
              if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(grants) == 1 and set(grants[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    _, topic = prod.only(PROD_SERVING, "AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    prod.templates[PROD_SERVING].has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"})


def test_without_an_email_the_topic_has_no_subscription(dev: Synth) -> None:
    dev.templates[SERVING].resource_count_is("AWS::SNS::Subscription", 0)
    dev.templates[SERVING].resource_count_is("AWS::SNS::Topic", 1)


def test_a_new_config_reaches_the_endpoint_as_a_canary_that_rolls_back_on_errors_and_latency(
        dev: Synth, prod: Synth) -> None:
    for synth, stack, percent, wait in ((dev, SERVING, 50, 300), (prod, PROD_SERVING, 10, 600)):
        template = synth.templates[stack]
        _, endpoint = synth.only(stack, "AWS::SageMaker::Endpoint")
        config = endpoint["Properties"]["DeploymentConfig"]
        policy = config["BlueGreenUpdatePolicy"]
        assert policy["TrafficRoutingConfiguration"] == {
            "Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": percent},
            "WaitIntervalInSeconds": wait}
        assert policy["TerminationWaitInSeconds"] == wait, "a final baking period with all the traffic"
        assert 2 * wait < policy["MaximumExecutionTimeoutInSeconds"] <= 28800
        alarms = template.find_resources("AWS::CloudWatch::Alarm")
        rollback = {alarms[a["AlarmName"]["Ref"]]["Properties"]["MetricName"]
                    for a in config["AutoRollbackConfiguration"]["Alarms"]}
        assert rollback == {"Invocation5XXErrors", "ModelLatency"}
        assert "RollingUpdatePolicy" not in config, "AWS excludes serverless endpoints from rolling deployments"


def test_the_execution_role_may_describe_the_rollback_alarms_and_no_other(dev: Synth) -> None:
    _, endpoint = dev.only(SERVING, "AWS::SageMaker::Endpoint")
    rollback = [a["AlarmName"]["Ref"] for a in endpoint["Properties"]["DeploymentConfig"]
                ["AutoRollbackConfiguration"]["Alarms"]]
    statements = [s for p in dev.templates[SERVING].find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if "cloudwatch:DescribeAlarms" in _list(s["Action"])]
    assert len(statements) == 1
    assert sorted(json.dumps(r) for r in _list(statements[0]["Resource"])) == sorted(
        json.dumps({"Fn::GetAtt": [alarm_id, "Arn"]}) for alarm_id in rollback)


def test_the_execution_role_has_every_action_aws_lists_for_a_createmodel_role(dev: Synth) -> None:
    # AWS, "CreateModel API: Execution Role Permissions" (sagemaker/latest/dg/sagemaker-roles.html), scoped form.
    aws_list = {"cloudwatch:PutMetricData", "logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup",
                "logs:DescribeLogStreams", "ecr:GetAuthorizationToken", "s3:GetObject",
                "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"}
    template = dev.templates[SERVING]
    role_id = next(rid for rid, role in template.find_resources("AWS::IAM::Role").items()
                   if "sagemaker.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"]))
    allowed = {action for policy in template.find_resources("AWS::IAM::Policy").values()
               if {"Ref": role_id} in policy["Properties"]["Roles"]
               for statement in policy["Properties"]["PolicyDocument"]["Statement"] if statement["Effect"] == "Allow"
               for action in _list(statement["Action"])}
    assert aws_list <= allowed, f"missing from the SageMaker execution role: {sorted(aws_list - allowed)}"


def test_the_api_leaves_the_account_logging_role_to_the_account_stack(dev: Synth) -> None:
    # One AWS::ApiGateway::Account per account and region (AWS's advice), in a stack of its own
    dev.templates[SERVING].resource_count_is("AWS::ApiGateway::Account", 0)
    dev.templates["StudentScore-dev-Storage"].resource_count_is("AWS::ApiGateway::Account", 0)
    account = dev.templates["StudentScore-Account"]
    account.resource_count_is("AWS::ApiGateway::Account", 1)
    role_id, _ = dev.only("StudentScore-Account", "AWS::IAM::Role")
    account.has_resource("AWS::ApiGateway::Account", {
        "Properties": {"CloudWatchRoleArn": {"Fn::GetAtt": [role_id, "Arn"]}}, "DeletionPolicy": "Retain"})
    account.has_resource("AWS::IAM::Role", {"DeletionPolicy": "Retain"})
    manifest = json.loads((dev.outdir / "manifest.json").read_text())
    assert "StudentScore-Account" in manifest["artifacts"][SERVING]["dependencies"], "deployed first"


def test_the_serving_stack_outputs_the_predict_url_and_endpoint_name(dev: Synth) -> None:
    endpoint_id, _ = dev.only(SERVING, "AWS::SageMaker::Endpoint")
    outputs = dev.raw[SERVING]["Outputs"]
    assert outputs["EndpointName"]["Value"] == {"Fn::GetAtt": [endpoint_id, "EndpointName"]}
    stage_id, _ = next(
        (sid, st)
        for sid, st in dev.templates[SERVING].find_resources("AWS::ApiGateway::Stage").items()
        if st["Properties"]["StageName"] == "score"
    )
    parts = outputs["PredictUrl"]["Value"]["Fn::Join"][1]
    assert ".execute-api." in parts
    assert parts[-3:] == ["/", {"Ref": stage_id}, "/predict-student-score"]


# --- environments -------------------------------------------------------------------------------------


def test_prod_gets_its_sizes_a_warm_instance_and_tighter_alarms(prod: Synth) -> None:
    _, config = prod.only(PROD_SERVING, "AWS::SageMaker::EndpointConfig")
    assert config["Properties"]["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 20,
        "ProvisionedConcurrency": 1,
    }
    template = prod.templates[PROD_SERVING]
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "MethodSettings": Match.array_with(
                [Match.object_like({"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 100})]
            )
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "ModelLatency", "Threshold": 1000 * 1000}
    )


def test_prod_requires_an_api_key_with_a_usage_plan(prod: Synth) -> None:
    template = prod.templates[PROD_SERVING]
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "POST", "ApiKeyRequired": True}
    )
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": 50, "BurstLimit": 100}, "ApiStages": Match.any_value()},
    )
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    assert "ApiKeyId" in prod.raw[PROD_SERVING]["Outputs"]


def test_context_overrides_one_setting_and_keeps_the_rest() -> None:
    context = {"env": "prod", "endpoint_max_concurrency": "7", "api_key_required": "false"}
    settings = settings_from_context(context.get)
    assert (settings.endpoint_max_concurrency, settings.api_key_required) == (7, False)
    assert settings.endpoint_memory_mb == ENVIRONMENTS["prod"].endpoint_memory_mb


def test_typed_context_from_cdk_json_keeps_whole_numbers_and_bools() -> None:
    context = {"endpoint_max_concurrency": 7.0, "lambda_memory_mb": 128, "throttle_rate": 12, "capture_enabled": False}
    settings = settings_from_context(context.get)
    assert (settings.endpoint_max_concurrency, settings.lambda_memory_mb) == (7, 128)
    assert (settings.throttle_rate, settings.capture_enabled) == (12.0, False)


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_the_cold_start_alarm_fires_before_a_cold_start_outlasts_the_lambda_s_first_attempt(env: str) -> None:
    # The cold start happens inside InvokeEndpoint: past the read timeout the caller's first attempt is lost.
    assert ENVIRONMENTS[env].alarm_model_setup_ms < handler.DEFAULT_READ_TIMEOUT_S * 1000


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"env": "staging"}, "unknown env"),
        ({"endpoint_memory_mb": "1500"}, "endpoint_memory_mb must be one of"),
        ({"endpoint_provisioned_concurrency": "9"}, "provisioned"),
        ({"api_key_required": "yes"}, "api_key_required"),
        ({"canary_percent": "60"}, "canary_percent must be 1..50"),
        ({"canary_wait_s": "60"}, "canary_wait_s must be 180..3600"),
        ({"alarm_concurrency_utilization": "1.5"}, "alarm_concurrency_utilization"),
        ({"alarm_model_setup_ms": "0"}, "alarm thresholds must be positive"),
        # AWS Lambda's memory range: 0 synthesized MemorySize: 0 and failed only at deploy
        ({"lambda_memory_mb": "0"}, r"^lambda_memory_mb must be 128\.\.10240, got 0$"),
        ({"lambda_memory_mb": 10241}, r"^lambda_memory_mb must be 128\.\.10240, got 10241$"),
        # cdk.json's numbers arrive typed: 7.9 was cut to 7, True counted as 1
        ({"endpoint_max_concurrency": 7.9}, r"^context endpoint_max_concurrency: expected a whole number, got 7\.9$"),
        ({"endpoint_max_concurrency": True}, r"^context endpoint_max_concurrency: expected a whole number, got True$"),
        ({"throttle_burst": "20.5"}, r"^context throttle_burst: expected a whole number, got '20\.5'$"),
        ({"throttle_rate": True}, r"^context throttle_rate: expected a number, got True$"),
        ({"api_key_required": 1}, r"^context api_key_required: expected true or false, got 1$"),
    ],
)
def test_bad_context_is_refused_by_name(context: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        settings_from_context(context.get)


# --- replacement -----------------------------------------------------------------------------------------


def test_a_new_tarball_replaces_model_and_config_and_updates_the_same_endpoint(
    dev: Synth, dev_new_model: Synth
) -> None:
    (old_model_id, old_model), (new_model_id, new_model) = (
        s.only(SERVING, "AWS::SageMaker::Model") for s in (dev, dev_new_model)
    )
    old_url = old_model["Properties"]["PrimaryContainer"]["ModelDataUrl"]
    new_url = new_model["Properties"]["PrimaryContainer"]["ModelDataUrl"]
    assert old_url != new_url, "a new tarball must change ModelDataUrl, which replaces the Model"
    # Neither model nor config has a fixed name, so CloudFormation gives the replacements fresh names.
    for synth in (dev, dev_new_model):
        assert "ModelName" not in synth.only(SERVING, "AWS::SageMaker::Model")[1]["Properties"]
        assert (
            "EndpointConfigName" not in synth.only(SERVING, "AWS::SageMaker::EndpointConfig")[1]["Properties"]
        )
    # The endpoint is the same resource with the same name: CloudFormation updates it in place.
    (old_endpoint_id, old_endpoint), (new_endpoint_id, new_endpoint) = (
        s.only(SERVING, "AWS::SageMaker::Endpoint") for s in (dev, dev_new_model)
    )
    assert old_endpoint_id == new_endpoint_id
    assert old_endpoint["Properties"].get("EndpointName") == new_endpoint["Properties"].get("EndpointName")


# --- storage and bootstrap ---------------------------------------------------------------------------------


def test_the_artifact_bucket_is_versioned_encrypted_private_tls_only_and_logged(dev: Synth) -> None:
    template = dev.templates["StudentScore-dev-Storage"]
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": Match.object_like({"DestinationBucketName": Match.any_value()}),
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                ),
                "Version": Match.any_value(),
            }
        },
    )
    template.has_resource("AWS::S3::Bucket", {"DeletionPolicy": "Retain"})


def test_the_deploy_role_trusts_only_the_repositorys_dev_and_prod_environments(dev: Synth) -> None:
    template = dev.templates["StudentScore-Bootstrap"]
    template.has_resource_properties(
        "AWS::IAM::OIDCProvider",
        {"Url": "https://token.actions.githubusercontent.com", "ClientIdList": ["sts.amazonaws.com"]},
    )
    provider_id, _ = dev.only("StudentScore-Bootstrap", "AWS::IAM::OIDCProvider")
    _, role = dev.only("StudentScore-Bootstrap", "AWS::IAM::Role")
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": {"Ref": provider_id}}
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            # GitHub's OIDC subject for a job that references an environment
            "token.actions.githubusercontent.com:sub": [f"repo:{REPO}:environment:dev",
                                                        f"repo:{REPO}:environment:prod"],
        }
    }


def test_the_deploy_session_outlasts_every_release_job_that_assumes_the_role(dev: Synth) -> None:
    # Given the release jobs that assume the deploy role, and how long GitHub lets each run
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "train-deploy.yml").read_text())
    deploying = {name: job["timeout-minutes"] * 60 for name, job in workflow["jobs"].items()
                 if "AWS_DEPLOY_ROLE_ARN" in json.dumps(job.get("steps", []))}
    assert set(deploying) == {"dev", "prod"}, deploying
    # Then the role lets a session last longer than the longest of them (a canary with two baking periods, then
    # the smoke test and the alias move, all after the credentials step)
    _, role = dev.only("StudentScore-Bootstrap", "AWS::IAM::Role")
    session = role["Properties"]["MaxSessionDuration"]
    assert max(deploying.values()) < session <= 12 * 3600, (session, deploying)
    # and each job's credentials step asks for a session that long (the action's default is 1 hour)
    for name, timeout_s in deploying.items():
        (asked,) = [int(step["with"]["role-duration-seconds"]) for step in workflow["jobs"][name]["steps"]
                    if "AWS_DEPLOY_ROLE_ARN" in json.dumps(step)]
        assert timeout_s < asked <= session, (name, asked, timeout_s, session)


def test_the_deploy_role_may_only_assume_the_cdk_bootstrap_roles(dev: Synth) -> None:
    _, policy = dev.only("StudentScore-Bootstrap", "AWS::IAM::Policy")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    resources = json.dumps(statement["Resource"])
    for role in ("deploy-role", "file-publishing-role", "image-publishing-role", "lookup-role"):
        assert f":role/cdk-hnb659fds-{role}-" in resources
    assert len(statement["Resource"]) == 4
    assert "DeployRoleArn" in dev.raw["StudentScore-Bootstrap"]["Outputs"]


def test_an_existing_oidc_provider_is_imported_not_created() -> None:
    app = App()
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    stack = BootstrapStack(app, "Bootstrap", github_repo=REPO, existing_provider_arn=arn)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::IAM::OIDCProvider", 0)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Federated": arn}})]}
            )
        },
    )


# --- app inputs and cdk-nag --------------------------------------------------------------------------------


def test_a_missing_tarball_fails_synth_with_one_clear_line(tmp_path: Path) -> None:
    context = inputs(tmp_path, b"x")
    context["model_tarball"] = str(tmp_path / "missing.tar.gz")
    with pytest.raises(ConfigError, match=r"^model tarball not found: .*missing\.tar\.gz") as raised:
        build_app(context=context, outdir=str(tmp_path / "out"))
    assert "\n" not in str(raised.value)


def test_a_params_file_that_is_not_the_projects_fails_synth_with_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a repository whose params.yaml has a section the project does not know
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text((ROOT / "params.yaml").read_text() + "bogus_section: 1\n")
    monkeypatch.setattr(cdk_app, "ROOT", repo)
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps(inputs(tmp_path, b"x")))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path / "out"))
    # When the CDK CLI runs the app
    code = cdk_app.main()
    # Then it exits non-zero with one line naming the file, not a traceback
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: {repo / 'params.yaml'}: ") and err.count("\n") == 1, err
    assert "bogus_section" in err, err


def test_a_malformed_github_repo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OWNER/REPO"):
        build_app(
            context={**inputs(tmp_path, b"x"), "github_repo": "not a repo"}, outdir=str(tmp_path / "out")
        )


def test_cdk_nag_passes_and_every_acknowledgment_gives_a_reason(
    dev: Synth, prod: Synth, dev_new_model: Synth
) -> None:
    # Synth would have raised on any unacknowledged AwsSolutions error; the report confirms none, both
    # environment-agnostic (offline synth) and for a concrete account and region (as at deploy).
    for synth in (dev, prod, dev_new_model):
        report = json.loads((synth.outdir / "validation-report.json").read_text())
        for plugin in report["pluginReports"]:
            assert plugin["conclusion"] == "success", plugin
            assert plugin["violations"] == [], plugin
        acknowledged = {}
        for metadata in synth.outdir.glob("*.metadata.json"):
            for entries in json.loads(metadata.read_text()).values():
                for entry in entries:
                    if entry["type"] == "aws:cdk:acknowledged-rules":
                        acknowledged.update(entry["data"])
        assert acknowledged, "expected the documented acknowledgments"
        for rule, reason in acknowledged.items():
            assert rule.startswith("AwsSolutions::AwsSolutions-"), rule
            assert len(reason) >= 40, f"{rule}: reason too thin: {reason!r}"


def test_every_acknowledgment_answers_a_finding_cdk_nag_reports(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the app with every optional construct (the drift workflow's role, the MLflow grants), its
    # acknowledgments recorded instead of applied
    acknowledged: list[tuple[str, str]] = []

    class Recorder:
        def __init__(self, construct: Any) -> None:
            self.path = construct.node.path

        @classmethod
        def of(cls, construct: Any) -> Recorder:
            return cls(construct)

        def acknowledge(self, *acknowledgments: Any) -> None:
            acknowledged.extend((self.path, a.id.removeprefix("AwsSolutions::")) for a in acknowledgments)

    monkeypatch.setattr(nag, "Validations", Recorder)
    app = build_app(context={**inputs(tmp_path, b"m"), "github_repo": REPO, "data_bucket": "team-artifacts",
                             "mlflow_tracking_server_arn": "arn:aws:sagemaker:eu-west-1:123456789012:"
                                                           "mlflow-tracking-server/team",
                             "mlflow_artifact_uri": "s3://team-mlflow/artifacts"}, outdir=str(tmp_path / "out"))
    # When cdk-nag checks it, with nothing acknowledged
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "out" / "validation-report.json").read_text())
    found = {(c["constructPath"], v["ruleName"]) for plugin in report["pluginReports"]
             for v in plugin["violations"] for c in v["violatingConstructs"]}
    # Then each acknowledgment is of a finding on its construct (or below it): none stands for nothing
    assert len(acknowledged) > 10, acknowledged
    idle = [(path, rule) for path, rule in acknowledged
            if not any(rule == r and (f == path or f.startswith(f"{path}/")) for f, r in found)]
    assert idle == []


def test_cdk_nag_really_fails_a_synth_with_an_unacknowledged_error(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Bad")
    s3.Bucket(stack, "Unlogged")  # AwsSolutions-S1 (no access logs) and S10 (no TLS enforcement)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="(?s)ValidationFailed.*AwsSolutions-S1"):
        app.synth()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_deploy_role_reads_only_the_dvc_prefix_and_uses_only_the_given_mlflow_server() -> None:
    app = App()
    server = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"
    stack = BootstrapStack(app, "Bootstrap", github_repo=REPO, data_bucket_name="team-artifacts",
                           mlflow_tracking_server_arn=server, mlflow_artifact_uri="s3://team-mlflow/artifacts/")
    statements = Template.from_stack(stack).to_json()
    # The deploy role's own policy (with a data bucket, the drift workflow's capture reader has another).
    policies = [r for r in statements["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                and "GitHubDeploy" in json.dumps(r["Properties"]["Roles"])]
    (policy,) = policies
    granted = [(json.dumps(s["Action"]), json.dumps(s["Resource"]), s.get("Condition"))
               for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    by_action = {action: (resource, condition) for action, resource, condition in granted}
    assert by_action['"s3:GetObject"'][0].endswith('team-artifacts/dvc/*"]]}')
    # The release workflow's MLflow calls, each by name (tests/infra/test_release_mlflow_calls.py checks it makes
    # no other), on that one server
    (mlflow,) = [(json.loads(action), resource) for action, resource, _ in granted if "sagemaker-mlflow" in action]
    assert mlflow == ([f"sagemaker-mlflow:{name}" for name in (
        "CreateExperiment", "CreateModelVersion", "CreateRegisteredModel", "CreateRun", "DeleteRegisteredModel",
        "DeleteRegisteredModelAlias", "FinalizeLoggedModel", "GetDownloadURIForModelVersionArtifacts",
        "GetExperiment", "GetExperimentByName", "GetLoggedModel", "GetMetricHistory", "GetModelVersion",
        "GetModelVersionByAlias", "GetRegisteredModel", "GetRun", "LogBatch", "LogInputs", "LogModel", "LogOutputs",
        "SearchModelVersions", "SetExperimentTag", "SetLoggedModelTags", "SetModelVersionTag",
        "SetRegisteredModelAlias", "SetRegisteredModelTag", "SetTag", "UpdateRun")], json.dumps(server))
    # The MLflow client writes run artifacts and reads model versions in the server's artifact store itself
    assert by_action['["s3:GetObject", "s3:PutObject"]'][0].endswith('team-mlflow/artifacts/*"]]}')
    listings = sorted((resource.rsplit(":::", 1)[1], json.dumps(condition))
                      for action, resource, condition in granted if action == '"s3:ListBucket"')
    assert listings == [
        ('team-artifacts"]]}', json.dumps({"StringLike": {"s3:prefix": ["dvc/*", "dvc"]}})),
        ('team-mlflow"]]}', json.dumps({"StringLike": {"s3:prefix": ["artifacts/*", "artifacts"]}})),
    ]
    assert len(granted) == 6, "assume the CDK roles, DVC list+read, MLflow, artifacts list+read/write: nothing else"


def test_every_mapped_mlflow_call_is_one_a_role_makes_and_each_role_names_a_call_once() -> None:
    # The one table of MLflow calls and their IAM actions holds no call that no role grants
    assert set(mlflow_calls.ACTIONS) == set(RELEASE_MLFLOW_CALLS) | set(DRIFT_MLFLOW_CALLS)
    for calls in (RELEASE_MLFLOW_CALLS, DRIFT_MLFLOW_CALLS):
        assert len(set(calls)) == len(calls), sorted(call for call in calls if calls.count(call) > 1)


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"github_environments": "dev,pr od"}, "github_environments must be environment names"),
        ({"data_bucket": "Not_A_Bucket"}, "data_bucket must be an S3 bucket name"),
        ({"mlflow_tracking_server_arn": "arn:aws:s3:::x"}, "mlflow_tracking_server_arn must look like"),
        ({"mlflow_tracking_server_arn": "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/t"},
         "mlflow_tracking_server_arn and mlflow_artifact_uri go together"),
        ({"mlflow_tracking_server_arn": "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/t",
          "mlflow_artifact_uri": "https://bucket/x"}, "mlflow_artifact_uri must be"),
        ({"alarm_email": "not an address"}, "alarm_email must be one email address"),
        ({"endpoint_max_concurency": "10"}, r"unknown context key 'endpoint_max_concurency' .*did you mean "
                                            r"endpoint_max_concurrency\?"),
        ({"name": "staging"}, r"unknown context key 'name' .*known keys: .*endpoint_max_concurrency, .*serving_dir"),
    ],
)
def test_bad_bootstrap_and_alarm_context_fails_synth_in_one_line(tmp_path: Path, context: dict[str, str],
                                                                 fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as raised:
        build_app(context={**inputs(tmp_path, b"x"), "github_repo": REPO, **context}, outdir=str(tmp_path / "out"))
    assert "\n" not in str(raised.value)


def test_a_failing_synth_prints_one_line_per_unacknowledged_finding(tmp_path: Path) -> None:
    # Given an app with two unacknowledged findings on one bucket (AwsSolutions-S1: no access logs; S10: no TLS)
    app = App(outdir=str(tmp_path))
    s3.Bucket(Stack(app, "Bad"), "Unlogged")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    err = io.StringIO()
    # When it is synthesized the way infra/app.py's main does
    code = synth_or_report(app, err)
    # Then the exit code is 1 and each finding is one line naming rule and construct, with no traceback
    lines = err.getvalue().splitlines()
    assert code == 1
    findings = [line for line in lines if line.startswith("error: cdk-nag ")]
    assert {line.split()[2] for line in findings} >= {"AwsSolutions-S1", "AwsSolutions-S10"}, lines
    assert all(" at Bad/Unlogged/" in line for line in findings), lines
    assert lines[-1].startswith(f"error: {len(findings)} unacknowledged cdk-nag finding(s)")
    assert "Traceback" not in err.getvalue() and "jsii" not in err.getvalue()
