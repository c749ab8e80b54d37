"""Monitoring: read captured traffic, compare it with a model's reference profile, score it against late labels."""
