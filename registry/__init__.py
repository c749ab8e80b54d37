"""Owns the release path of a registered model: promotion through a quality gate, rollback and export."""
