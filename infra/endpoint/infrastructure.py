"""Owns the SageMaker Serverless endpoint: image and model assets, execution role, model, config, endpoint,
and how a new config reaches it (a canary that rolls itself back).

Replacement: the Model and EndpointConfig carry no names, so CloudFormation names them. A new
``model.tar.gz`` changes the Model's ``ModelDataUrl`` (an asset hash), which replaces the Model under a
fresh name; the EndpointConfig refers to that name, so it is replaced too; the Endpoint keeps its name
and is updated in place to the new config. Nothing collides, and the old Model and config are deleted once
the update has succeeded.

The update is a blue/green deployment with CANARY traffic shifting and automatic rollback (``DeploymentConfig``;
AWS: "Blue/Green Deployments", https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html;
serverless endpoints are excluded only from *rolling* deployments, "Exclusions",
.../deployment-guardrails-exclusions.html). The config is set on every synth: ``UpdateEndpoint`` does not
reuse the last one unless asked to ("RetainDeploymentConfig ... The default value is false"). The canary size
is a CAPACITY_PERCENT: a serverless endpoint has no instances to count (that this is the type SageMaker wants
for serverless is our reading of the API, not a sentence AWS wrote; a first deploy confirms it).
If a rollback alarm fires, SageMaker sends all traffic back to the old fleet and the update fails, so
CloudFormation rolls the stack back and ``cdk deploy`` exits non-zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Aws
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.nag import acknowledge

VARIANT_NAME = "AllTraffic"
# What a build of serving/ does not need: caches and local outputs never reach the image context.
_LOGS = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>"  # how cdk-nag spells the ARN tokens
IMAGE_EXCLUDES = ["**/__pycache__", "**/*.pyc", ".pytest_cache", "*.egg-info"]
# AWS, "CreateEndpoint" (SageMaker API Reference, .../sagemaker/latest/APIReference/API_CreateEndpoint.html):
# EndpointName "Maximum length of 63", Pattern [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}.
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# AWS, "BlueGreenUpdatePolicy" (SageMaker API Reference, .../sagemaker/latest/APIReference/
# API_BlueGreenUpdatePolicy.html): MaximumExecutionTimeoutInSeconds "Minimum value of 600. Maximum value of 28800",
# and it "should be larger than the total waiting time specified in TerminationWaitInSeconds and
# WaitIntervalInSeconds" (here 2 * wait_s, each at most 3600: infra/settings.py).
MIN_EXECUTION_S, MAX_EXECUTION_S = 600, 28800


def deployment_config(*, canary_percent: int, wait_s: int,
                      rollback_alarm_names: Sequence[str]) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
    """Blue/green with a canary of ``canary_percent`` for ``wait_s``, all traffic for another ``wait_s`` (the final
    baking period), rolled back if any named alarm fires.

    The shape follows AWS's UpdateEndpoint canary example ("Use canary traffic shifting"): a
    ``MaximumExecutionTimeoutInSeconds`` that "should be larger than the total waiting time".
    """
    timeout = min(MAX_EXECUTION_S, max(MIN_EXECUTION_S, 2 * wait_s + 900))
    return sagemaker.CfnEndpoint.DeploymentConfigProperty(
        blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(type="CAPACITY_PERCENT",
                                                                       value=canary_percent),
                wait_interval_in_seconds=wait_s,
            ),
            termination_wait_in_seconds=wait_s,
            maximum_execution_timeout_in_seconds=timeout,
        ),
        auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
            alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=name) for name in rollback_alarm_names]),
    )


class ServerlessEndpoint(Construct):
    """A SageMaker Serverless endpoint serving ``model_tarball`` with the container built from ``image_directory``.

    Args:
        endpoint_name: the endpoint's name (the alarms watching it are made first, from this name).
        image_directory: folder with the container's Dockerfile (``serving/``).
        model_tarball: the exported ``model.tar.gz``.
        memory_mb: serverless memory, one of 1024..6144 in steps of 1024.
        max_concurrency: most concurrent invocations before SageMaker throttles.
        rollback_alarms: the alarms that roll a deployment back (1..10).
        canary_percent: the canary's share of the traffic.
        canary_wait_s: each baking period (canary, then all traffic).
        provisioned_concurrency: warm instances kept ready (0 for none).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        image_directory: Path,
        model_tarball: Path,
        memory_mb: int,
        max_concurrency: int,
        rollback_alarms: Sequence[cloudwatch.IAlarm],
        canary_percent: int,
        canary_wait_s: int,
        provisioned_concurrency: int = 0,
    ) -> None:
        super().__init__(scope, construct_id)
        if not ENDPOINT_NAME.match(endpoint_name):
            raise ValueError(f"endpoint name {endpoint_name!r} is not a valid SageMaker endpoint name "
                             "(letters, digits and hyphens, at most 63)")
        # AWS, "AutoRollbackConfig" (SageMaker API Reference, .../APIReference/API_AutoRollbackConfig.html): Alarms
        # "Minimum number of 1 item. Maximum number of 10 items."
        if not 1 <= len(rollback_alarms) <= 10:
            raise ValueError("a deployment takes 1..10 rollback alarms")
        # Built by `cdk deploy` (needs Docker there), only hashed and copied at synth. linux/amd64 because
        # serverless endpoints run on x86 and an image built on an ARM laptop would otherwise not start.
        self.image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(image_directory),
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=IMAGE_EXCLUDES,
        )
        self.model_data = s3_assets.Asset(self, "ModelData", path=str(model_tarball))

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker pulls the serving image, reads the model tarball and writes its logs.",
        )
        self.image.repository.grant_pull(self.role)
        # Only this object, not the whole assets bucket (Asset.grant_read would grant the bucket).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.model_data.bucket.arn_for_objects(self.model_data.s3_object_key)],
            )
        )
        # Pseudo-parameter tokens, not the stack's region: the ARN (and so its cdk-nag finding id) reads the
        # same whether the stack is synthesized environment-agnostic or for a concrete account and region.
        log_groups = (
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/*"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[log_groups, f"{log_groups}:log-stream:*"],
            )
        )
        # AWS, "CreateModel API: Execution Role Permissions" (https://docs.aws.amazon.com/sagemaker/latest/dg/
        # sagemaker-roles.html#sagemaker-roles-createmodel-perms) lists cloudwatch:PutMetricData with the logs and ECR
        # actions, even in its scoped policy; PutMetricData takes no resource scope ("applicable for * resources").
        self.role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"]))
        acknowledge(
            self.role,
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource scope; SageMaker names the "
            "endpoint's log group and streams itself, so they are matched under /aws/sagemaker/Endpoints/.",
            "AwsSolutions-IAM5[Resource::*]",
            f"AwsSolutions-IAM5[Resource::{_LOGS}:log-group:/aws/sagemaker/Endpoints/*]",
            f"AwsSolutions-IAM5[Resource::{_LOGS}:log-group:/aws/sagemaker/Endpoints/*:log-stream:*]",
        )

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.image.image_uri,
                model_data_url=self.model_data.s3_object_url,
            ),
        )
        # AWS: "Ensure that your IAM execution role has permission to perform the cloudwatch:DescribeAlarms
        # action on the auto-rollback alarms you specify" ("Auto-Rollback Configuration and Monitoring",
        # https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html).
        self.role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"],
                                                    resources=[alarm.alarm_arn for alarm in rollback_alarms]))
        # CreateModel checks the role can pull the image and read the data: the policy must exist first.
        self.model.node.add_dependency(self.role)

        serverless = sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
            memory_size_in_mb=memory_mb,
            max_concurrency=max_concurrency,
            provisioned_concurrency=provisioned_concurrency or None,
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    model_name=self.model.attr_model_name,
                    serverless_config=serverless,
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            # Named by the caller (after its stack, so two stacks never collide): the alarms the deployment
            # config names must exist before the endpoint, and they need its name to watch it.
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # alarm_name is the alarms' Ref: CloudFormation creates them before the endpoint.
            deployment_config=deployment_config(canary_percent=canary_percent, wait_s=canary_wait_s,
                                                rollback_alarm_names=[a.alarm_name for a in rollback_alarms]),
        )
        self.endpoint_name = self.endpoint.attr_endpoint_name
        # AWS, "AWS::SageMaker::Endpoint", Return values (CloudFormation Template Reference,
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-sagemaker-endpoint.html):
        # "Ref returns the Amazon Resource Name (ARN) of the endpoint".
        self.endpoint_arn = self.endpoint.ref
        self.variant_name = VARIANT_NAME
