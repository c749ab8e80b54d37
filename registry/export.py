"""Owns exporting a registered version as ``model.tar.gz`` (the layout SageMaker unpacks into /opt/ml/model).

The tarball holds ``booster.ubj`` (XGBoost's own format), ``schema.json`` (features, category levels and a
self-test record), ``profile.json`` (the reference profile for monitoring, when the version has one) and
``metadata.json`` (registered name, version, run id, data hash, git commit, the run's
test metrics, export time and the sha256 of every file). No pickles. Packing is ``serving.bundle.pack``:
sorted entries, fixed mtimes and owners, a gzip header without a timestamp, and an atomic rename, so an
existing tarball is never left half-written.

``exported_at`` is deterministic so that exporting the same version twice gives byte-identical tarballs:
it is ``$SOURCE_DATE_EPOCH`` (the reproducible-builds convention) when set, else the time the version was
registered, both as ISO 8601 UTC. It therefore says which build this is, not the wall-clock time of the copy.

Usage: ``python -m registry.export [--version N] [--out PATH] [--s3-uri s3://bucket/key]``; by default the
version holding the ``production`` alias, written to ``export.path`` from params.yaml.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
from mlflow.entities.model_registry import ModelVersion

from core import tracking
from core.cli import UserError, run_cli
from core.files import check_replaceable, check_writable_folder
from core.params import load_params, params_option
from registry import source_date
from registry.versions import Registry, fetch_model, mlflow_errors, open_registry
from serving import bundle
from serving.layout import ModelError

TEST_METRICS = ("test_rmse", "test_mse", "test_mae", "test_r2")


def exported_at(mv: ModelVersion) -> str:
    """``$SOURCE_DATE_EPOCH`` if set, else the version's registration time, as ISO 8601 UTC."""
    try:
        date = source_date()  # checked as the package loaded too; set since by a caller in the same process
    except ValueError as err:
        raise UserError(str(err)) from None
    return date or datetime.fromtimestamp(int(mv.creation_timestamp) // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bundle_info(registry: Registry, mv: ModelVersion) -> dict[str, Any]:
    """The lineage fields of ``metadata.json``: from the version's tags and its training run's metrics."""
    run_id = mv.tags.get("run_id") or mv.run_id
    with mlflow_errors(f"training run {run_id} of version {mv.version}"):
        run_metrics = registry.client.get_run(run_id).data.metrics
    return {
        "registered_name": registry.name,
        "version": str(mv.version),
        "run_id": run_id,
        "data_hash": mv.tags.get("data_hash", "unknown"),
        "git_commit": mv.tags.get("git_commit", "unknown"),
        "metrics": {k: run_metrics[k] for k in TEST_METRICS if k in run_metrics},
        "exported_at": exported_at(mv),
    }


def write_tarball(registry: Registry, mv: ModelVersion, model_dir: Path, out: Path) -> Path:
    """Add ``metadata.json`` to a fetched model folder and pack it atomically to ``out``."""
    try:
        bundle.write_metadata(model_dir, bundle_info(registry, mv))
        return bundle.pack(model_dir, out)
    except ModelError as err:
        raise UserError(f"exporting version {mv.version}: {err}") from None
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    except ValueError as err:  # json refuses NaN/inf metrics: metadata.json must stay strict JSON
        raise UserError(f"exporting version {mv.version}: metadata is not valid JSON ({err})") from None


def check_destination(out: Path) -> None:
    """Refuse, before anything changes, an ``out`` the tarball could not be written to.

    Creates ``out``'s folder if it is missing (as writing would) and a probe file in it, removed at once.

    Raises:
        UserError: ``out`` is a folder, or its folder cannot be created or written.
    """
    if out.is_dir():
        raise UserError(f"cannot write {out}: it is a directory")
    try:
        check_replaceable(out)
        check_writable_folder(out.parent)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None


def export_version(registry: Registry, mv: ModelVersion, out: Path) -> Path:
    """Download, check and pack one version; an existing ``out`` changes only if everything succeeded."""
    with tempfile.TemporaryDirectory(prefix="registry-export-") as tmp:
        model_dir, _ = fetch_model(registry, mv, Path(tmp))
        return write_tarball(registry, mv, model_dir, out)


def parse_s3_uri(uri: str, filename: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); a key ending in ``/`` (or none) gets ``filename`` appended.

    Raises:
        UserError: not an s3:// URI with a bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UserError(f"--s3-uri must look like s3://bucket/key, got {uri!r}")
    key = parsed.path.lstrip("/")
    if not key or key.endswith("/"):
        key += filename
    return parsed.netloc, key


def upload(path: Path, bucket: str, key: str) -> None:
    """Upload with boto3's default credential chain (``AWS_PROFILE``, OIDC role, ``AWS_ENDPOINT_URL``...).

    Raises:
        UserError: credentials, bucket or network problem, in one line.
    """
    import boto3  # only the --s3-uri path needs boto3; keep plain exports fast to start
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        boto3.client("s3").upload_file(str(path), bucket, key)
    except (BotoCoreError, ClientError, S3UploadFailedError) as err:
        raise UserError(f"upload to s3://{bucket}/{key} failed ({str(err).splitlines()[0]}); "
                        f"{path} was written") from None


@click.command(help="Export a registered version (default: the production alias) as model.tar.gz.")
@params_option
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Version number to export (default: the version holding registry.alias).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Tarball path (default: export.path in params.yaml).")
@click.option("--s3-uri", default=None, help="Also upload the tarball to s3://bucket/key with boto3.")
def cli(params_file: Path, version: int | None, out: Path | None, s3_uri: str | None) -> None:
    tracking.quiet_mlflow()
    params = load_params(params_file)
    out = out or params.export.path
    target = parse_s3_uri(s3_uri, out.name) if s3_uri else None
    check_destination(out)
    registry = open_registry(params)
    if version is not None:
        mv = registry.version(version)
    else:
        mv = registry.by_alias(params.registry.alias)
        if mv is None:
            raise UserError(f"model '{registry.name}' has no '{params.registry.alias}' alias yet; promote a "
                            f"version first (python -m registry.promote) or pass --version")
    path = export_version(registry, mv, out)
    click.echo(f"exported {registry.name} version {mv.version} to {path} (sha256 {bundle.sha256(path)})")
    if target:
        upload(path, *target)
        click.echo(f"uploaded to s3://{target[0]}/{target[1]}")


def main(argv: list[str] | None = None) -> int:
    """Run the export command and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
