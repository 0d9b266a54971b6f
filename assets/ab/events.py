"""Ingestion of the router's event log into the `ab_events` and `ab_feedback` Delta tables.

Exactly once, while the router keeps writing:

- only *closed* segments (``*.jsonl``) are read: a writer renames a segment to that name after its
  last write and fsync, so a closed segment never changes and holds complete lines only (segments
  of dead writers are closed first by :func:`lake.request_log.seal_orphans`, which cuts a
  half-written last line);
- the rows of a batch of segments are merged on their key (``request_id``, ``feedback_id``),
  insert-only, in one commit per table, and only then are those segments moved to the ingested
  folder: a crash between the commit and the move re-reads the segments next time, and the merge
  inserts nothing for them.

Run one ingestion at a time (merges of the same new keys by two concurrent runs may both insert).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from lake.delta import Lake
from lake.files import FileRoot
from lake.log_shipping import INBOX_PREFIX, INGESTED_PREFIX, shipped_segment_sizes
from lake.request_log import SHADOW_COLUMNS, closed_segments, parse_segment, seal_orphans
from lake.tables import AB_EVENTS, AB_EVENTS_SCHEMA, AB_FEEDBACK, AB_FEEDBACK_SCHEMA

log = logging.getLogger(__name__)




BATCH_SEGMENTS = 50


BATCH_BYTES = 64 * 2**20  # parsed JSON takes several times its size in memory


@dataclass
class EventIngestOutcome:
    """What one ingestion run did.

    ``events``/``feedback`` count the rows offered to the merge (unique within their batch);
    ``events_inserted``/``feedback_inserted`` the rows the commits actually added (a re-read
    segment offers rows again but inserts none).
    """

    segments: list[str] = field(default_factory=list)    # moved to the ingested folder, in order
    events: int = 0
    feedback: int = 0
    skipped_lines: int = 0                                # corrupt lines in closed segments
    sealed: list[str] = field(default_factory=list)       # orphans sealed by this run
    versions: dict[str, int] = field(default_factory=dict)  # table -> version after this run's last merge
    events_inserted: int = 0
    feedback_inserted: int = 0
    duplicates: int = 0                                   # repeated keys dropped within a batch
    shadows: int = 0                                      # shadow lines read (the other model's answers)
    shadows_applied: int = 0                              # ab_events rows they set (a re-read sets them again)


def _frame(rows: list[dict[str, Any]], schema: pa.Schema, key: str, ingested_at: pd.Timestamp
           ) -> tuple[pd.DataFrame, int]:
    """Rows as a frame in the schema's column order, the first row of each key kept."""
    frame = pd.DataFrame(rows, columns=[f.name for f in schema if f.name != "ingested_at"])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["ingested_at"] = ingested_at
    unique = frame.drop_duplicates(subset=[key], keep="first").reset_index(drop=True)
    return unique, len(frame) - len(unique)


@dataclass(frozen=True)
class SegmentRef:
    """One closed segment to ingest, wherever it lives: its name (the order and the log's
    identity), its size, how to read it and how to mark it ingested (move it out of the inbox)."""

    name: str
    size: int
    read: Callable[[], bytes]
    done: Callable[[], None]


def _local_refs(folder: Path, ingested_folder: Path) -> list[SegmentRef]:
    refs = []
    for path in closed_segments(folder):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        refs.append(SegmentRef(path.name, size, path.read_bytes,
                               lambda p=path: os.replace(p, ingested_folder / p.name)))
    return refs


def _shipped_refs(files: FileRoot, inbox: str, ingested: str) -> list[SegmentRef]:
    refs = []
    for key, size in shipped_segment_sizes(files, inbox=inbox).items():
        name = key.rsplit("/", 1)[-1]
        refs.append(SegmentRef(name, size, lambda k=key: files.read_bytes(k),
                               lambda k=key, n=name: files.move(k, f"{ingested}/{n}")))
    return refs


