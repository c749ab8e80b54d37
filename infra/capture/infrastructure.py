"""Owns where captured traffic goes on AWS: a Firehose stream into the artifact bucket, and who may read it back.

``CaptureStream`` is an Amazon Data Firehose stream (direct PUT from the predict Lambda) delivering to
``capture/model=NAME/version=V/dt=YYYY-MM-DD/`` in the storage stack's bucket:
- dynamic partitioning with inline jq 1.6 parsing of the capture record's own fields (the partition keys and
  their jq expressions are the wire contract's, ``serving/contract.py``), so a record lands under the version
  that answered it and the day it was made ("Understand partitioning keys", Amazon Data Firehose developer
  guide; "You must specify an S3 error bucket prefix ... if you want to enable dynamic partitioning",
  "Troubleshoot dynamic partitioning errors");
- an error prefix with ``!{firehose:error-output-type}``, required once the prefix holds expressions
  ("Custom Prefixes for Amazon S3 Objects");
- GZIP-compressed JSON lines, stream encryption with an AWS-owned key (cdk-nag's AwsSolutions-KDF1) and the
  bucket's own SSE-S3 at rest; lifecycle rules expire captures (and delivery errors) after ``retention_days``
  and delete them for good a day later (the bucket is versioned);
- a delivery role that may write and read only under those two prefixes and delete nothing (``confine``), though
  the bucket holds the DVC remote and MLflow's artifacts too.
``CaptureReader`` is the role the scheduled drift workflow assumes through GitHub's OIDC provider: list and get
under ``capture/`` of that bucket, nothing else (plus, when given, the MLflow calls the drift job makes on the
tracking server, ``DRIFT_MLFLOW_CALLS``, and the server's artifact prefix, to read the profile and log its run).
It trusts the drift job's GitHub environment (``monitor``): a job in an environment presents the subject
``repo:OWNER/REPO:environment:NAME``, not its branch, and the environment's deployment-branch rule (``main``)
and its own secrets are what GitHub checks, as for the deploy role's ``dev`` and ``prod``.
"""

from __future__ import annotations

from aws_cdk import CfnMapping, Duration, Size, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import mlflow_calls
from infra.bootstrap.infrastructure import (
    ENVIRONMENT_PATTERN,
    GITHUB_ISSUER,
    REPO_PATTERN,
    parse_artifact_uri,
)
from infra.nag import acknowledge
from serving import contract

PREFIX = f"{contract.CAPTURE_PREFIX}/"
ERROR_PREFIX = f"{contract.CAPTURE_PREFIX}-errors/"
# Dynamic partitioning buffers per partition and needs a buffer of at least 64 MiB (aws-cdk-lib 2.275.0's
# S3BucketProps, https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_kinesisfirehose.S3BucketProps.html,
# bufferingSize: "Minimum: Size.mebibytes(1) when record data format conversion or dynamic partitioning is
# disabled, Size.mebibytes(64) when it is enabled"; we found no Firehose guide page stating it). The 5 minutes do
# not bound how late a quiet day's records land: AWS, "Buffer data for dynamic partitioning"
# (https://docs.aws.amazon.com/firehose/latest/dev/buffering.html): with dynamic partitioning Firehose buffers
# in several stages, so "end-to-end delay of a batch of records might be 1.5 times of the configured buffering
# hint time" (here up to ~7.5 minutes), and "Zero buffering feature is not available for dynamic partitioning"
# (the same CDK page: an interval of 60..900 s with it, not 0..900 s).
BUFFER_SIZE = Size.mebibytes(64)
BUFFER_INTERVAL = Duration.minutes(5)
# Past this age the oldest undelivered record means delivery is failing, not buffering: AWS, "Implement best practices
# with CloudWatch Alarms" (https://docs.aws.amazon.com/firehose/latest/dev/firehose-cloudwatch-metrics-best-practices
# .html) alarms on DeliveryToS3.DataFreshness exceeding "the buffering limit (a maximum of 15 minutes)"; 15 minutes is
# twice the 7.5 minutes dynamic partitioning may take with the 5-minute hint (above).
DELIVERY_LATE = Duration.minutes(15)
CIDR_MAPPING = "aws-kinesisfirehose.CidrBlocks"
NONCURRENT_DAYS = 1  # an expired capture's last version is deleted for good this many days later
# Every MLflow REST call of the drift workflow's job, ``python -m monitoring.drift`` (``infra.mlflow_calls`` maps each
# to its IAM action): the version's profile from the registry, then one run of the monitoring experiment (created and
# tagged on its first run). Observed in a local ``mlflow server``'s access log while the job ran, as
# tests/infra/test_drift_mlflow_calls.py does again; artifacts never pass through the server (the client reads and
# writes them in S3: ``mlflow_artifact_uri`` below).
DRIFT_MLFLOW_CALLS = (
    "GET registered-models/get",  # MLflow's client checks the model is no prompt
    "GET model-versions/get-download-uri",  # where the profile is
    "GET experiments/get-by-name",
    "POST experiments/create",
    "GET experiments/get",
    "POST experiments/set-experiment-tag",
    "POST runs/create",
    "POST runs/log-batch",  # the metrics
    "GET runs/get",  # the run's artifact location
    "POST runs/update",  # the run's end
)
# What Firehose needs of an S3 destination (Amazon Data Firehose developer guide, "Grant Firehose access to an Amazon
# S3 destination", https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html#using-iam-s3): these six
# on the bucket and its objects (plus s3:PutObjectAcl only for a bucket another account owns); the last three of
# them act on objects.
FIREHOSE_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads")
FIREHOSE_OBJECT_ACTIONS = ("s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject")


