"""Owns checking, before ``up`` starts anything, that what the stack runs is installed: PostgreSQL's server
binaries, moto's server, and the Python packages ``up`` itself uses (psycopg, boto3, optuna)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from core.cli import UserError
from team import postgres

# moto's server comes with the `dev` dependency group (which `uv sync --no-dev` leaves out), psycopg with `train`.
PACKAGES = {"psycopg": "psycopg[binary]", "boto3": "boto3", "optuna": "optuna"}


def moto_server() -> Path:
    """The moto server launcher beside this interpreter (the virtual environment's ``bin``)."""
    return Path(sys.executable).with_name("moto_server")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refusing it; a module entry of None
        return False


def check() -> None:
    """Check that the stack's tools are installed.

    Raises:
        UserError: one of them is missing, named in one line with how to install it.
    """
    for name in ("initdb", "pg_ctl"):
        postgres.pg_binary(name)
    missing = [package for module, package in PACKAGES.items() if not _installed(module)]
    if not moto_server().is_file():
        missing.append("moto[server]")
    if missing:
        raise UserError(f"the team stack needs {', '.join(missing)}, not installed in {sys.prefix}; install them "
                        f"with `make setup` (the dev group)")
