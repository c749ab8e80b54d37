"""Owns the predict API: the Lambda in ``runtime/`` and the REST API (stage ``score``) in front of it.

Bundling: the asset is ``runtime/`` as it is (``Code.from_asset``, the contract link followed), with no Docker
and no pip at synth.
Powertools comes from AWS's managed Lambda layer for exactly the release ``runtime/requirements.txt`` pins (the
version the tests and the local stand-in run): the layer ARN is resolved at deploy time from the public SSM
parameter ``/aws/service/powertools/python/{arch}/{python}/{version}`` that the Powertools team publishes for every
release (Powertools docs, "Install / Lambda Layer": "{version} ... the semantic version number (e.g. 3.1.0) for a
release or latest"). The template holds a CloudFormation SSM parameter reference, so synth makes no AWS call,
and moving the pin moves the layer. boto3 comes with the Lambda Python runtime.

The REST API does not create API Gateway's account-wide CloudWatch role (``cloud_watch_role=False``): one
stack per account owns it (infra/account), so deleting a serving stack never breaks another's logging.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack, SymlinkFollowMode
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.api import schema
from infra.nag import acknowledge
from serving import contract

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
STAGE_NAME = contract.STAGE
RESOURCE_PATH = contract.RESOURCE
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_13
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
POWERTOOLS_PARAMETER = "/aws/service/powertools/python/{arch}/{python}/{version}"
# The handler's client gives up after ~23 s (see runtime/handler.py); API Gateway cuts at 29 s (AWS, "Quotas for
# configuring and running a REST API in API Gateway", https://docs.aws.amazon.com/apigateway/latest/developerguide/
# api-gateway-execution-service-limits-table.html: "Integration timeout: 50 milliseconds - 29 seconds for all
# integration types, including Lambda, Lambda proxy ..."), so the Lambda ends first and answers itself. 29 s is the
# default; since June 2024 a Regional REST API may ask for more through a quota increase (AWS What's New, "Amazon API
# Gateway integration timeout limit increase beyond 29 seconds"), which this API does not: LambdaIntegration keeps it.
LAMBDA_TIMEOUT = Duration.seconds(28)
# Where the handler's Powertools metrics go: namespace and ``service`` dimension (EMF; the capture alarms watch them).
METRICS_NAMESPACE = "StudentScore"
METRICS_SERVICE = "predict"


def powertools_version(requirements: Path = RUNTIME_DIR / "requirements.txt") -> str:
    """The ``aws-lambda-powertools==X.Y.Z`` pin of the Lambda's requirements."""
    found = re.findall(r"^aws-lambda-powertools==([0-9][0-9A-Za-z.]*)\s*(?:#.*)?$", requirements.read_text(),
                       re.MULTILINE)
    if len(found) != 1:
        raise ValueError(f"{requirements}: expected one aws-lambda-powertools==VERSION pin, found {len(found)}")
    return found[0]


def powertools_parameter(version: str) -> str:
    """The public SSM parameter holding the layer ARN of Powertools ``version`` for this runtime and architecture."""
    return POWERTOOLS_PARAMETER.format(arch=LAMBDA_ARCHITECTURE.name, python=LAMBDA_RUNTIME.name, version=version)


def request_schema(*, max_records: int) -> apigw.JsonSchema:
    """The body API Gateway lets through: the wire contract's ``request_schema`` (the stand-in checks the same)."""
    return schema.json_schema(contract.request_schema(max_records=max_records))


def bad_body_template(*, max_records: int) -> str:
    """The body of API Gateway's answer to a body its request validator refuses (``BAD_REQUEST_BODY``).

    By default it says only "Invalid request body"; this says what a body must be (the wire contract's
    ``bad_body_message``), in the gateway's own shape ``{"message": ...}`` (how clients and
    ``capacity/classify.py`` tell the gateway's answers from the Lambda's ``{"error", "request_id"}``). AWS,
    "x-amazon-apigateway-gateway-responses.responseTemplates object": a gateway response template is not VTL,
    only variable substitution; this one has no variables.
    """
    return json.dumps({"message": contract.bad_body_message(max_records=max_records)})


