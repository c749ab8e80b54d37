"""Owns the SageMaker Serverless endpoint: image and model assets, execution role, model, config, endpoint.

Replacement: the Model and EndpointConfig carry no names, so CloudFormation names them. A new
``model.tar.gz`` changes the Model's ``ModelDataUrl`` (an asset hash), which replaces the Model under a
fresh name; the EndpointConfig refers to that name, so it is replaced too; the Endpoint keeps its name
and is updated in place to the new config, which SageMaker does without downtime. Nothing collides,
and the old Model and config are deleted once the update has succeeded.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws
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


class ServerlessEndpoint(Construct):
    """A SageMaker Serverless endpoint serving ``model_tarball`` with the container built from ``image_directory``.

    Args:
        image_directory: folder with the container's Dockerfile (``serving/``).
        model_tarball: the exported ``model.tar.gz``.
        memory_mb: serverless memory, one of 1024..6144 in steps of 1024.
        max_concurrency: most concurrent invocations before SageMaker throttles.
        provisioned_concurrency: warm instances kept ready (0 for none).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image_directory: Path,
        model_tarball: Path,
        memory_mb: int,
        max_concurrency: int,
        provisioned_concurrency: int = 0,
    ) -> None:
        super().__init__(scope, construct_id)
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
        acknowledge(
            self.role,
            "ecr:GetAuthorizationToken has no resource scope; SageMaker names the endpoint's log group and "
            "streams itself, so they are matched under /aws/sagemaker/Endpoints/.",
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
            # No explicit name: CloudFormation names it once and keeps the name across config updates, so
            # two copies of a stack never collide, and the Lambda and alarms read it from this resource.
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint_name = self.endpoint.attr_endpoint_name
        self.endpoint_arn = self.endpoint.ref  # Ref of an AWS::SageMaker::Endpoint is its ARN
        self.variant_name = VARIANT_NAME
