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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from lake.delta import Lake
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


def _batches(segments: list[Path], max_segments: int, max_bytes: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in segments:
        try:
            length = path.stat().st_size
        except FileNotFoundError:
            continue
        if batch and (len(batch) >= max_segments or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def _ingest_batch(lake: Lake, batch: list[Path], ingested_folder: Path, outcome: EventIngestOutcome) -> None:
    events: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    shadows: list[dict[str, Any]] = []
    read: list[Path] = []
    for path in batch:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            log.info("event log: %s vanished (moved by a concurrent ingestion?)", path.name)
            continue
        read.append(path)
        outcome.skipped_lines += parse_segment(path.name, data, events, feedback, shadows)
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
    for path in read:
        os.replace(path, ingested_folder / path.name)
        outcome.segments.append(path.name)


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
    for batch in _batches(closed_segments(folder), batch_segments, batch_bytes):
        _ingest_batch(lake, batch, ingested_folder, outcome)
    log.info("event log: %d segments ingested (%d events, %d inserted; %d feedback, %d inserted; "
             "%d lines skipped; %d orphans sealed)", len(outcome.segments), outcome.events,
             outcome.events_inserted, outcome.feedback, outcome.feedback_inserted, outcome.skipped_lines,
             len(outcome.sealed))
    return outcome
