"""Owns ``python -m infra.smoke``: runs the smoke test CLI (see infra/smoke/cli.py)."""

from infra.smoke.cli import main

raise SystemExit(main())
