"""Owns CI's deploy identity: GitHub's OIDC provider (created or imported) and the role CI assumes.

The role trusts tokens of jobs that run in the repository's GitHub environments (``dev``, ``prod``), with
audience ``sts.amazonaws.com``. A job that references an environment presents the subject
``repo:OWNER/REPO:environment:NAME``, not the branch (GitHub, "OpenID Connect reference",
https://docs.github.com/en/actions/reference/security/oidc: "The subject claim includes the environment name
when the job references an environment"), so the trust names environments; which branches may deploy to an
environment, and who must approve, is the environment's protection rule in GitHub.

Its one deploy right is to assume the CDK bootstrap roles of this account and region (deploy, file/image
publishing, lookup), which is how ``cdk deploy`` works: CloudFormation then acts through the bootstrap's
execution role. The release job also reads the data (``dvc pull`` from the storage stack's bucket) and talks
to MLflow, so when given, the role may read that bucket's ``dvc/`` prefix, make the release's MLflow calls on the
SageMaker managed MLflow tracking server (``RELEASE_MLFLOW_CALLS``, one IAM action each), and read and write the
server's artifact store — nothing else. The artifact store is needed because the MLflow client (with the
``sagemaker-mlflow`` plugin) reads and writes artifacts in S3 itself with the caller's credentials; the tracking
server is not an artifact proxy (sagemaker-mlflow's ``S3PresignedArtifactRepository``: without
``SAGEMAKER_PRESIGNED_URL_UPLOAD_ENABLED=true`` "all behavior is identical to the parent S3ArtifactRepository", and
downloads always are).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlparse

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import mlflow_calls
from infra.nag import acknowledge

GITHUB_ISSUER = "token.actions.githubusercontent.com"
REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ENVIRONMENT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MLFLOW_SERVER_PATTERN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-tracking-server/[A-Za-z0-9-]+$")
DEFAULT_ENVIRONMENTS = ("dev", "prod")
# How cdk-nag spells an S3 ARN made with the stack's partition token.
_S3 = "arn:<AWS::Partition>:s3:::"


def parse_artifact_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` (a tracking server's ArtifactStoreUri) -> (bucket, prefix without slashes)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not BUCKET_PATTERN.match(parsed.netloc or "") or parsed.query or parsed.fragment:
        raise ValueError(f"mlflow_artifact_uri must be the tracking server's s3://BUCKET/PREFIX, got {uri!r}")
    return parsed.netloc, parsed.path.strip("/")
BOOTSTRAP_ROLES = ("deploy-role", "file-publishing-role", "image-publishing-role", "lookup-role")
DEFAULT_QUALIFIER = "hnb659fds"  # CDK's default bootstrap qualifier
# Every step after a release job's credentials step runs on one session: dvc pull, training, the cdk deploy that
# watches a canary through two baking periods (600 s each in prod, more if it rolls back), the smoke test and the
# alias move; the jobs may run 90 minutes (.github/workflows/train-deploy.yml, timeout-minutes). A one-hour session
# could expire mid-deploy or before the alias moves. IAM allows 1 to 12 hours (AWS, "UpdateRole", IAM API Reference,
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_UpdateRole.html: MaxSessionDuration "can have a value
# from 1 hour to 12 hours"); the job must ask for it (configure-aws-credentials' role-duration-seconds, whose
# default with OIDC is 1 hour).
DEPLOY_SESSION = Duration.hours(2)
# Every MLflow REST call of the release workflow (.github/workflows/train-deploy.yml) with the deploy role
# (``infra.mlflow_calls`` maps each to its IAM action). The steps that call MLflow are make train (dvc repro ->
# experiments.train), release-gate (registry.release), release-export and verify-release (registry.export),
# release-promote (registry.promote) and release-restore (registry.export, then the deploy and verify-release); data,
# deploy, smoke and job-summary never do. tests/infra/test_release_mlflow_calls.py runs those modules as the steps
# do against a real ``mlflow server`` (a first release on an empty server, a second gated against production, a gate
# refusal, a forced and a repeated promotion, a restore with and without production, a promotion that finds the lock
# of one killed part-way) and requires exactly these calls. A resumed study's calls (runs/search, when the Optuna
# journal survives a run) cannot happen in CI: the journal is untracked and the workflow sets no OPTUNA_STORAGE.
RELEASE_MLFLOW_CALLS = (
    # make train
    "GET experiments/get-by-name",  # the training experiment (mlflow.set_experiment)
    "POST experiments/create",  # the first training on a server creates it...
    "GET experiments/get",  # ...and reads it back
    "POST experiments/set-experiment-tag",  # its kind, for MLflow's UI (core.tracking.use_experiment)
    "POST runs/create",  # the parent run, and one child run per Optuna trial
    "POST runs/log-batch",  # params, metrics and tags of the trials and of the parent
    "POST runs/set-tag",  # the parent run's owner and heartbeat (experiments.parent_run)
    "POST runs/log-inputs",  # the training table as the run's dataset
    "GET runs/get",  # a run's artifact location and params; export reads the training run's test metrics
    "POST logged-models",  # mlflow.pyfunc.log_model (MLflow 3): the logged model...
    "POST runs/outputs",  # ...as the parent run's output,
    "GET metrics/get-history",  # ...with the run's metrics,
    "PATCH logged-models/{model_id}",  # ...finalized once its files are in S3,
    "GET logged-models/{model_id}",  # ...and, once registered, read and
    "PATCH logged-models/{model_id}/tags",  # ...tagged with its model version
    "POST runs/update",  # each run's end
    "POST registered-models/create",  # the first registration (later ones are told it exists); the promotion lock
    "POST model-versions/create",
    # make release-gate, release-export, release-promote, verify-release, release-restore
    "GET registered-models/get",  # each command checks the model; the history and the lock are its tags
    "GET model-versions/search",  # the gate without a version: the best trained on this data
    "GET model-versions/get",  # a version by number
    "GET registered-models/alias",  # the version holding production (or previous)
    "GET model-versions/get-download-uri",  # where a version's files are in S3
    "POST model-versions/set-tag",  # the gate's decision, on the candidate
    "POST registered-models/set-tag",  # the lock's plan, the history entry
    "POST registered-models/alias",  # moving production and previous
    "DELETE registered-models/alias",  # undoing a killed promotion that had moved only previous, onto no version
    "DELETE registered-models/delete",  # releasing the promotion lock (or a dead holder's)
)


class GitHubDeployRole(Construct):
    """The role GitHub Actions jobs of ``github_repo`` assume, from one of ``environments``, to run ``cdk deploy``.

    Args:
        github_repo: ``OWNER/REPO``.
        environments: the GitHub environments whose jobs may assume the role.
        existing_provider_arn: import this OIDC provider instead of creating one (one per account).
        cdk_qualifier: the CDK bootstrap qualifier whose roles the deploy assumes.
        data_bucket_name: the DVC remote's bucket; the role may list it and read objects under ``dvc/``.
        mlflow_tracking_server_arn: a SageMaker managed MLflow tracking server the role may use.
        mlflow_artifact_uri: that server's artifact store (``s3://BUCKET/PREFIX``), which the role may read and
            write; required with ``mlflow_tracking_server_arn``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        github_repo: str,
        environments: Sequence[str] = DEFAULT_ENVIRONMENTS,
        existing_provider_arn: str | None = None,
        cdk_qualifier: str = DEFAULT_QUALIFIER,
        data_bucket_name: str | None = None,
        mlflow_tracking_server_arn: str | None = None,
        mlflow_artifact_uri: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not REPO_PATTERN.match(github_repo):
            raise ValueError(f"github_repo must be OWNER/REPO, got {github_repo!r}")
        if not environments or not all(ENVIRONMENT_PATTERN.match(name) for name in environments):
            raise ValueError(f"github_environments must be environment names, got {list(environments)!r}")
        if data_bucket_name is not None and not BUCKET_PATTERN.match(data_bucket_name):
            raise ValueError(f"data_bucket must be an S3 bucket name, got {data_bucket_name!r}")
        if mlflow_tracking_server_arn is not None and not MLFLOW_SERVER_PATTERN.match(mlflow_tracking_server_arn):
            raise ValueError("mlflow_tracking_server_arn must look like "
                             "arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME")
        if bool(mlflow_tracking_server_arn) != bool(mlflow_artifact_uri):
            raise ValueError("mlflow_tracking_server_arn and mlflow_artifact_uri go together: the MLflow client "
                             "reads and writes the server's artifact store (s3://BUCKET/PREFIX) itself")
        artifacts = parse_artifact_uri(mlflow_artifact_uri) if mlflow_artifact_uri else None
        if existing_provider_arn:
            self.provider = iam.OidcProviderNative.from_oidc_provider_arn(
                self, "Provider", existing_provider_arn
            )
        else:
            # The native resource (AWS::IAM::OIDCProvider), not OpenIdConnectProvider's custom-resource Lambda.
            # No thumbprint: AWS, "UpdateOpenIDConnectProviderThumbprint" (IAM API Reference,
            # https://docs.aws.amazon.com/IAM/latest/APIReference/API_UpdateOpenIDConnectProviderThumbprint.html):
            # "AWS secures communication with some OIDC identity providers (IdPs) through our library of trusted
            # root certificate authorities (CAs) instead of using a certificate thumbprint ... These OIDC IdPs
            # include Auth0, GitHub, GitLab, Google".
            self.provider = iam.OidcProviderNative(
                self, "Provider", url=f"https://{GITHUB_ISSUER}", client_ids=["sts.amazonaws.com"]
            )
        self.role = iam.Role(
            self,
            "Role",
            description=f"cdk deploy from GitHub Actions, {github_repo} environments {', '.join(environments)}",
            max_session_duration=DEPLOY_SESSION,
            assumed_by=iam.WebIdentityPrincipal(
                self.provider.oidc_provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
                        f"{GITHUB_ISSUER}:sub": [f"repo:{github_repo}:environment:{name}" for name in environments],
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
            self._prefix_access(data_bucket_name, "dvc", ["s3:GetObject"],
                                "dvc pull reads the content-addressed objects DVC names under the dvc/ prefix")
        if mlflow_tracking_server_arn and artifacts:
            self.role.add_to_policy(iam.PolicyStatement(actions=mlflow_calls.actions(RELEASE_MLFLOW_CALLS),
                                                        resources=[mlflow_tracking_server_arn]))
            self._prefix_access(*artifacts, ["s3:GetObject", "s3:PutObject"],
                                "The MLflow client writes run artifacts and reads model versions under the "
                                "tracking server's artifact prefix, with names MLflow makes up per run")

    def _prefix_access(self, bucket: str, prefix: str, actions: list[str], why: str) -> None:
        """List ``bucket`` under ``prefix`` and ``actions`` on its objects there (the whole bucket if no prefix)."""
        stack = Stack.of(self)
        bucket_arn = stack.format_arn(service="s3", region="", account="", resource=bucket)
        listing = {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}} if prefix else None
        self.role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket_arn],
                                                    conditions=listing))
        objects = f"{prefix}/*" if prefix else "*"
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=[f"{bucket_arn}/{objects}"]))
        acknowledge(self.role, f"{why}; the grant is that one prefix of that one bucket.",
                    f"AwsSolutions-IAM5[Resource::{_S3}{bucket}/{objects}]")
