"""Owns what a release reports about itself: the model identity inside an exported ``model.tar.gz``.

``python -m infra.smoke.release [TARBALL]`` prints one markdown line naming the released model (registered
name, version, data hash, git commit) for the job summary; ``released_model`` is what the smoke test uses to
know which ``X-Model-Version`` the deployed API must answer with.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import click

from experiments.cli import UserError, run_cli

DEFAULT_TARBALL = Path("dist/model.tar.gz")
# serving.bundle names these too; importing it would load XGBoost just to read two JSON files (a test pins them).
METADATA_FILE = "metadata.json"
SCHEMA_FILE = "schema.json"


def read_member(tarball: Path, name: str) -> Any:
    """Parse the JSON file ``name`` at the root of a bundle tarball (see serving/bundle.py ``pack``).

    Raises:
        UserError: the file is missing, not a tar.gz, or has no such JSON member.
    """
    if not tarball.is_file():
        raise UserError(f"{tarball}: no such model tarball (run make export first)")
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.removeprefix("./") == name), None)
            handle = tar.extractfile(member) if member is not None and member.isfile() else None
            if handle is None:
                raise UserError(f"{tarball}: no {name} at the archive root")
            return json.loads(handle.read().decode("utf-8"))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{tarball}: not a readable tar.gz ({err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{tarball}: {name} is not valid JSON ({err})") from None


def released_model(tarball: Path) -> dict[str, Any]:
    """The ``metadata.json`` of an exported bundle: registered name, version, data hash, commit, run id.

    Raises:
        UserError: the file is missing, not a tar.gz, or holds no readable ``metadata.json`` with a version.
    """
    metadata = read_member(tarball, METADATA_FILE)
    if not isinstance(metadata, dict) or not str(metadata.get("version") or "").strip():
        raise UserError(f"{tarball}: {METADATA_FILE} names no model version")
    return metadata


def summary_line(metadata: dict[str, Any]) -> str:
    """One markdown line: which registered version was released and what it was trained on."""
    parts = [f"Released **{metadata.get('registered_name', 'model')}** version **{metadata['version']}**"]
    for key, label in (("data_hash", "data"), ("git_commit", "commit"), ("run_id", "MLflow run")):
        if metadata.get(key):
            parts.append(f"{label} `{metadata[key]}`")
    return ", ".join(parts)


@click.command(help="Print the released model's identity (from the exported tarball) as one markdown line.")
@click.argument("tarball", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_TARBALL)
def cli(tarball: Path) -> None:
    click.echo(summary_line(released_model(tarball)))


def main(argv: list[str] | None = None) -> int:
    """Run the release-line command and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
