"""A Prometheus collector over :func:`lake.status.lake_status`: each scrape reads the lake once.

Counters are counts of rows of an append-only table (the looks of the A/B analysis in
``ab_decisions``), so ``increase()`` over them is the number of new events whichever exporter
process (or restart) served them. Drift verdicts can be overwritten by a re-check, so their counts
are gauges, and the time of the newest retraining request carries the event. A lake that cannot be read gives
``lakehouse_lake_up 0`` and the error in the log, not stale numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lake.registry import ModelRegistry
from lake.status import LakeStatus, lake_status

log = logging.getLogger(__name__)


class LakeCollector(Collector):
    """The lake's series, read at scrape time from ``registry``'s lake."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            status = lake_status(self.registry)
        except Exception:  # a scrape must answer; the failure is the `up 0` series and the log line
            log.exception("lake exporter: reading the lake at %s failed", self.registry.lake.root_uri)
            status = None
        up = GaugeMetricFamily("lakehouse_lake_up", "1 when the last scrape read the lake, 0 when it failed.")
        up.add_metric([], 0.0 if status is None else 1.0)
        yield up
        seconds = GaugeMetricFamily("lakehouse_lake_read_seconds", "Time the last scrape spent reading the lake.")
        seconds.add_metric([], time.perf_counter() - started)
        yield seconds
        if status is not None:
            yield from series(status)


def series(status: LakeStatus) -> Iterator[Metric]:
    """The metric families of one status read."""
    # drift's batch verdicts are state, not events: a re-check against a new prod overwrites a
    # batch's verdict, so these counts may fall and are gauges (a falling counter reads as a reset
    # and increase() would invent a rise). The alert watches the newest request's time instead.
    for name, help_text, value in (
            ("lakehouse_drift_batches", "Batches with a drift verdict (now).", status.drift_batches),
            ("lakehouse_drift_batches_drifted", "Batches whose drift verdict is drifted (now).",
             status.drift_batches_drifted),
            ("lakehouse_drift_retrain_requested_batches", "Batches whose verdict requested a retraining run "
             "(drift persistent over drift.persistence_batches), now.", status.retrain_requests)):
        gauge = GaugeMetricFamily(name, help_text)
        gauge.add_metric([], value)
        yield gauge
    # looks of the A/B analysis are rows of the append-only ab_decisions table: true counters
    blocked = CounterMetricFamily("lakehouse_ab_decisions_blocked", "Looks of the A/B analysis blocked by SRM "
                                  "or uneven labels.")
    blocked.add_metric([], status.decisions_blocked)
    yield blocked
    decisions = CounterMetricFamily("lakehouse_ab_decisions", "Looks of the A/B analysis by their decision.",
                                    labels=["action"])
    for action, n in status.decisions.items():
        decisions.add_metric([action], n)
    yield decisions
    breaches = CounterMetricFamily("lakehouse_ab_guardrail_breaches", "Looks of the A/B analysis that rolled "
                                   "B back for a guardrail (error rate, latency p95, fallback share).",
                                   labels=["guardrail"])
    for guardrail, n in status.guardrail_breaches.items():
        breaches.add_metric([guardrail], n)
    yield breaches
    last = GaugeMetricFamily("lakehouse_drift_last_retrain_request_timestamp_seconds",
                             "Unix time of the newest drift verdict that requested retraining (absent before one).")
    if status.last_retrain_request_at is not None:
        last.add_metric([], status.last_retrain_request_at)
    yield last
    aliases = GaugeMetricFamily("lakehouse_model_alias_version", "Model version each alias points to.",
                                labels=["alias"])
    for alias, version in sorted(status.aliases.items()):
        aliases.add_metric([alias], version)
    yield aliases
    running = GaugeMetricFamily("lakehouse_ab_experiment_split_b", "Share of users the running experiment sends "
                                "to B (absent when none runs).", labels=["experiment_id", "prod_version",
                                                                         "staging_version"])
    if status.running is not None:
        r = status.running
        running.add_metric([r.experiment_id, str(r.prod_version), str(r.staging_version)], r.ab_split_b)
    yield running
