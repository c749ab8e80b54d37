"""Owns the three stacks and what they output: serving (endpoint + API + alarms), storage, CI bootstrap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kinesisfirehose as firehose
from constructs import Construct

from infra.api.infrastructure import PredictApi
from infra.bootstrap.infrastructure import GitHubDeployRole
from infra.capture.infrastructure import CaptureReader, CaptureStream
from infra.endpoint.infrastructure import ServerlessEndpoint
from infra.monitoring.infrastructure import ServingAlarms
from infra.settings import EnvironmentSettings
from infra.storage.infrastructure import ArtifactBucket


class ServingStack(Stack):
    """The predict path: SageMaker Serverless endpoint, Lambda + REST API, alarms.

    Args:
        settings: the environment's sizes, limits and thresholds.
        model_tarball: the exported model.tar.gz.
        image_directory: the container's folder (serving/).
        alarm_topic_arn: SNS topic for the alarms, or None.
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
        alarm_topic_arn: str | None = None,
        capture_stream: firehose.IDeliveryStream | None = None,
        capture_drop_fields: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        endpoint = ServerlessEndpoint(
            self,
            "Endpoint",
            image_directory=image_directory,
            model_tarball=model_tarball,
            memory_mb=settings.endpoint_memory_mb,
            max_concurrency=settings.endpoint_max_concurrency,
            provisioned_concurrency=settings.endpoint_provisioned_concurrency,
        )
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
            capture_stream=capture_stream if settings.capture_enabled else None,
            capture_share=settings.capture_share,
            capture_drop_fields=capture_drop_fields,
        )
        ServingAlarms(
            self,
            "Alarms",
            endpoint_name=endpoint.endpoint_name,
            variant_name=endpoint.variant_name,
            function=api.function,
            stage=api.api.deployment_stage,
            model_latency_ms=settings.alarm_model_latency_ms,
            error_count=settings.alarm_error_count,
            alarm_topic_arn=alarm_topic_arn,
        )
        CfnOutput(self, "PredictUrl", value=api.url, description="POST one record or a list of records here")
        CfnOutput(self, "EndpointName", value=endpoint.endpoint_name, description="The SageMaker endpoint")
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
        capture_retention_days: days captured traffic is kept.
    """

    def __init__(self, scope: Construct, construct_id: str, *, capture_retention_days: int, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        artifacts = ArtifactBucket(self, "Artifacts")
        self.capture = CaptureStream(self, "Capture", bucket=artifacts.bucket, retention_days=capture_retention_days)
        CfnOutput(self, "ArtifactBucketName", value=artifacts.bucket.bucket_name)
        CfnOutput(self, "CaptureUri", value=f"s3://{artifacts.bucket.bucket_name}/capture/",
                  description="make drift DRIFT_ARGS='--capture <this>'")


class BootstrapStack(Stack):
    """CI's way in: GitHub OIDC provider and the deploy role.

    Args:
        github_repo: OWNER/REPO whose main branch may deploy.
        existing_provider_arn: import the account's GitHub OIDC provider instead of creating it.
        data_bucket_name: the storage stack's bucket, read by the release job's ``dvc pull``.
        mlflow_tracking_server_arn: the SageMaker managed MLflow server the release job logs to.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        github_repo: str,
        existing_provider_arn: str | None = None,
        data_bucket_name: str | None = None,
        mlflow_tracking_server_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        deploy = GitHubDeployRole(
            self, "GitHubDeploy", github_repo=github_repo, existing_provider_arn=existing_provider_arn,
            data_bucket_name=data_bucket_name, mlflow_tracking_server_arn=mlflow_tracking_server_arn,
        )
        CfnOutput(
            self, "DeployRoleArn", value=deploy.role.role_arn, description="AWS_ROLE_ARN for the workflows"
        )
        if data_bucket_name:
            reader = CaptureReader(self, "CaptureReader", provider=deploy.provider, github_repo=github_repo,
                                   bucket_name=data_bucket_name, mlflow_tracking_server_arn=mlflow_tracking_server_arn)
            CfnOutput(self, "MonitorRoleArn", value=reader.role.role_arn,
                      description="AWS_MONITOR_ROLE_ARN for the drift workflow (reads capture/ only)")
