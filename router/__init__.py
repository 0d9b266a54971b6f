"""The Flask A/B router: validated requests, sticky traffic split, durable request log (no Dagster)."""
