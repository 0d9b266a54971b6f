"""Dagster sensors and schedules (thin wrappers over plain planning functions)."""
