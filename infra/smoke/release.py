"""Owns what a release reports about itself: the model identity inside an exported ``model.tar.gz``.

``python -m infra.smoke.release [TARBALL]`` (default: ``export.path`` in params.yaml) prints one markdown line naming the released model (registered
name, version, data hash, git commit), and with ``--job-summary`` the job summary's whole release section: that
line and the test metrics its training run recorded, as a markdown table (the workspace's metrics.json may be
another version's: the prod job never trains, and the gate may pick an older version); ``released_model`` is what
the smoke test uses to
know which ``X-Model-Version`` the deployed API must answer with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core.cli import UserError, run_cli
from core.params import load_params
from serving.layout import ModelError, bundle_metadata
from serving.layout import read_member as read_layout_member


def read_member(tarball: Path, name: str) -> Any:
    """Parse the JSON file ``name`` at the root of a bundle tarball (``serving.layout.read_member``).

    Raises:
        UserError: the file is missing, not a tar.gz, or has no such JSON member.
    """
    try:
        return read_layout_member(tarball, name)
    except ModelError as err:
        raise UserError(str(err)) from None


def released_model(tarball: Path) -> dict[str, Any]:
    """The ``metadata.json`` of an exported bundle: registered name, version, data hash, commit, run id.

    Raises:
        UserError: the file is missing, not a tar.gz, or holds no readable ``metadata.json`` with a version.
    """
    try:
        return bundle_metadata(tarball)
    except ModelError as err:
        raise UserError(str(err)) from None


def summary_line(metadata: dict[str, Any]) -> str:
    """One markdown line: which registered version was released and what it was trained on."""
    parts = [f"Released **{metadata.get('registered_name', 'model')}** version **{metadata['version']}**"]
    for key, label in (("data_hash", "data"), ("git_commit", "commit"), ("run_id", "MLflow run")):
        if metadata.get(key):
            parts.append(f"{label} `{metadata[key]}`")
    return ", ".join(parts)


def metrics_table(metadata: dict[str, Any]) -> str:
    """The version's test metrics (``metadata.json``'s ``metrics``) as a markdown table, or a line saying there are none."""
    metrics = metadata.get("metrics")
    numbers = sorted((k, v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)) \
        if isinstance(metrics, dict) else []
    if not numbers:
        return f"No test metrics in version {metadata['version']}'s metadata.json."
    return "\n".join(["| Metric | Value |", "|---|---|", *(f"| {name} | {value:.4f} |" for name, value in numbers)])


def job_summary(metadata: dict[str, Any]) -> str:
    """The release section of a job summary: the released version, then its own test metrics."""
    return "\n\n".join(["### Release", summary_line(metadata), "#### Test metrics of this version",
                        metrics_table(metadata)]) + "\n"


@click.command(help="Print the released model's identity (from the exported tarball) as one markdown line.")
@click.argument("tarball", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--job-summary", "section", is_flag=True,
              help="Print the job summary's release section instead: that line and the version's test metrics.")
def cli(tarball: Path | None, section: bool) -> None:
    metadata = released_model(tarball or load_params().export.path)
    click.echo(job_summary(metadata) if section else summary_line(metadata))


def main(argv: list[str] | None = None) -> int:
    """Run the release-line command and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
