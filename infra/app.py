"""Owns the CDK app: reads the context once, checks the inputs exist, builds the stacks, runs cdk-nag.

Run by ``cdk`` (see cdk.json: ``PYTHONPATH=.. ../.venv/bin/python -m infra.app``). Context keys are
listed in infra/settings.py. Relative paths in context are relative to the repository root. No AWS call
is made at synth: the stacks are environment-agnostic unless CDK_DEFAULT_ACCOUNT/REGION are set.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from core.cli import UserError
from core.params import Params, load_params
from infra.nag import synth_or_report
from infra.settings import context_keys, settings_from_context
from infra.stacks import AccountStack, BootstrapStack, ServingStack, StorageStack

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "StudentScore"
# The context keys read here besides the settings' (infra/settings.py's docstring says what each one does).
APP_CONTEXT = frozenset({"model_tarball", "serving_dir", "github_repo", "github_oidc_provider_arn",
                         "github_environments", "data_bucket", "mlflow_tracking_server_arn", "mlflow_artifact_uri",
                         "alarm_email"})
# CDK's own context keys never look like this: feature flags are "@aws-cdk/...", the CLI's "aws:cdk:...", lookups
# "availability-zones:account=...", and "acknowledged-issue-numbers" has dashes.
PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(Exception):
    """A context value or input file is wrong; the message is one line for the user."""


def _path(value: str | None, default: Path) -> Path:
    return default if not value else (Path(value) if Path(value).is_absolute() else ROOT / value)


def default_tarball(params: Params) -> Path:
    """params.yaml ``export.path``: where the registry's export job writes the model."""
    return ROOT / params.export.path


def build_app(*, context: dict[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """The app with its stacks.

    Args:
        context: context on top of cdk.json's (tests use it instead of ``-c``); the CLI's ``-c`` wins over both.
        outdir: where to write the cloud assembly (default: what the CLI asks for, or a temp dir).
    """
    # cdk.json's context (feature flags included) also applies in-process, so tests synthesize what the CLI does.
    defaults = json.loads((Path(__file__).parent / "cdk.json").read_text())["context"]
    app = cdk.App(context={**defaults, **(context or {})}, outdir=outdir)
    get = app.node.try_get_context
    _refuse_unknown_keys(app.node.get_all_context())
    try:
        settings = settings_from_context(get)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        params = load_params(ROOT / "params.yaml")
    except UserError as error:  # a params.yaml that is not the project's: one line, like every other input
        raise ConfigError(str(error)) from None
    tarball = _path(get("model_tarball"), default_tarball(params))
    if not tarball.is_file():
        raise ConfigError(
            f"model tarball not found: {tarball} (export a model, or pass -c model_tarball=PATH)"
        )
    image_directory = _path(get("serving_dir"), ROOT / "serving")
    if not (image_directory / "Dockerfile").is_file():
        raise ConfigError(f"no Dockerfile in {image_directory} (pass -c serving_dir=PATH)")
    # Environment-agnostic unless the CLI knows both (it does with credentials, at deploy); offline it may
    # know a default region only, and a half-specified environment would be neither.
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    prefix = f"{PROJECT}-{settings.name}"
    try:
        _stacks(app, prefix, settings, tarball, image_directory, env, drop_fields=params.monitor.drop_fields)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for key, value in {"Project": PROJECT, "Environment": settings.name}.items():
        cdk.Tags.of(app).add(key, value)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app


def _refuse_unknown_keys(keys: Iterable[str]) -> None:
    """A mistyped ``-c`` key (``endpoint_max_concurency=10``): CDK would ignore it and deploy the default."""
    known = context_keys() | APP_CONTEXT
    for key in sorted(keys):
        if PLAIN_KEY.fullmatch(key) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"unknown context key {key!r} (-c {key}=...): {hint}")


def _stacks(app: cdk.App, prefix: str, settings: Any, tarball: Path, image_directory: Path,
            env: cdk.Environment | None, *, drop_fields: tuple[str, ...]) -> None:
    get = app.node.try_get_context
    account = AccountStack(app, f"{PROJECT}-Account", env=env,
                           description="API Gateway's account-wide CloudWatch logging role (one per account+region)")
    storage = StorageStack(app, f"{prefix}-Storage", capture_retention_days=settings.capture_retention_days, env=env,
                           description="DVC remote, MLflow artifacts and captured traffic, with the capture stream")
    serving = ServingStack(
        app,
        f"{prefix}-Serving",
        settings=settings,
        model_tarball=tarball,
        image_directory=image_directory,
        alarm_email=get("alarm_email") or None,
        capture_stream=storage.capture.stream,
        capture_drop_fields=drop_fields,
        env=env,
        description=f"Student score predictions: SageMaker Serverless endpoint + REST API ({settings.name})",
    )
    serving.add_stack_dependency(account, "stage logging needs the account's API Gateway CloudWatch role")
    github_repo = get("github_repo")
    if github_repo:
        environments = [e.strip() for e in str(get("github_environments") or "dev,prod").split(",") if e.strip()]
        BootstrapStack(
            app,
            f"{PROJECT}-Bootstrap",
            github_repo=github_repo,
            environments=environments,
            existing_provider_arn=get("github_oidc_provider_arn"),
            data_bucket_name=get("data_bucket"),
            mlflow_tracking_server_arn=get("mlflow_tracking_server_arn"),
            mlflow_artifact_uri=get("mlflow_artifact_uri"),
            env=env,
            description="GitHub Actions OIDC deploy role",
        )


def main() -> int:
    """Synthesize into the directory the CDK CLI asks for; one line on stderr per configuration error or
    unacknowledged cdk-nag finding, never a traceback."""
    try:
        app = build_app()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not app.node.try_get_context("github_repo"):
        print("note: no -c github_repo=OWNER/REPO, so the bootstrap stack is left out", file=sys.stderr)
    return synth_or_report(app)


if __name__ == "__main__":
    raise SystemExit(main())