class PredictApi(Construct):
    """``POST /score/predict-student-score`` -> the predict Lambda -> ``sagemaker:InvokeEndpoint``.

    Args:
        endpoint_name: the SageMaker endpoint the Lambda invokes.
        endpoint_arn: its ARN; the Lambda may invoke that endpoint and nothing else.
        memory_mb: the Lambda's memory.
        throttle_rate: steady requests per second for the stage.
        throttle_burst: burst size for the stage.
        api_key_required: require an API key (and create a key and usage plan with the same throttle).
        max_records: most records per request, checked by API Gateway and by the Lambda.
        cors_origins: origins allowed by CORS.
        capture_stream: the Firehose stream the Lambda captures traffic to (the only one it may put to), or
            None for no capture.
        capture_share: share of requests captured, 0..1.
        capture_drop_fields: input fields never captured.
        api_name: the REST API's name, unique per account and region (default: ``<stack name> API``). API
            Gateway's metrics, and so the 5xx alarm, tell APIs apart by this name only.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        endpoint_arn: str,
        memory_mb: int,
        throttle_rate: float,
        throttle_burst: int,
        api_key_required: bool,
        max_records: int,
        cors_origins: list[str] | None = None,
        capture_stream: firehose.IDeliveryStream | None = None,
        capture_share: float = 1.0,
        capture_drop_fields: tuple[str, ...] = (),
        api_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        origins = cors_origins or apigw.Cors.ALL_ORIGINS

        # RetentionDays holds only values CloudWatch Logs accepts (PutRetentionPolicy's retentionInDays: 1, 3, 5, 7,
        # 14, 30, 60, 90, ...); ONE_MONTH is 30 and THREE_MONTHS (access logs) 90.
        self.log_group = logs.LogGroup(
            self, "FunctionLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        # Our own role: the default one would attach the AWS-managed AWSLambdaBasicExecutionRole (logs on *).
        self.role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="The predict Lambda: write its own logs, invoke its one endpoint.",
        )
        self.log_group.grant_write(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn])
        )

        # A CloudFormation parameter of type AWS::SSM::Parameter::Value<String>: resolved in the deploy's region.
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            ssm.StringParameter.value_for_string_parameter(self, powertools_parameter(powertools_version())),
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            handler="handler.lambda_handler",
            # runtime/contract.py links to serving/contract.py: the asset holds the file itself.
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["__pycache__", "*.pyc", "__init__.py"],
                                         follow_symlinks=SymlinkFollowMode.ALWAYS),
            layers=[powertools],
            memory_size=memory_mb,
            timeout=LAMBDA_TIMEOUT,
            role=self.role,
            log_group=self.log_group,
            environment={
                "ENDPOINT_NAME": endpoint_name,
                "MAX_RECORDS": str(max_records),
                # Each allowed origin, not "*" for several: the preflight lists only these (Powertools echoes an
                # allowed request Origin and sends no CORS header to others, CORSConfig extra_origins).
                "CORS_ALLOW_ORIGIN": origins[0], "CORS_EXTRA_ORIGINS": ",".join(origins[1:]),
                "POWERTOOLS_SERVICE_NAME": METRICS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                # Capture for monitoring (runtime/capture.py); without a stream the handler captures nothing.
                **({"CAPTURE_STREAM": capture_stream.delivery_stream_name, "CAPTURE_SHARE": str(capture_share),
                    "CAPTURE_DROP_FIELDS": ",".join(capture_drop_fields)} if capture_stream else {}),
            },
            description="Checks a predict request's shape and forwards it to the SageMaker endpoint.",
        )
        if capture_stream is not None:
            capture_stream.grant_put_records(self.role)  # PutRecord(Batch) on that one stream ARN
        acknowledge(
            self.function,
            f"Pinned to {LAMBDA_RUNTIME.name} on purpose, not the newest runtime CDK knows: the Powertools layer is "
            "resolved for this runtime and the release runtime/requirements.txt pins, so a newer runtime is a "
            "deliberate change made together with the layer and the handler's pinned requirements.",
            "AwsSolutions-L1",
        )

        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            # AWS, "Amazon API Gateway dimensions and metrics" (https://docs.aws.amazon.com/apigateway/latest/
            # developerguide/api-gateway-metrics-and-dimensions.html): "ApiName - Filters API Gateway metrics for
            # the REST API with the specified API name". One name shared by dev and prod in one account and region
            # would make each stage's 5xx alarm count the other's errors too.
            rest_api_name=api_name or f"{Stack.of(self).stack_name} API",
            description="Predicts a student's exam score from one record or a list of records.",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Method logging needs the account's API Gateway CloudWatch role; infra/account owns it, once per
            # account and region (CDK's aws-apigateway README: "It is recommended to set cloudWatchRole=false
            # ... and only create a single CloudWatch role and account per environment").
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=throttle_rate,
                throttling_burst_limit=throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                data_trace_enabled=False,  # would log request bodies (student records)
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=origins,
                allow_methods=["OPTIONS", "POST"],
                allow_headers=[*apigw.Cors.DEFAULT_HEADERS, contract.API_KEY_HEADER],
                max_age=Duration.minutes(5),
            ),
        )
        # Answers API Gateway makes itself (bad body, throttled, missing key, 5xx) carry CORS too; a refused
        # body also says what a body must be.
        # Keyed by the type's name: jsii hands out a new ResponseType object on every access.
        templates = {"BAD_REQUEST_BODY": {"application/json": bad_body_template(max_records=max_records)}}
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX,
                              apigw.ResponseType.BAD_REQUEST_BODY):
            self.api.add_gateway_response(
                f"Cors{response_type.response_type}",
                type=response_type,
                # A static header cannot echo one of several origins: "*" on API Gateway's own errors then.
                response_headers={
                    "Access-Control-Allow-Origin": f"'{origins[0] if len(origins) == 1 else '*'}'"
                },
                templates=templates.get(response_type.response_type),
            )

        model = self.api.add_model(
            "PredictRequest",
            content_type="application/json",
            model_name="PredictRequest",
            schema=request_schema(max_records=max_records),
        )
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        self.resource = self.api.root.add_resource(RESOURCE_PATH)
        self.method = self.resource.add_method(
            "POST",
            apigw.LambdaIntegration(self.function),
            api_key_required=api_key_required,
            request_validator=validator,
            request_models={"application/json": model},
        )
        self.api_key: apigw.IApiKey | None = None
        if api_key_required:
            self.api_key = self.api.add_api_key("ApiKey", description="Key for the predict API")
            plan = self.api.add_usage_plan(
                "UsagePlan",
                throttle=apigw.ThrottleSettings(rate_limit=throttle_rate, burst_limit=throttle_burst),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
            )
            plan.add_api_key(self.api_key)

        acknowledge(
            self.api,
            "A public prediction API like the reference design's: callers are anonymous clients, not users; "
            "abuse is bounded by stage throttling, body validation and, where configured, an API key.",
            "AwsSolutions-APIG4",
            "AwsSolutions-COG4",
        )
        acknowledge(
            self.api,
            "No WAF for now: stage throttling bounds load and cost; add a web ACL when the API sees untrusted "
            "traffic at scale.",
            "AwsSolutions-APIG3",
        )
        self.url = self.api.url_for_path(f"/{RESOURCE_PATH}")
