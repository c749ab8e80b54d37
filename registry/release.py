"""Owns which version a release ships: the promotion gate run as a dry run, before anything is deployed.

Usage: ``python -m registry.release [--version N] [--force] --out FILE``. The candidate is ``--version`` or,
without it, the version trained on the current data with the lowest test RMSE (``registry.candidate``'s rule).
It is scored against production exactly as ``registry.promote`` would, nothing in the registry changes, and
on acceptance its number is written to ``FILE`` (one line) for the release's later steps: export, deploy,
smoke test, and only then ``registry.promote --version N`` moves the alias. A refusal is one ``error:`` line
and exit 1, and ``FILE`` is removed, so no later step can ship a refused version by mistake. Only a file this
command could have written (one version number) is ever removed or replaced: ``--out mlflow.db`` is refused
before anything runs, never deleted.

``--force`` skips the gate and needs ``--version``: a forced release names the version someone vouches for.
``--refuse-older`` refuses a candidate numbered below production's version: two release runs waiting for the
prod approval can be approved in either order, and the one approved last must not put an older model back.
A rollback names its version and leaves the flag off (the workflow sets it only when no version was asked for).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import click
from mlflow.entities.model_registry import ModelVersion

from core import tracking
from core.cli import MODEL_VERSION, OutputFile, UserError, run_cli
from core.files import check_writable_file, replace_atomically
from core.lineage import dvc_data_hash
from core.params import load_params, params_option
from registry import promote
from registry.candidate import pick_candidate
from registry.versions import open_registry


def gate(params_file: Path, version: int | None, *, force: bool, refuse_older: bool = False) -> str:
    """Run the gate as a dry run for ``version`` (or the best version for the data); return the candidate's number.

    Raises:
        UserError: no candidate, the gate refuses it, ``force`` without ``version``, or with ``refuse_older`` a
            candidate older than production's version.
    """
    if force and version is None:
        raise UserError("--force needs --version: a forced release names the version it vouches for")
    params = load_params(params_file)
    registry = open_registry(params)
    candidate = pick_candidate(registry, version, dvc_data_hash(params.data.path))
    if refuse_older:
        check_not_older(int(candidate.version), registry.by_alias(params.registry.alias), params.registry.alias)
    promote.promote(params, registry, int(candidate.version), force=force, dry_run=True, reason=None,
                    export=False)
    return str(candidate.version)


def check_not_older(candidate: int, current: ModelVersion | None, alias: str) -> None:
    """Refuse ``candidate`` when ``current`` (the version holding ``alias``) is newer: registry numbers only grow.

    Raises:
        UserError: ``candidate`` is numbered below ``current``.
    """
    if current is not None and candidate < int(current.version):
        raise UserError(f"version {candidate} is older than @{alias} version {current.version}: a release approved "
                        f"after a newer one never puts an older model back (to roll back, release version "
                        f"{candidate} by its number)")


# What this command writes: a version number and a newline (a few bytes; more is someone else's file).
_CANDIDATE = re.compile(rb"[1-9][0-9]{0,18}\n?")


def holds_candidate(out: Path) -> bool:
    """Whether ``out`` is a candidate file an earlier run wrote (False: there is nothing at ``out``).

    Raises:
        UserError: something else is at ``out`` (the tracking store, params.yaml, a symlink, a folder), or a
            file where a folder of the path should be.
    """
    try:
        if not stat.S_ISREG(out.lstat().st_mode):
            raise UserError(f"cannot write {out}: not a regular file (a symlink, folder or device is never replaced)")
        found = _CANDIDATE.fullmatch(out.read_bytes()[:32]) if out.stat().st_size <= 32 else None
    except FileNotFoundError:
        return False
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    if found is None:
        raise UserError(f"cannot write {out}: it exists and is not a release candidate file (one version number); "
                        f"remove it first if it should be replaced")
    return True


@click.command(help="Pick the release candidate and run the quality gate on it without changing the registry.")
@params_option
@click.option("--version", "version", type=MODEL_VERSION, default=None,
              help="The version to release (default: the best version trained on the current data).")
@click.option("--force", is_flag=True, help="Skip the gate (needs --version).")
@click.option("--refuse-older", is_flag=True,
              help="Refuse a candidate numbered below production's version (a release approved after a newer one).")
@click.option("--out", type=OutputFile(), required=True,
              help="Where to write the accepted candidate's version number.")
def cli(params_file: Path, version: int | None, force: bool, refuse_older: bool, out: Path) -> None:
    tracking.quiet_mlflow()
    try:
        if holds_candidate(out):
            out.unlink()  # a stale number must never outlive a refusal
        check_writable_file(out)  # before the gate: a name too long, a read-only folder fail with nothing done
    except OSError as err:  # no permission on the folder
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    candidate = gate(params_file, version, force=force, refuse_older=refuse_older)
    try:
        replace_atomically(out, f"{candidate}\n".encode())
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    click.echo(f"release candidate: version {candidate} (written to {out})")


def main(argv: list[str] | None = None) -> int:
    """Run the release gate and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
