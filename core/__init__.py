"""The project's common ground: params.yaml, the CLI runner, the MLflow connection and the data version.

Every package (experiments, registry, infra, team, benchmarks, monitoring) imports from here; this package
imports none of them, and nothing of training (no Optuna, no XGBoost, no scikit-learn).
"""
