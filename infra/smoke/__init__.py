"""Owns the post-deploy checks: the smoke test of the deployed API and the release's job-summary lines."""
