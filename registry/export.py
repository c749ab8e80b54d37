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

import os
import re
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
from mlflow.entities.model_registry import ModelVersion

from core import tracking
from core.cli import MODEL_VERSION, OutputFile, UserError, run_cli
from core.params import load_params, params_option
from registry import source_date
from registry.versions import Registry, fetch_model, mlflow_errors, open_registry, same_version
from serving import bundle, layout
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
    if not run_id:
        raise UserError(f"version {mv.version} was registered without a training run: its lineage and test "
                        "metrics are unknown, so it is not exported (register it from its training run)")
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


def stamp(registry: Registry, mv: ModelVersion, model_dir: Path) -> None:
    """Write ``metadata.json`` into a fetched model folder. A promotion calls it before it moves an alias, so that
    lineage that cannot be read (no training run, a purged one) refuses the change instead of failing after it."""
    try:
        bundle.write_metadata(model_dir, bundle_info(registry, mv))
    except ModelError as err:
        raise UserError(f"exporting version {mv.version}: {err}") from None
    except ValueError as err:  # json refuses NaN/inf metrics: metadata.json must stay strict JSON
        raise UserError(f"exporting version {mv.version}: metadata is not valid JSON ({err})") from None


def write_tarball(registry: Registry, mv: ModelVersion, model_dir: Path, out: Path) -> Path:
    """Add ``metadata.json`` to a fetched model folder and pack it atomically to ``out``."""
    stamp(registry, mv, model_dir)
    return pack_stamped(mv, model_dir, out)


def pack_stamped(mv: ModelVersion, model_dir: Path, out: Path) -> Path:
    """Pack a fetched model folder that ``stamp`` has written ``metadata.json`` into, atomically to ``out``."""
    try:
        return bundle.pack(model_dir, out)
    except ModelError as err:
        raise UserError(f"exporting version {mv.version}: {err}") from None
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None


def exported_version(path: Path, name: str) -> str | None:
    """The version of model ``name`` that the bundle at ``path`` holds, or None (no bundle, another model)."""
    try:
        metadata = layout.bundle_metadata(path)
    except ModelError:
        return None
    return str(metadata["version"]) if metadata.get("registered_name") == name else None


def check_destination(out: Path) -> None:
    """Refuse, before anything is written, an ``out`` the tarball could not or should not replace.

    Only a missing path or an earlier model tarball may be replaced (``--out mlflow.db`` replaced the tracking
    store), never through a symlink. Creates nothing: ``bundle.pack`` makes a missing folder once the export
    has succeeded, so a failed one leaves none behind. The nearest existing folder gets a probe file (removed at
    once) whose name is as long as pack's temp name or the longest folder still to create.

    Raises:
        UserError: one line naming ``out`` and what is wrong.
    """
    try:
        _check_existing(out)
        folder, missing = _existing_folder(out.parent)
        if not folder.is_dir():
            raise UserError(f"cannot write {out}: {folder} is not a folder")
        temp_name = len(os.fsencode(bundle.temp_prefix(out))) + _MKSTEMP_RANDOM + len(bundle.TEMP_SUFFIX)
        _probe(folder, max([temp_name, *(len(os.fsencode(name)) for name in missing)]))
    except OSError as err:  # a name too long, no permission, a read-only file system
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None


# mkstemp's random part: pack's temp name is its prefix, these characters and its suffix.
_MKSTEMP_RANDOM = 8


def _check_existing(out: Path) -> None:
    """Refuse an existing ``out`` that is not a model tarball (a symlink, folder, FIFO, any other file).

    Raises:
        UserError: what ``out`` is. OSError: it cannot be examined.
    """
    try:
        mode = out.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there; a file in the way is the folder's problem
        return
    if stat.S_ISLNK(mode):  # the rename would replace the link, and its target keep the old version
        raise UserError(f"cannot write {out}: it is a symbolic link (pass the path it points to)")
    if stat.S_ISDIR(mode):
        raise UserError(f"cannot write {out}: it is a directory")
    if not stat.S_ISREG(mode):
        raise UserError(f"cannot write {out}: not a regular file (it would be replaced, not written to)")
    if not bundle.is_bundle(out):
        raise UserError(f"cannot write {out}: it exists and is not a model tarball (remove it first if it "
                        f"should be replaced)")


def _existing_folder(folder: Path) -> tuple[Path, list[str]]:
    """The nearest existing ancestor of ``folder`` (or ``folder`` itself) and the names still to create below it."""
    missing = []
    while not os.path.lexists(folder) and folder.parent != folder:
        missing.append(folder.name)
        folder = folder.parent
    return folder, missing


def _probe(folder: Path, length: int) -> None:
    """Create and remove a file with a name of ``length`` bytes in ``folder``.

    Raises:
        OSError: the name is too long there, or nothing can be written.
    """
    suffix = bundle.TEMP_SUFFIX
    prefix = ".probe.".ljust(length - _MKSTEMP_RANDOM - len(suffix), "x")
    with tempfile.NamedTemporaryFile(dir=folder, prefix=prefix, suffix=suffix):
        pass


