"""Owns the artifact bucket (DVC remote under ``dvc/``, MLflow artifacts under ``mlflow/``) and its access-log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


class ArtifactBucket(Construct):
    """A versioned, encrypted, TLS-only, private bucket whose access is logged to a second bucket.

    Args:
        noncurrent_version_days: how long an overwritten or deleted object's old versions are kept.
        access_log_days: how long server access logs are kept.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        noncurrent_version_days: int = 365,
        access_log_days: int = 365,
    ) -> None:
        super().__init__(scope, construct_id)
        common = {
            # S3-managed keys: server access logging can only write to SSE-S3 buckets (AWS, "Enabling Amazon S3
            # server access logging", https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-
            # logging.html: default encryption on the destination bucket only with SSE-S3, "SSE-KMS is not
            # supported"), and DVC/MLflow clients then need no KMS permissions.
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "enforce_ssl": True,
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # Data and model lineage must outlive a stack deletion.
            "removal_policy": RemovalPolicy.RETAIN,
        }
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **common,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(access_log_days))],
        )
        # The access-log bucket logs nowhere: cdk-nag's AwsSolutions-S1 counts a bucket that receives another's
        # server access logs as compliant, so nothing is acknowledged here.
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            **common,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
