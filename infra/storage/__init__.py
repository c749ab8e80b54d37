"""Owns the bucket that holds the DVC remote and MLflow artifacts."""
