"""``run.py -mode exporter``: serve the lake's series on ``exporter.host:exporter.port`` /metrics
until SIGTERM or SIGINT (prometheus-client's own HTTP server, one thread per scrape)."""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import CollectorRegistry, start_http_server

from config import PipelineConfig
from exporter.collector import LakeCollector
from lake.open import open_registry
from lake.paths import DataPaths

log = logging.getLogger(__name__)


def registry_for(cfg: PipelineConfig, paths: DataPaths) -> CollectorRegistry:
    """A Prometheus registry holding only the lake's collector (no process series: the exporter's
    own health is `lakehouse_lake_up`)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(LakeCollector(open_registry(cfg, paths)))
    return registry


def serve(cfg: PipelineConfig, paths: DataPaths, stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set (or a SIGTERM / SIGINT sets it)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    server, thread = start_http_server(cfg.exporter.port, addr=cfg.exporter.host, registry=registry_for(cfg, paths))
    log.info("lake exporter on http://%s:%d/metrics", cfg.exporter.host, cfg.exporter.port)
    print(f"lake exporter: http://{cfg.exporter.host}:{cfg.exporter.port}/metrics", flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
