"""Owns the team stack's command line: ``python -m team up|down|env``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from core.cli import run_cli
from team import stack, state

DEFAULT_STATE = Path(__file__).resolve().parent / "run"
state_option = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STATE,
                            show_default=True, help="Where the stack keeps its state file and logs.")


def _exports(endpoints: stack.Endpoints) -> str:
    return (f"export MLFLOW_TRACKING_URI={shlex.quote(endpoints.tracking_uri)}\n"
            f"export OPTUNA_STORAGE={shlex.quote(endpoints.optuna_storage)}")


@click.group(help="A local team stack on loopback: PostgreSQL, an S3 endpoint (moto) and mlflow server.")
def cli() -> None:
    pass


@cli.command(help="Start the stack and print the environment clients need.")
@state_option
@click.option("--port", "mlflow_port", type=click.IntRange(0, 65535), default=0,
              help="Port of mlflow server (default: a free one).")
def up(state_dir: Path, mlflow_port: int) -> None:
    endpoints = stack.up(state_dir, mlflow_port=mlflow_port)
    click.echo(f"team stack up: mlflow server {endpoints.tracking_uri} (artifacts proxied to {endpoints.artifacts} "
               f"on {endpoints.s3_endpoint}); Optuna studies in PostgreSQL")
    click.echo(f"use it: eval \"$(python -m team env --state-dir {shlex.quote(str(state_dir))})\"")
    click.echo(_exports(endpoints))


@cli.command(help="Stop the stack and delete its database and artifacts.")
@state_option
@click.option("--force", is_flag=True, help="Even while a training or worker is connected to the study database.")
def down(state_dir: Path, force: bool) -> None:
    notes = stack.down(state_dir, force=force)
    for note in notes or ():
        click.echo(note, err=True)
    click.echo("no team stack was running" if notes is None else "team stack stopped")


@cli.command(help="Print `export` lines for MLFLOW_TRACKING_URI and OPTUNA_STORAGE (for eval).")
@state_option
def env(state_dir: Path) -> None:
    click.echo(_exports(state.endpoints(state_dir)))


def main(argv: list[str] | None = None) -> int:
    """Run the team command and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
