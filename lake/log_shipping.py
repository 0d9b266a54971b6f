"""Shipping the router's closed request-log segments from a replica's local spool to the storage root.

Each router replica keeps writing its segments to a local folder (one ``os.write`` per request
before answering, grouped fsync: see :mod:`router.event_log`); only *closed* segments ship. A
closed segment never changes and its name is unique (``<host>-<pid>-<start ns>-<seq>.jsonl``), so
shipping is a put of a whole file to ``<inbox>/<name>`` followed by deleting the local copy:

- a crash before the put leaves the local file, shipped at the next sweep;
- a crash between the put and the delete ships the same bytes under the same key again, which is
  harmless: ingestion's insert-only merge on ``request_id`` / ``feedback_id`` inserts nothing for
  rows it already holds, whether the first copy is still in the inbox or already ingested.

A replica that died leaves ``.jsonl.open`` segments; its next start on the same host seals them
(:func:`lake.request_log.seal_orphans`) and ships them with the rest (:func:`seal_and_ship`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lake.files import FileRoot
from lake.request_log import CLOSED_SUFFIX, closed_segments, seal_orphans

log = logging.getLogger(__name__)

INBOX_PREFIX = "events/inbox"        # shipped, not yet ingested segments under the storage root
INGESTED_PREFIX = "events/ingested"  # segments whose rows are in ab_events / ab_feedback


@dataclass
class ShipOutcome:
    """What one sweep of a spool did."""

    shipped: list[str] = field(default_factory=list)  # segment names put to the inbox, in order
    sealed: list[str] = field(default_factory=list)   # orphans of dead writers sealed first
    bytes: int = 0


def ship_segments(spool: Path, files: FileRoot, *, inbox: str = INBOX_PREFIX) -> ShipOutcome:
    """Put every closed segment of ``spool`` to ``inbox/<name>`` under ``files``, then delete it
    locally. Open segments (live writers) are left alone. An error stops the sweep with the
    failed segment and those after it still local (the next sweep retries them)."""
    outcome = ShipOutcome()
    for path in closed_segments(spool):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # shipped by a concurrent sweep (another worker of this replica)
            continue
        try:
            files.put_file(path, f"{inbox}/{path.name}")
        except FileNotFoundError:
            log.info("event log: %s vanished while shipping (a concurrent sweep took it)", path.name)
            continue
        path.unlink(missing_ok=True)
        outcome.shipped.append(path.name)
        outcome.bytes += size
    if outcome.shipped:
        log.info("event log: shipped %d segment(s), %d bytes, from %s to %s/%s", len(outcome.shipped),
                 outcome.bytes, spool, files.uri, inbox)
    return outcome


def seal_and_ship(spool: Path, files: FileRoot, *, inbox: str = INBOX_PREFIX) -> ShipOutcome:
    """Seal the segments of this host's dead writers, then ship every closed segment: what a
    replica runs at start (a predecessor killed with -9 left open segments) and on a timer."""
    sealed = [p.name for p in seal_orphans(Path(spool))]
    outcome = ship_segments(Path(spool), files, inbox=inbox)
    outcome.sealed = sealed
    return outcome


def shipped_segment_sizes(files: FileRoot, *, inbox: str = INBOX_PREFIX) -> dict[str, int]:
    """The keys of the closed segments waiting in ``inbox`` with their sizes, in name order, from
    one listing (temporary files of an interrupted local put start with a dot: not segments)."""
    sizes = files.list_sizes(inbox)
    names = {k: k.rsplit("/", 1)[-1] for k in sizes}
    keys = sorted((k for k, n in names.items() if n.endswith(CLOSED_SUFFIX) and not n.startswith(".")),
                  key=names.__getitem__)
    return {k: sizes[k] for k in keys}


def shipped_segments(files: FileRoot, *, inbox: str = INBOX_PREFIX) -> list[str]:
    """The keys of the closed segments waiting in ``inbox``, sorted by name."""
    return list(shipped_segment_sizes(files, inbox=inbox))
