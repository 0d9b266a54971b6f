"""Each router worker ships its replica's closed request-log segments to the shared storage root.

With ``storage.root_uri`` set, a replica's segments are written to its local spool as on one
machine (one write before answering, grouped fsync) and a background thread in every worker runs
:func:`lake.log_shipping.seal_and_ship` at start and every ``router.event_log.ship_every_seconds``:
the segments of dead writers of this host (a worker killed with -9, a replica that crashed) are
sealed, then every closed segment is put to ``<root>/events/inbox`` and deleted locally. The
workers of one replica sweep the same spool; a segment taken by one is skipped by the other, and
the rare double put of the same bytes inserts nothing at ingestion. A failed sweep leaves the
segments local, counts ``router_event_log_ship_failures_total`` and is retried at the next tick.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from lake.files import FileRoot
from lake.log_shipping import ShipOutcome, seal_and_ship
from router import metrics

log = logging.getLogger(__name__)


class LogShipper:
    """The shipping thread of one worker."""

    def __init__(self, spool: Path, files: FileRoot, interval_seconds: float) -> None:
        self.spool = Path(spool)
        self.files = files
        self.interval_seconds = interval_seconds
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sweeping = threading.Lock()

    def sweep(self) -> ShipOutcome | None:
        """One sweep now; None when it failed (logged with context, counted, retried later)."""
        with self._sweeping:
            try:
                outcome = seal_and_ship(self.spool, self.files)
            except Exception as exc:  # the segments stay in the spool; the next tick retries them
                metrics.SHIP_FAILURES.inc()
                self.last_error = f"shipping request-log segments to the storage root failed " \
                                  f"({type(exc).__name__}); they stay in the local spool and are retried"
                log.exception("event log: shipping %s to %s failed; retried in %.0f s", self.spool, self.files.uri,
                              self.interval_seconds)
                return None
        self.last_error = None
        metrics.SHIPPED_SEGMENTS.inc(len(outcome.shipped))
        metrics.SHIPPED_BYTES.inc(outcome.bytes)
        return outcome

    def start(self) -> None:
        """Sweep at once (a predecessor may have left segments), then every interval, in a daemon
        thread (a greenlet under gevent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="event-log-shipper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer; a sweep in progress finishes first."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        self.sweep()
        while not self._stop.wait(self.interval_seconds):
            self.sweep()