def data_prefix() -> str:
    """``capture/model=!{partitionKeyFromQuery:model}/version=.../dt=.../``: the contract's partition layout."""
    return PREFIX + "".join(f"{key}=!{{partitionKeyFromQuery:{key}}}/" for key in contract.CAPTURE_PARTITIONS)


class CaptureStream(Construct):
    """The capture delivery stream and the lifecycle of what it writes.

    Args:
        bucket: the storage stack's artifact bucket.
        retention_days: days a capture record (or a delivery error) is kept; its last version goes a day later.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.Bucket, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        # The bucket is versioned: expiring a capture only makes it noncurrent ("Object expiration applies only to
        # an object's current version"; "Expiring objects", S3 user guide, https://docs.aws.amazon.com/AmazonS3/
        # latest/userguide/lifecycle-expire-general-considerations.html), and the bucket-wide rule would keep that
        # version 365 days more. These rules' own noncurrent expiration overlaps that one, and "if two expiration
        # policies overlap, the shorter expiration policy is honored" ("How Amazon S3 handles conflicts in lifecycle
        # configurations", https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-conflicts.html). The
        # delete marker then left alone is an expired object delete marker, which S3 removes (the first page).
        for prefix in (PREFIX, ERROR_PREFIX):
            bucket.add_lifecycle_rule(prefix=prefix, expiration=Duration.days(retention_days),
                                      noncurrent_version_expiration=Duration.days(NONCURRENT_DAYS),
                                      id=f"expire-{prefix.rstrip('/')}")
        role = iam.Role(self, "DeliveryRole", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com"),
                        description=f"Firehose delivery into {PREFIX} and {ERROR_PREFIX} of the artifact bucket")
        confine(role, bucket)
        destination = firehose.S3Bucket(
            bucket,
            role=role,
            data_output_prefix=data_prefix(),
            error_output_prefix=ERROR_PREFIX + "!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd}/",
            compression=firehose.Compression.GZIP,
            buffering_size=BUFFER_SIZE,
            buffering_interval=BUFFER_INTERVAL,
            dynamic_partitioning=firehose.DynamicPartitioningProps(enabled=True),
            processors=[firehose.MetadataExtractionProcessor.jq16(dict(contract.CAPTURE_PARTITIONS))],
        )
        self.stream = firehose.DeliveryStream(
            self, "Stream", destination=destination, encryption=firehose.StreamEncryption.aws_owned_key())
        # The L2 adds a mapping of Firehose's CIDR blocks to the stack for destinations that let Firehose in
        # through a firewall (Redshift, Splunk); an S3 destination never reads it, and CloudFormation's own
        # validation flags the unused mapping (W7001).
        stack = Stack.of(self)
        for child in list(stack.node.children):
            if isinstance(child, CfnMapping) and child.node.id.endswith(CIDR_MAPPING):
                stack.node.try_remove_child(child.node.id)
        acknowledge(
            self,
            "CDK's S3 destination grants read-write on the whole bucket; the role's explicit denies leave only "
            "the six S3 actions AWS's Firehose guide lists, on objects only under capture/ and capture-errors/ "
            "(whose names Firehose makes: partitions, timestamps, random suffixes), and no delete.",
            *(f"AwsSolutions-IAM5[{finding}]" for finding in self._wildcards(bucket)),
        )

    def _wildcards(self, bucket: s3.Bucket) -> list[str]:
        bucket_id = Stack.of(self).get_logical_id(bucket.node.default_child)
        return [f"Resource::<{bucket_id}.Arn>/*", "Action::s3:Abort*", "Action::s3:DeleteObject*",
                "Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*"]


def confine(role: iam.Role, bucket: s3.IBucket) -> None:
    """Deny ``role`` every S3 action on ``bucket`` but Firehose's six, and object access outside the capture prefixes.

    CDK's S3 destination always grants ``bucket.grantReadWrite`` on the whole bucket (deletes of every object
    version, every read, object lock retention and legal hold), and the bucket also holds the DVC remote and MLflow's
    artifacts. An explicit deny in the role's policy overrides those allows: ``NotAction`` with ``Deny`` "explicitly
    denies the actions that are not listed" (IAM user guide, "IAM JSON policy elements: NotAction",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html), and ``NotResource``
    with ``Deny`` denies every resource but those listed ("IAM JSON policy elements: NotResource",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html).
    """
    role.add_to_policy(iam.PolicyStatement(
        effect=iam.Effect.DENY, not_actions=[*FIREHOSE_BUCKET_ACTIONS, *FIREHOSE_OBJECT_ACTIONS],
        resources=[bucket.bucket_arn, bucket.arn_for_objects("*")]))
    role.add_to_policy(iam.PolicyStatement(
        effect=iam.Effect.DENY, actions=list(FIREHOSE_OBJECT_ACTIONS),
        not_resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in (PREFIX, ERROR_PREFIX)]))


class CaptureReader(Construct):
    """The role the drift workflow assumes from ``environment`` of ``github_repo``: read ``capture/``, nothing else.

    Args:
        provider: the account's GitHub OIDC provider (the bootstrap stack's).
        github_repo: ``OWNER/REPO``.
        bucket_name: the artifact bucket holding the captures.
        environment: the GitHub environment whose jobs may assume the role (the drift job's; limit it to main).
        mlflow_tracking_server_arn: a SageMaker managed MLflow tracking server the job logs its run to.
        mlflow_artifact_uri: that server's artifact store (``s3://BUCKET/PREFIX``): the MLflow client reads the
            version's profile and writes the run's report there itself.
    """

    def __init__(self, scope: Construct, construct_id: str, *, provider: iam.IOidcProvider, github_repo: str,
                 bucket_name: str, environment: str = "monitor", mlflow_tracking_server_arn: str | None = None,
                 mlflow_artifact_uri: str | None = None) -> None:
        super().__init__(scope, construct_id)
        if not REPO_PATTERN.match(github_repo):
            raise ValueError(f"github_repo must be OWNER/REPO, got {github_repo!r}")
        if not ENVIRONMENT_PATTERN.match(environment):
            raise ValueError(f"environment must be a GitHub environment name, got {environment!r}")
        self.role = iam.Role(
            self, "Role",
            description=f"drift monitoring from GitHub Actions, {github_repo} environment {environment}: "
                        f"read {PREFIX} only",
            max_session_duration=Duration.hours(1),
            assumed_by=iam.WebIdentityPrincipal(provider.oidc_provider_arn, conditions={"StringEquals": {
                f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
                f"{GITHUB_ISSUER}:sub": f"repo:{github_repo}:environment:{environment}"}}),
        )
        bucket_arn = Stack.of(self).format_arn(service="s3", region="", account="", resource=bucket_name)
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{PREFIX}*", PREFIX.rstrip("/")]}}))
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/{PREFIX}*"]))
        findings = []
        if mlflow_tracking_server_arn:
            self.role.add_to_policy(iam.PolicyStatement(actions=mlflow_calls.actions(DRIFT_MLFLOW_CALLS),
                                                        resources=[mlflow_tracking_server_arn]))
        if mlflow_artifact_uri:
            store, prefix = parse_artifact_uri(mlflow_artifact_uri)
            store_arn = Stack.of(self).format_arn(service="s3", region="", account="", resource=store)
            objects = f"{prefix}/*" if prefix else "*"
            self.role.add_to_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[store_arn],
                conditions={"StringLike": {"s3:prefix": [objects, prefix]}} if prefix else None))
            self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject"],
                                                        resources=[f"{store_arn}/{objects}"]))
            findings.append(f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{store}/{objects}]")
        acknowledge(
            self.role,
            "Captured records are read by key under the capture/ prefix of one bucket, whose object names "
            "Firehose makes, and the MLflow client reads and writes artifacts named per run under the tracking "
            "server's artifact prefix.",
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket_name}/{PREFIX}*]", *findings,
        )
