"""Owns the alarms and where they go: the endpoint's (some of them canary rollback triggers), the Lambda's and
the API's, the capture path's, and the encrypted SNS topic they notify.

Endpoint alarms watch only metrics a serverless endpoint publishes. AWS, "Alarms and logs for tracking metrics
from serverless endpoints" (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-monitoring.html):
"Any metric not listed below is not published for serverless endpoints" — Invocations, Invocation4XXErrors,
Invocation5XXErrors, ModelLatency, OverheadLatency, ModelSetupTime, MemoryUtilization and
ServerlessConcurrentExecutionsUtilization; ``InvocationModelErrors`` is not among them, so an alarm on it could
never fire. Latencies and setup time are in microseconds, dimensions ``EndpointName`` + ``VariantName``
("Monitor Amazon SageMaker with Amazon CloudWatch", .../sagemaker/latest/dg/monitoring-cloudwatch.html).

Every alarm treats missing data as not breaching: a serverless endpoint with no traffic sends no metrics, and
that is not an incident. Periods are one minute (``ALARM_PERIOD_S``) so that the rollback alarms can fire inside
a canary's baking period.
"""

from __future__ import annotations

import re

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.settings import ALARM_PERIOD_S

PERIOD = Duration.seconds(ALARM_PERIOD_S)
EMAIL_PATTERN = re.compile(r"^[^@\s,;'\"]+@[^@\s,;'\"]+\.[A-Za-z]{2,}$")
# What each alarm means and what to do about it: the alarm's description, and the README's alarm table.
MEANING = {
    "EndpointServerErrors": "the container answered 5xx (or crashed): read /aws/sagemaker/Endpoints/<name> logs; "
                            "during a canary this rolls the deployment back",
    "EndpointClientErrors": "many requests refused with 4xx: a client sends the wrong schema, or the new model "
                            "expects a different one",
    "ModelLatency": "p90 time inside the container is above the threshold: a slower model; during a canary this "
                    "rolls the deployment back",
    "OverheadLatency": "average time SageMaker adds (cold starts included) is high: consider provisioned concurrency",
    "ModelSetupTime": "cold starts take longer than the API's budget, so callers get 504: provisioned "
                      "concurrency, more memory, or a smaller image",
    "ConcurrencyUtilization": "concurrent executions near max concurrency, throttling is next: raise "
                              "endpoint_max_concurrency (and the account's serverless quota)",
    "LambdaErrors": "the predict Lambda failed (not the model): read its log group",
    "LambdaThrottles": "Lambda concurrency exhausted: raise reserved concurrency or the account limit",
    "Api5xx": "API Gateway answered 5xx: usually the Lambda timing out behind a slow or cold endpoint",
    "CaptureFailed": "the predict Lambda lost capture records (answers were unaffected): its log group says why; "
                     "drift and live accuracy miss that traffic",
    "CaptureThrottled": "Firehose throttled capture records: raise the stream's quota or lower capture_share",
    "CaptureDeliveryLate": "Firehose has not delivered captured records to S3 for longer than buffering explains: "
                           "its delivery errors (capture-errors/ in the bucket, the stream's metrics); drift reads "
                           "nothing new meanwhile",
}
# The alarms a canary watches: AWS's "Auto-Rollback Configuration and Monitoring" examples are errors and latency
# on EndpointName + VariantName, which covers both the old and the new fleet.
ROLLBACK = ("EndpointServerErrors", "ModelLatency")


class AlarmTopic(Construct):
    """An SNS topic for the alarms, encrypted with a key CloudWatch may use, with an optional email subscription.

    CloudWatch can publish to an encrypted topic only if the key's policy lets it (AWS, "Enable compatibility
    between event sources from AWS services and encrypted topics",
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services); the
    AWS-managed ``alias/aws/sns`` key cannot be given that right, so the topic has its own key.

    Args:
        email: an address to subscribe (it must confirm the subscription), or None.
    """

    def __init__(self, scope: Construct, construct_id: str, *, email: str | None = None) -> None:
        super().__init__(scope, construct_id)
        if email is not None and not EMAIL_PATTERN.match(email):
            raise ValueError(f"alarm_email must be one email address, got {email!r}")
        stack = Stack.of(self)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY,
                           description="Encrypts the serving alarms' SNS topic; CloudWatch may use it to publish.")
        self.key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        ))
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True,
                               display_name="StudentScore serving alarms")
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.action = cw_actions.SnsAction(self.topic)


def _alarm(scope: Construct, name: str, metric: cloudwatch.IMetric, threshold: float, periods: int,
           action: cloudwatch.IAlarmAction) -> cloudwatch.Alarm:
    alarm = metric.create_alarm(
        scope, name, threshold=threshold, evaluation_periods=periods,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=f"{name}: {MEANING[name]}.",
    )
    alarm.add_alarm_action(action)
    return alarm


