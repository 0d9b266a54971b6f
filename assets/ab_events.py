"""Ingestion of the router's event log into the `ab_events` and `ab_feedback` Delta tables.

Exactly once, while the router keeps writing:

- only *closed* segments (``*.jsonl``) are read: a writer renames a segment to that name after its
  last write and fsync, so a closed segment never changes and holds complete lines only (segments
  of dead writers are closed first by :func:`router.event_log.seal_orphans`, which cuts a
  half-written last line);
- the rows of a batch of segments are merged on their key (``request_id``, ``feedback_id``),
  insert-only, in one commit per table, and only then are those segments moved to the ingested
  folder: a crash between the commit and the move re-reads the segments next time, and the merge
  inserts nothing for them.

Run one ingestion at a time (merges of the same new keys by two concurrent runs may both insert).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from lake.delta import Lake
from lake.tables import AB_EVENTS, AB_EVENTS_SCHEMA, AB_FEEDBACK, AB_FEEDBACK_SCHEMA
from router.event_log import closed_segments, seal_orphans

log = logging.getLogger(__name__)

PREDICTION, FEEDBACK = "prediction", "feedback"
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


class BadLine(ValueError):
    """A line of a closed segment that is not a valid event."""


# -- parsing ---------------------------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise BadLine(f"non-finite number {name}")


def _text(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise BadLine(f"missing {key!r}")
        return None if value is None else ""
    if isinstance(value, dict | list):
        raise BadLine(f"{key!r} is not a scalar")
    return value if isinstance(value, str) else json.dumps(value)


def _number(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadLine(f"{key!r} is not a number: {value!r}")
    return float(value)


def _time(obj: dict[str, Any]) -> datetime:
    value = obj.get("time")
    if not isinstance(value, str):
        raise BadLine(f"'time' is not an ISO-8601 string: {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadLine(f"'time' is not ISO-8601: {value!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def scalar_columns(value: Any) -> tuple[str, float | None]:
    """A JSON value as text, and as a number when it is one (booleans -> 1.0/0.0, else null)."""
    text = json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return text, float(value)
    if isinstance(value, int | float):
        try:
            return text, float(value)
        except OverflowError:
            return text, None
    return text, None


def prediction_row(obj: dict[str, Any]) -> dict[str, Any]:
    """An `ab_events` row (without `segment`, `ingested_at`) from a prediction event."""
    if "prediction" not in obj:
        raise BadLine("missing 'prediction'")
    version = obj.get("model_version")
    if isinstance(version, bool) or not isinstance(version, int) or not -(2**63) <= version < 2**63:
        raise BadLine(f"'model_version' is not a 64-bit integer: {version!r}")
    prediction, prediction_value = scalar_columns(obj["prediction"])
    features = obj.get("features")
    shadow = obj.get("shadow")
    if shadow is not None and (not isinstance(shadow, dict) or "prediction" not in shadow):
        raise BadLine(f"'shadow' is not an object with a prediction: {shadow!r}")
    return {
        "request_id": _text(obj, "request_id", required=True),
        "event_time": _time(obj),
        "user_id": _text(obj, "user_id"),
        "variant": _text(obj, "variant", required=True),
        "experiment_id": _text(obj, "experiment_id"),
        "model_version": version,
        "model_used": _text(obj, "model_used", required=True),
        "fallback_reason": _text(obj, "fallback_reason"),
        "features": None if features is None else json.dumps(features, sort_keys=True),
        "prediction": prediction,
        "prediction_value": prediction_value,
        "probability": _number(obj, "probability"),
        "latency_ms": _number(obj, "latency_ms"),
        "shadow_version": None if shadow is None else shadow.get("model_version"),
        "shadow_prediction": None if shadow is None else scalar_columns(shadow["prediction"])[0],
        "shadow_probability": None if shadow is None else _number(shadow, "probability"),
        "worker": _text(obj, "worker"),
        "error": _text(obj, "error"),
    }


def feedback_row(obj: dict[str, Any]) -> dict[str, Any]:
    """An `ab_feedback` row (without `segment`, `ingested_at`) from a feedback event."""
    if "label" not in obj:
        raise BadLine("missing 'label'")
    label, label_value = scalar_columns(obj["label"])
    return {
        "feedback_id": _text(obj, "feedback_id", required=True),
        "request_id": _text(obj, "request_id", required=True),
        "event_time": _time(obj),
        "label": label,
        "label_value": label_value,
        "worker": _text(obj, "worker"),
    }


def parse_line(raw: bytes) -> tuple[str, dict[str, Any]]:
    """``(type, row)`` of one line; raises ValueError (BadLine, JSON or UTF-8 errors) when invalid."""
    obj = json.loads(raw, parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    kind = obj.get("type")
    if kind == PREDICTION:
        return PREDICTION, prediction_row(obj)
    if kind == FEEDBACK:
        return FEEDBACK, feedback_row(obj)
    raise BadLine(f"unknown event type {kind!r}")


def parse_segment(name: str, data: bytes, events: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> int:
    """Append the rows of one closed segment to ``events``/``feedback``; returns the skipped lines.

    A closed segment holds complete lines only, so an invalid line is corruption: logged at
    WARNING with the segment and line number, counted, and skipped (the other lines still land).
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty for a well-formed segment
    skipped = 0
    for number, raw in enumerate(lines, start=1):
        try:
            kind, row = parse_line(raw)
        except (ValueError, TypeError, RecursionError) as exc:
            skipped += 1
            log.warning("event log: %s line %d skipped, not a valid event: %s", name, number, exc)
            continue
        row["segment"] = name
        (events if kind == PREDICTION else feedback).append(row)
    if tail:
        skipped += 1
        log.warning("event log: %s line %d skipped: %d bytes without a final newline in a closed segment",
                    name, len(lines) + 1, len(tail))
    return skipped


# -- writing ---------------------------------------------------------------------------------------

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
    read: list[Path] = []
    for path in batch:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            log.info("event log: %s vanished (moved by a concurrent ingestion?)", path.name)
            continue
        read.append(path)
        outcome.skipped_lines += parse_segment(path.name, data, events, feedback)
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
    # Only now, with both commits done: a crash before this point re-reads these segments, and
    # the insert-only merges make that a no-op.
    for path in read:
        os.replace(path, ingested_folder / path.name)
        outcome.segments.append(path.name)


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
