"""Scoring with a registered model: request/file rows -> build_features -> model (no Dagster)."""