def export_version(registry: Registry, mv: ModelVersion, out: Path) -> Path:
    """Download, check and pack one version; an existing ``out`` changes only if everything succeeded."""
    with tempfile.TemporaryDirectory(prefix="registry-export-") as tmp:
        model_dir, _ = fetch_model(registry, mv, Path(tmp))
        return write_tarball(registry, mv, model_dir, out)


# S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens, a letter or digit at each end.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
_MAX_KEY_BYTES = 1024


def parse_s3_uri(uri: str, filename: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); a key ending in ``/`` (or none) gets ``filename`` appended.

    Raises:
        UserError: not an s3:// URI with a bucket, or one the upload would not honour as written: a query or
            fragment (``#b``, ``?versionId=3`` were dropped silently), a port, an invalid bucket name, a key
            that is not UTF-8 (the upload failed on it after the export) or longer than S3 allows.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UserError(f"--s3-uri must look like s3://bucket/key, got {uri!r}")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not key or key.endswith("/"):
        key += filename
    if "?" in uri or "#" in uri:
        problem = "'?' and '#' would start a query or fragment, which the upload drops; the key may not hold them"
    elif ":" in bucket:
        problem = "a port is not part of a bucket name (set AWS_ENDPOINT_URL for another endpoint)"
    elif not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
        problem = (f"{bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens, "
                   f"a letter or digit at each end)")
    elif any("\ud800" <= c <= "\udfff" for c in key):  # bytes of argv that were not UTF-8 (surrogate-escaped)
        problem = f"the key {key!r} is not UTF-8 text (S3 keys are)"
    elif len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        problem = f"the key is longer than S3's {_MAX_KEY_BYTES} bytes"
    else:
        return bucket, key
    raise UserError(f"--s3-uri {uri!r}: {problem}")


def s3_client() -> Any:
    """boto3's S3 client from the default credential chain (``AWS_PROFILE``, OIDC role, ``AWS_ENDPOINT_URL``...),
    made before the export so that a setting boto3 refuses costs nothing.

    Raises:
        UserError: boto3 refuses a setting (``AWS_ENDPOINT_URL`` not a URL, ``AWS_MAX_ATTEMPTS`` not a number,
            an unknown profile), in one line.
    """
    import boto3  # only the --s3-uri path needs boto3; keep plain exports fast to start
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.client("s3")
    except (BotoCoreError, ValueError) as err:  # botocore raises a bare ValueError for a bad endpoint or number
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot set up the S3 client ({reason}); check the AWS_* settings") from None


def upload(client: Any, path: Path, bucket: str, key: str) -> None:
    """Upload ``path`` with an ``s3_client()``.

    Raises:
        UserError: credentials, bucket or network problem, in one line.
    """
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.upload_file(str(path), bucket, key)
    except (BotoCoreError, ClientError, S3UploadFailedError) as err:
        raise UserError(f"upload to s3://{bucket}/{key} failed ({str(err).splitlines()[0]}); "
                        f"{path} was written") from None


@click.command(help="Export a registered version (default: the production alias) as model.tar.gz.")
@params_option
@click.option("--version", "version", type=MODEL_VERSION, default=None,
              help="Version number to export (default: the version holding registry.alias).")
@click.option("--out", type=OutputFile(), default=None,
              help="Tarball path (default: export.path in params.yaml).")
@click.option("--s3-uri", default=None, help="Also upload the tarball to s3://bucket/key with boto3.")
def cli(params_file: Path, version: int | None, out: Path | None, s3_uri: str | None) -> None:
    tracking.quiet_mlflow()
    params = load_params(params_file)
    out = out or params.export.path
    target = parse_s3_uri(s3_uri, out.name) if s3_uri else None
    check_destination(out)
    client = s3_client() if target else None
    registry = open_registry(params)
    if version is not None:
        mv = registry.version(version)
    else:
        mv = registry.by_alias(params.registry.alias)
        if mv is None:
            raise UserError(f"model '{registry.name}' has no '{params.registry.alias}' alias yet; promote a "
                            f"version first (python -m registry.promote) or pass --version")
    path = export_version(registry, mv, out)
    now = registry.by_alias(params.registry.alias) if version is None else mv
    if now is not None and not same_version(now, mv):
        # A promotion moved production while this downloaded: its own export may have landed before ours did.
        click.echo(f"@{params.registry.alias} moved to version {now.version} during the export; exporting it")
        mv, path = now, export_version(registry, now, out)
    click.echo(f"exported {registry.name} version {mv.version} to {path} (sha256 {bundle.sha256(path)})")
    if target:
        upload(client, path, *target)
        click.echo(f"uploaded to s3://{target[0]}/{target[1]}")


def main(argv: list[str] | None = None) -> int:
    """Run the export command and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
