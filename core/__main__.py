"""``python -m core``: where this project's MLflow runs are and how to browse them (``make run`` ends with it)."""

from __future__ import annotations

import click

from core import tracking
from core.cli import run_cli
from core.params import load_params, params_option


@click.command(help="Print how to browse the MLflow runs of params.yaml's tracking store (or MLFLOW_TRACKING_URI).")
@params_option
def cli(params_file) -> None:  # noqa: ANN001
    click.echo(tracking.browse_hint(tracking.tracking_uri(load_params(params_file).mlflow.tracking_uri)))


def main(argv: list[str] | None = None) -> int:
    """Print the browse hint and return the exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
