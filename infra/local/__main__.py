"""Owns ``python -m infra.local``: runs the stand-in CLI."""

from infra.local.cli import main

raise SystemExit(main())
