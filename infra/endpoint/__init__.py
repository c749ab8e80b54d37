"""Owns the SageMaker side: container image, model artefact, execution role, model, endpoint config, endpoint."""