def _batches(segments: list[SegmentRef], max_segments: int, max_bytes: int) -> Iterator[list[SegmentRef]]:
    batch: list[SegmentRef] = []
    size = 0
    for ref in segments:
        if batch and (len(batch) >= max_segments or size + ref.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(ref)
        size += ref.size
    if batch:
        yield batch


def _ingest_batch(lake: Lake, batch: list[SegmentRef], outcome: EventIngestOutcome) -> None:
    events: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    shadows: list[dict[str, Any]] = []
    read: list[SegmentRef] = []
    for ref in batch:
        try:
            data = ref.read()
        except FileNotFoundError:
            log.info("event log: %s vanished (moved by a concurrent ingestion?)", ref.name)
            continue
        read.append(ref)
        outcome.skipped_lines += parse_segment(ref.name, data, events, feedback, shadows)
    ingested_at = pd.Timestamp.now(tz="UTC").floor("us")
    for rows, table, schema, key in ((events, AB_EVENTS, AB_EVENTS_SCHEMA, "request_id"),
                                     (feedback, AB_FEEDBACK, AB_FEEDBACK_SCHEMA, "feedback_id")):
        if not rows:
            continue
        frame, duplicates = _frame(rows, schema, key, ingested_at)
        if duplicates:
            log.warning("event log: %d repeated %s values dropped in one batch of %s", duplicates, key, table)
        version, inserted = lake.merge(table, frame, keys=[key], schema=schema, insert_only=True)
        outcome.versions[table] = version
        outcome.duplicates += duplicates
        if table == AB_EVENTS:
            outcome.events += len(frame)
            outcome.events_inserted += inserted
        else:
            outcome.feedback += len(frame)
            outcome.feedback_inserted += inserted
    if shadows:  # after the events: a shadow line follows its prediction's line (same writer)
        _apply_shadows(lake, shadows, outcome)
    # Only now, with every commit done: a crash before this point re-reads these segments, and
    # the insert-only merges (and the idempotent shadow update) make that a no-op.
    for ref in read:
        ref.done()
        outcome.segments.append(ref.name)


def _apply_shadows(lake: Lake, shadows: list[dict[str, Any]], outcome: EventIngestOutcome) -> None:
    """Set the shadow columns of the answered requests the shadow lines belong to (their
    predictions are in this batch or an earlier one: the same writer logged them first)."""
    fields = [AB_EVENTS_SCHEMA.field(c) for c in ("request_id", *SHADOW_COLUMNS)]
    frame = pd.DataFrame(shadows).drop_duplicates(subset=["request_id"], keep="last")
    data = pa.Table.from_pandas(frame[[f.name for f in fields]], schema=pa.schema(fields), preserve_index=False)
    if not lake.exists(AB_EVENTS):
        log.error("event log: %d shadow line(s) but no ab_events table: their predictions are missing",
                  len(frame))
        outcome.shadows += len(frame)
        return
    version, updated = lake.update_matched(AB_EVENTS, data, keys=["request_id"], columns=list(SHADOW_COLUMNS))
    outcome.versions[AB_EVENTS] = version
    outcome.shadows += len(frame)
    outcome.shadows_applied += updated
    if updated < len(frame):
        log.error("event log: %d of %d shadow line(s) match no answered request (their predictions were not "
                  "logged or not ingested)", len(frame) - updated, len(frame))


def ingest_event_log(lake: Lake, folder: Path, ingested_folder: Path, *, batch_segments: int = BATCH_SEGMENTS,
                     batch_bytes: int = BATCH_BYTES) -> EventIngestOutcome:
    """Seal dead writers' segments, then load every closed segment of ``folder`` exactly once.

    Segments are processed in name order, in batches of at most ``batch_segments`` segments and
    ``batch_bytes`` bytes: one insert-only merge per table per batch, then the batch's segments
    move to ``ingested_folder``. Open segments of live writers are not touched.
    """
    folder, ingested_folder = Path(folder), Path(ingested_folder)
    ingested_folder.mkdir(parents=True, exist_ok=True)
    outcome = EventIngestOutcome(sealed=[p.name for p in seal_orphans(folder)])
    return _ingest(lake, _local_refs(folder, ingested_folder), outcome, batch_segments, batch_bytes)


def ingest_shipped_event_log(lake: Lake, files: FileRoot, *, inbox: str = INBOX_PREFIX,
                             ingested: str = INGESTED_PREFIX, batch_segments: int = BATCH_SEGMENTS,
                             batch_bytes: int = BATCH_BYTES) -> EventIngestOutcome:
    """Load every segment the replicas shipped to ``inbox`` under the storage root exactly once
    (see :mod:`lake.log_shipping`), whichever replica wrote it; ingested segments move to
    ``ingested``. A segment found in both (a crash inside an object store's copy-then-delete
    move) is read again and inserts nothing."""
    return _ingest(lake, _shipped_refs(files, inbox, ingested), EventIngestOutcome(), batch_segments, batch_bytes)


def _ingest(lake: Lake, refs: list[SegmentRef], outcome: EventIngestOutcome, batch_segments: int,
            batch_bytes: int) -> EventIngestOutcome:
    for batch in _batches(refs, batch_segments, batch_bytes):
        _ingest_batch(lake, batch, outcome)
    log.info("event log: %d segments ingested (%d events, %d inserted; %d feedback, %d inserted; "
             "%d lines skipped; %d orphans sealed)", len(outcome.segments), outcome.events,
             outcome.events_inserted, outcome.feedback, outcome.feedback_inserted, outcome.skipped_lines,
             len(outcome.sealed))
    return outcome
