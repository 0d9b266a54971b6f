"""Prometheus metrics of the router (prometheus-client).

Under gunicorn each worker is a process: with ``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn
config sets it before the workers start), every process writes its samples to files there and
``/metrics`` aggregates them with ``MultiProcessCollector``; without it (tests, Flask's dev
server) the default in-process registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("router_requests_total", "Answered requests", ["endpoint", "variant", "status"])
LATENCY = Histogram("router_request_latency_seconds", "Time to answer, logging included", ["endpoint", "variant"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
PREDICTIONS = Histogram("router_prediction_value", "Regression: the predicted value. Two classes: the "
                        "probability of the positive class (the model's second class, as in /predict's "
                        "probability), whichever class was predicted. More classes: the probability of the "
                        "predicted class", ["variant", "model_used"],
                        buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 10, 100, 1000))
PREDICTED_CLASS = Counter("router_predicted_class_total", "Predicted classes", ["variant", "label"])
MODEL_ERRORS = Counter("router_model_errors_total", "Rows on which a model raised (answered by the fallback, "
                       "or failed with 500); model_used=shadow for shadow scoring", ["variant", "model_used"])
FALLBACKS = Counter("router_fallback_total", "Rows answered by the fallback model", ["variant"])
LOG_FAILURES = Counter("router_event_log_failures_total", "Events that could not be written: the request "
                       "was refused (kind=prediction/feedback/error), or, for kind=shadow, the other model's "
                       "answer scored after the response is lost and the request stays unpaired",
                       ["kind"])
SHIPPED_SEGMENTS = Counter("router_event_log_shipped_segments_total", "Closed request-log segments shipped to "
                           "the storage root's events/inbox (storage.root_uri set)")
SHIPPED_BYTES = Counter("router_event_log_shipped_bytes_total", "Bytes of the shipped request-log segments")
SHIP_FAILURES = Counter("router_event_log_ship_failures_total", "Sweeps that failed to ship closed segments "
                        "to the storage root (they stay in the local spool and are retried)")
SWAPS = Counter("router_model_swaps_total", "Model / split state swaps in this worker")
DISABLED = Gauge("router_model_disabled", "1 while an alias is out of service because its model cannot be "
                 "loaded (the reason: /health?ready=1)", ["alias"], multiprocess_mode="liveall")
SERVED_VERSION = Gauge("router_served_version", "Model version served per alias", ["alias"],
                       multiprocess_mode="liveall")


VARIANTS = ("A", "B")
LOG_KINDS = ("prediction", "feedback", "error", "shadow")


def initialise() -> None:
    """Give the counters an alert or a dashboard divides by their series at 0 from the start, so
    the first fallback or failed write is an increase Prometheus sees (an absent series is not 0)."""
    for variant in VARIANTS:
        FALLBACKS.labels(variant)
        MODEL_ERRORS.labels(variant, "shadow")
    MODEL_ERRORS.labels("A", "prod")
    MODEL_ERRORS.labels("B", "staging")
    for kind in LOG_KINDS:
        LOG_FAILURES.labels(kind)
    SHIPPED_SEGMENTS.inc(0)
    SHIP_FAILURES.inc(0)


def set_disabled(disabled: dict[str, str]) -> None:
    """Mark the aliases of ``disabled`` out of service and every other alias in service."""
    for alias in ("prod", "staging", "fallback", "previous"):
        DISABLED.labels(alias).set(1 if alias in disabled else 0)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type, aggregated over processes when configured."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