class EndpointAlarms(Construct):
    """Alarms on one serverless endpoint variant; ``rollback`` are the ones a canary deployment watches.

    They are made before the endpoint, from its name, because AWS asks for the alarms to exist before a
    deployment that names them ("Prerequisites", .../deployment-guardrails-blue-green-canary.html).

    Args:
        endpoint_name: the SageMaker endpoint's name.
        variant_name: its production variant.
        error_count: 5xx answers in one minute that fire the server-error alarm.
        client_error_count: 4xx answers in one minute that fire the client-error alarm.
        model_latency_ms: p90 model latency over three minutes.
        overhead_latency_ms: average overhead latency (SageMaker's own, cold starts included) over three minutes.
        model_setup_ms: the longest cold start (ModelSetupTime) tolerated.
        concurrency_utilization: the share of max concurrency in use that fires the saturation alarm.
        action: where the alarms notify.
    """

    def __init__(self, scope: Construct, construct_id: str, *, endpoint_name: str, variant_name: str,
                 error_count: int, client_error_count: int, model_latency_ms: int, overhead_latency_ms: int,
                 model_setup_ms: int, concurrency_utilization: float, action: cloudwatch.IAlarmAction) -> None:
        super().__init__(scope, construct_id)
        dimensions = {"EndpointName": endpoint_name, "VariantName": variant_name}

        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/SageMaker", metric_name=name, dimensions_map=dimensions,
                                     statistic=statistic, period=PERIOD)

        # Units and statistics as AWS lists them: Invocation4XX/5XXErrors "Units: None Valid statistics: Average, Sum"
        # (1 per error, so Sum counts them); latencies and ModelSetupTime "Units: Microseconds" (hence * 1000);
        # ServerlessConcurrentExecutionsUtilization "The number of concurrent executions divided by the maximum
        # concurrency. Units: None Valid statistics: Average, Max, Min", a 0..1 ratio like the threshold (the two pages
        # named in this module's docstring). Statistics as the current page ("Amazon SageMaker AI metrics in Amazon
        # CloudWatch", .../monitoring-cloudwatch.html) lists them: ModelLatency and ModelSetupTime "..., Sample Count,
        # Percentiles", so p90; OverheadLatency "Average, Sum, Min, Max, Sample Count" only, so Average (a p90 there
        # could leave the alarm in INSUFFICIENT_DATA, which counts as not breaching: it would never fire).
        specs = {
            "EndpointServerErrors": (metric("Invocation5XXErrors", "Sum"), error_count, 1),
            "EndpointClientErrors": (metric("Invocation4XXErrors", "Sum"), client_error_count, 1),
            "ModelLatency": (metric("ModelLatency", "p90"), model_latency_ms * 1000, 3),
            "OverheadLatency": (metric("OverheadLatency", "Average"), overhead_latency_ms * 1000, 3),
            "ModelSetupTime": (metric("ModelSetupTime", "Maximum"), model_setup_ms * 1000, 1),
            "ConcurrencyUtilization": (metric("ServerlessConcurrentExecutionsUtilization", "Maximum"),
                                       concurrency_utilization, 1),
        }
        self.alarms = {name: _alarm(self, name, m, threshold, periods, action)
                       for name, (m, threshold, periods) in specs.items()}
        self.rollback = [self.alarms[name] for name in ROLLBACK]


class ServiceAlarms(Construct):
    """Alarms on the predict Lambda and the API stage.

    Args:
        function: the predict Lambda.
        stage: the API stage.
        error_count: errors (each kind) in one minute that fire an alarm.
        action: where the alarms notify.
    """

    def __init__(self, scope: Construct, construct_id: str, *, function: lambda_.IFunction, stage: apigw.Stage,
                 error_count: int, action: cloudwatch.IAlarmAction) -> None:
        super().__init__(scope, construct_id)
        # AWS/Lambda Errors and Throttles by FunctionName, AWS/ApiGateway 5XXError by ApiName and Stage (CDK's
        # metric_errors, metric_throttles, metric_server_error; "Amazon API Gateway dimensions and metrics",
        # .../apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html).
        specs = {
            "LambdaErrors": function.metric_errors(period=PERIOD, statistic="Sum"),
            "LambdaThrottles": function.metric_throttles(period=PERIOD, statistic="Sum"),
            "Api5xx": stage.metric_server_error(period=PERIOD, statistic="Sum"),
        }
        self.alarms = {name: _alarm(self, name, m, error_count, 1, action) for name, m in specs.items()}


class CaptureAlarms(Construct):
    """Alarms on the capture path, so that monitoring never goes quiet unnoticed: records the predict Lambda could
    not hand to Firehose (its own metric), records Firehose throttled, and delivery to S3 falling behind (AWS's
    recommended alarms for a Firehose stream: "Implement best practices with CloudWatch Alarms").

    Args:
        stream: the capture delivery stream (metrics in ``AWS/Firehose`` by ``DeliveryStreamName``).
        namespace: the Lambda's Powertools metrics namespace.
        service: the Lambda's Powertools service, the ``service`` dimension of its metrics.
        error_count: lost or throttled records in one minute that fire an alarm.
        delivery_late: the age of the oldest undelivered record that fires the delivery alarm.
        action: where the alarms notify.
    """

    def __init__(self, scope: Construct, construct_id: str, *, stream: firehose.IDeliveryStream, namespace: str,
                 service: str, error_count: int, delivery_late: Duration, action: cloudwatch.IAlarmAction) -> None:
        super().__init__(scope, construct_id)
        lost = cloudwatch.Metric(namespace=namespace, metric_name="CaptureFailed", dimensions_map={"service": service},
                                 statistic="Sum", period=PERIOD)
        # DeliveryToS3.DataFreshness is in seconds (Amazon Data Firehose developer guide, .../firehose/latest/dev/
        # monitoring-with-cloudwatch-metrics.html), so the threshold is delivery_late in seconds; ThrottledRecords counts.
        specs = {
            "CaptureFailed": (lost, error_count),
            "CaptureThrottled": (stream.metric("ThrottledRecords", statistic="Sum", period=PERIOD), error_count),
            "CaptureDeliveryLate": (stream.metric("DeliveryToS3.DataFreshness", statistic="Maximum", period=PERIOD),
                                    delivery_late.to_seconds()),
        }
        self.alarms = {name: _alarm(self, name, m, threshold, 1, action) for name, (m, threshold) in specs.items()}
