"""Owns CI's way into AWS: GitHub's OIDC provider and the deploy role only this repository's main can assume."""
