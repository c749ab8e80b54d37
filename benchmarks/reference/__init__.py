"""Owns the reference design baseline: a deliberately faithful copy of the reference project, NOT our code.

This package reproduces what the reference write-up did (see /work/shared/REFERENCE.md), so the benchmarks
can measure our design against it on the same machine and data. Its choices are kept on purpose, including
the ones our project rejects: label-encoded categoricals with one sklearn ``LabelEncoder`` per column,
an Optuna search of sklearn's ``XGBRegressor`` without pruning, ``pickle`` files for the model and the
encoders, and a Flask app that builds a pandas DataFrame per request. Pickles are allowed here and only here;
nothing outside ``benchmarks/`` may import this package.
"""
