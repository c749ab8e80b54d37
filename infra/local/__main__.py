"""Owns ``python -m infra.local``: runs the stand-in CLI."""

from infra.local.cli import main

# Guarded: the stand-in's Lambda instances are spawned processes, which import the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
