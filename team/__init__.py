"""Owns the local team stack: PostgreSQL, an S3-compatible store and an `mlflow server` on loopback."""
