"""Owns CI's deploy identity: GitHub's OIDC provider (created or imported) and the role CI assumes.

The role trusts tokens for ``repo:OWNER/REPO:ref:refs/heads/main`` only, with audience
``sts.amazonaws.com``. Its one right is to assume the CDK bootstrap roles of this account and region
(deploy, file/image publishing, lookup), which is how ``cdk deploy`` works: CloudFormation then acts
through the bootstrap's execution role. The release job also reads the data (``dvc pull`` from the storage
stack's bucket) and talks to MLflow, so when given, the role may read that bucket's ``dvc/`` prefix and call
the SageMaker managed MLflow tracking server — nothing else.
"""

from __future__ import annotations

import re

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

GITHUB_ISSUER = "token.actions.githubusercontent.com"
REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
BOOTSTRAP_ROLES = ("deploy-role", "file-publishing-role", "image-publishing-role", "lookup-role")
DEFAULT_QUALIFIER = "hnb659fds"  # CDK's default bootstrap qualifier


class GitHubDeployRole(Construct):
    """The role GitHub Actions assumes from ``branch`` of ``github_repo`` to run ``cdk deploy``.

    Args:
        github_repo: ``OWNER/REPO``.
        branch: the only branch whose workflows may assume the role.
        existing_provider_arn: import this OIDC provider instead of creating one (one per account).
        cdk_qualifier: the CDK bootstrap qualifier whose roles the deploy assumes.
        data_bucket_name: the DVC remote's bucket; the role may list it and read objects under ``dvc/``.
        mlflow_tracking_server_arn: a SageMaker managed MLflow tracking server the role may use.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        github_repo: str,
        branch: str = "main",
        existing_provider_arn: str | None = None,
        cdk_qualifier: str = DEFAULT_QUALIFIER,
        data_bucket_name: str | None = None,
        mlflow_tracking_server_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not REPO_PATTERN.match(github_repo):
            raise ValueError(f"github_repo must be OWNER/REPO, got {github_repo!r}")
        if existing_provider_arn:
            self.provider = iam.OidcProviderNative.from_oidc_provider_arn(
                self, "Provider", existing_provider_arn
            )
        else:
            # The native resource (AWS::IAM::OIDCProvider), not OpenIdConnectProvider's custom-resource Lambda.
            self.provider = iam.OidcProviderNative(
                self, "Provider", url=f"https://{GITHUB_ISSUER}", client_ids=["sts.amazonaws.com"]
            )
        self.role = iam.Role(
            self,
            "Role",
            description=f"cdk deploy from GitHub Actions, {github_repo}@{branch} only",
            max_session_duration=Duration.hours(1),
            assumed_by=iam.WebIdentityPrincipal(
                self.provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
                        f"{GITHUB_ISSUER}:sub": f"repo:{github_repo}:ref:refs/heads/{branch}",
                    }
                },
            ),
        )
        stack = Stack.of(self)
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[
                    stack.format_arn(
                        service="iam",
                        region="",
                        resource="role",
                        resource_name=f"cdk-{cdk_qualifier}-{name}-{stack.account}-{stack.region}",
                    )
                    for name in BOOTSTRAP_ROLES
                ],
            )
        )
        if data_bucket_name:
            bucket_arn = stack.format_arn(service="s3", region="", account="", resource=data_bucket_name)
            self.role.add_to_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["dvc/*", "dvc"]}}))
            self.role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/dvc/*"]))
        if mlflow_tracking_server_arn:
            # The sagemaker-mlflow plugin signs MLflow REST calls with these IAM actions on the server.
            self.role.add_to_policy(iam.PolicyStatement(
                actions=["sagemaker-mlflow:*"], resources=[mlflow_tracking_server_arn]))
