"""The lake exporter: Prometheus series of what only the lake knows (drift, retraining requests,
A/B decisions and guardrail breaches, aliases), for the alert rules in ops/prometheus/."""
