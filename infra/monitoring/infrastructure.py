"""Owns the day-one alarms: endpoint errors and model latency, Lambda errors and throttles, API 5xx.

Every alarm treats missing data as not breaching: a serverless endpoint with no traffic sends no
metrics, and that is not an incident.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

PERIOD = Duration.minutes(5)


class ServingAlarms(Construct):
    """Alarms on one endpoint variant, one function and one API stage.

    Args:
        endpoint_name: the SageMaker endpoint.
        variant_name: its production variant.
        function: the predict Lambda.
        stage: the API stage.
        model_latency_ms: alarm when p90 model latency stays above this.
        error_count: alarm when errors in 5 minutes reach this (each of the error alarms).
        alarm_topic_arn: an SNS topic to notify, or None for alarms without actions.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        variant_name: str,
        function: lambda_.IFunction,
        stage: apigw.Stage,
        model_latency_ms: int,
        error_count: int,
        alarm_topic_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        dimensions = {"EndpointName": endpoint_name, "VariantName": variant_name}

        def endpoint_metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map=dimensions,
                statistic=statistic,
                period=PERIOD,
            )

        alarms = {
            "EndpointServerErrors": (endpoint_metric("Invocation5XXErrors", "Sum"), error_count, 1),
            "EndpointModelErrors": (endpoint_metric("InvocationModelErrors", "Sum"), error_count, 1),
            # SageMaker reports ModelLatency in microseconds.
            "ModelLatency": (endpoint_metric("ModelLatency", "p90"), model_latency_ms * 1000, 3),
            "LambdaErrors": (function.metric_errors(period=PERIOD, statistic="Sum"), error_count, 1),
            "LambdaThrottles": (function.metric_throttles(period=PERIOD, statistic="Sum"), error_count, 1),
            "Api5xx": (stage.metric_server_error(period=PERIOD, statistic="Sum"), error_count, 1),
        }
        action = (
            cw_actions.SnsAction(sns.Topic.from_topic_arn(self, "Topic", alarm_topic_arn))
            if alarm_topic_arn
            else None
        )
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, (metric, threshold, periods) in alarms.items():
            alarm = metric.create_alarm(
                self,
                name,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"{name} for endpoint {endpoint_name}",
            )
            if action:
                alarm.add_alarm_action(action)
            self.alarms[name] = alarm
