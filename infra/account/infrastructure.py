"""Owns API Gateway's account-wide CloudWatch role: one ``AWS::ApiGateway::Account`` per account and region.

Stage logging (access logs, method logging) needs that account setting. AWS, "AWS::ApiGateway::Account"
(https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-apigateway-account.html):
"To avoid overwriting other roles, you should only have one AWS::ApiGateway::Account resource per region per
account." A ``RestApi(cloud_watch_role=True)`` in each serving stack would make one per stack, each overwriting
the last, and deleting the last one's stack would leave the account pointing at a deleted role (aws-cdk issue
#10878). So the serving stacks set ``cloud_watch_role=False`` and this construct, in its own stack, owns it.
Role and setting are retained when the stack is deleted: other APIs in the account may log through them.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge

PUSH_TO_LOGS = "service-role/AmazonAPIGatewayPushToCloudWatchLogs"


class ApiGatewayCloudWatchRole(Construct):
    """The role API Gateway writes CloudWatch Logs with, set as the account's (and region's) logging role."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(PUSH_TO_LOGS)],
            description="API Gateway writes stage logs to CloudWatch Logs with this role (account-wide).",
        )
        self.role.apply_removal_policy(RemovalPolicy.RETAIN)
        self.account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=self.role.role_arn)
        self.account.apply_removal_policy(RemovalPolicy.RETAIN)
        acknowledge(
            self.role,
            "API Gateway's account-level CloudWatch role uses the AWS-managed AmazonAPIGatewayPushToCloudWatchLogs "
            "policy, the documented way to enable stage logs.",
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{PUSH_TO_LOGS}]",
        )
