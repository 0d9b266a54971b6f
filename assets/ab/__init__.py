"""The A/B test: the request log into Delta, the analysis and its statistics, the report, promotion."""
