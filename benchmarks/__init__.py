"""Owns the performance benchmarks: our container and training against the reference design and peers.

``python -m benchmarks.run`` (``make bench``) measures everything in one run and writes
``benchmarks/results/latest.{json,md}``. The peers are baselines built here, never imported by the project:
``benchmarks/reference`` (the reference design, a faithful copy), ``benchmarks/noop.py`` (the no-op ceiling
on our own server stack) and ``mlflow models serve`` of the same registered version.
"""
