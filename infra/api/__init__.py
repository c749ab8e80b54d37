"""Owns the predict API: the Lambda in ``runtime/`` and the construct that puts a REST API in front of it."""
