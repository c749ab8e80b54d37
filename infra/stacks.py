"""Owns the four stacks and what they output: serving (endpoint + API + alarms), storage, the account's API
Gateway logging role, and CI bootstrap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kinesisfirehose as firehose
from constructs import Construct

from infra.account.infrastructure import ApiGatewayCloudWatchRole
from infra.api.infrastructure import METRICS_NAMESPACE, METRICS_SERVICE, PredictApi
from infra.bootstrap.infrastructure import DEFAULT_ENVIRONMENTS, GitHubDeployRole
from infra.capture.infrastructure import DELIVERY_LATE, CaptureReader, CaptureStream
from infra.endpoint.infrastructure import VARIANT_NAME, ServerlessEndpoint
from infra.monitoring.infrastructure import AlarmTopic, CaptureAlarms, EndpointAlarms, ServiceAlarms
from infra.settings import EnvironmentSettings
from infra.storage.infrastructure import ArtifactBucket


class ServingStack(Stack):
    """The predict path: SageMaker Serverless endpoint, Lambda + REST API, alarms and their topic.

    The endpoint is named after the stack (unique per account and region), so that its alarms, which the
    canary deployment names, can be made before it.

    Args:
        settings: the environment's sizes, limits, thresholds and canary.
        model_tarball: the exported model.tar.gz.
        image_directory: the container's folder (serving/).
        alarm_email: an address subscribed to the alarm topic, or None.
        capture_stream: the storage stack's capture stream, or None for no capture.
        capture_drop_fields: input fields never captured (params.yaml ``monitor.drop_fields``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        model_tarball: Path,
        image_directory: Path,
        alarm_email: str | None = None,
        capture_stream: firehose.IDeliveryStream | None = None,
        capture_drop_fields: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        topic = AlarmTopic(self, "AlarmTopic", email=alarm_email)
        endpoint_alarms = EndpointAlarms(
            self,
            "EndpointAlarms",
            endpoint_name=self.stack_name,
            variant_name=VARIANT_NAME,
            error_count=settings.alarm_error_count,
            client_error_count=settings.alarm_client_error_count,
            model_latency_ms=settings.alarm_model_latency_ms,
            overhead_latency_ms=settings.alarm_overhead_latency_ms,
            model_setup_ms=settings.alarm_model_setup_ms,
            concurrency_utilization=settings.alarm_concurrency_utilization,
            action=topic.action,
        )
        endpoint = ServerlessEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.stack_name,
            image_directory=image_directory,
            model_tarball=model_tarball,
            memory_mb=settings.endpoint_memory_mb,
            max_concurrency=settings.endpoint_max_concurrency,
            provisioned_concurrency=settings.endpoint_provisioned_concurrency,
            rollback_alarms=endpoint_alarms.rollback,
            canary_percent=settings.canary_percent,
            canary_wait_s=settings.canary_wait_s,
        )
        capture = capture_stream if settings.capture_enabled else None
        api = PredictApi(
            self,
            "Api",
            endpoint_name=endpoint.endpoint_name,
            endpoint_arn=endpoint.endpoint_arn,
            memory_mb=settings.lambda_memory_mb,
            throttle_rate=settings.throttle_rate,
            throttle_burst=settings.throttle_burst,
            api_key_required=settings.api_key_required,
            max_records=settings.max_records,
            capture_stream=capture,
            capture_share=settings.capture_share,
            capture_drop_fields=capture_drop_fields,
        )
        ServiceAlarms(self, "ServiceAlarms", function=api.function, stage=api.api.deployment_stage,
                      error_count=settings.alarm_error_count, action=topic.action)
        if capture is not None:
            CaptureAlarms(self, "CaptureAlarms", stream=capture, namespace=METRICS_NAMESPACE,
                          service=METRICS_SERVICE, error_count=settings.alarm_error_count,
                          delivery_late=DELIVERY_LATE, action=topic.action)
        CfnOutput(self, "PredictUrl", value=api.url, description="POST one record or a list of records here")
        CfnOutput(self, "EndpointName", value=endpoint.endpoint_name, description="The SageMaker endpoint")
        CfnOutput(self, "AlarmTopicArn", value=topic.topic.topic_arn, description="Where the alarms notify")
        if api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )


class StorageStack(Stack):
    """The bucket for the DVC remote, MLflow artifacts and captured traffic, and the capture stream into it.

    Args:
        capture_retention_days: days captured traffic is kept (its last version a day more: the bucket is versioned).
    """

    def __init__(self, scope: Construct, construct_id: str, *, capture_retention_days: int, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        artifacts = ArtifactBucket(self, "Artifacts")
        self.capture = CaptureStream(self, "Capture", bucket=artifacts.bucket, retention_days=capture_retention_days)
        CfnOutput(self, "ArtifactBucketName", value=artifacts.bucket.bucket_name)
        CfnOutput(self, "CaptureUri", value=f"s3://{artifacts.bucket.bucket_name}/capture/",
                  description="make drift DRIFT_ARGS='--capture <this>'")


class AccountStack(Stack):
    """Once per account and region: API Gateway's CloudWatch role, which every serving stack's stage logs use."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.logging = ApiGatewayCloudWatchRole(self, "ApiGatewayLogging")


class BootstrapStack(Stack):
    """CI's way in: GitHub OIDC provider and the deploy role.

    Args:
        github_repo: OWNER/REPO whose environment jobs may deploy.
        environments: the GitHub environments (dev, prod) whose jobs may assume the role.
        existing_provider_arn: import the account's GitHub OIDC provider instead of creating it.
        data_bucket_name: the storage stack's bucket, read by the release job's ``dvc pull``.
        mlflow_tracking_server_arn: the SageMaker managed MLflow server the release job logs to.
        mlflow_artifact_uri: that server's artifact store, which the MLflow client reads and writes itself.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        github_repo: str,
        environments: Sequence[str] = DEFAULT_ENVIRONMENTS,
        existing_provider_arn: str | None = None,
        data_bucket_name: str | None = None,
        mlflow_tracking_server_arn: str | None = None,
        mlflow_artifact_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        deploy = GitHubDeployRole(
            self, "GitHubDeploy", github_repo=github_repo, environments=environments,
            existing_provider_arn=existing_provider_arn, data_bucket_name=data_bucket_name,
            mlflow_tracking_server_arn=mlflow_tracking_server_arn, mlflow_artifact_uri=mlflow_artifact_uri,
        )
        CfnOutput(
            self, "DeployRoleArn", value=deploy.role.role_arn, description="AWS_ROLE_ARN for the workflows"
        )
        if data_bucket_name:
            reader = CaptureReader(self, "CaptureReader", provider=deploy.provider, github_repo=github_repo,
                                   bucket_name=data_bucket_name, mlflow_tracking_server_arn=mlflow_tracking_server_arn,
                                   mlflow_artifact_uri=mlflow_artifact_uri)
            CfnOutput(self, "MonitorRoleArn", value=reader.role.role_arn,
                      description="AWS_MONITOR_ROLE_ARN for the drift workflow (reads capture/ only)")
