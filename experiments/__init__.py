"""Training stage: synthetic sample data, schema inference, Optuna search of XGBoost, MLflow logging."""
