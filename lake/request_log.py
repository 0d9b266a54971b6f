"""The request log's segment format, shared by its writer (the router) and its reader (ingestion).

Segments are JSON-lines files named ``<writer_id>-<start_ns>-<seq>.jsonl.open`` while written, with
``writer_id`` = ``<host>-<pid>``. The writer (:class:`router.event_log.EventLog`) renames a segment
to ``.jsonl`` after its last write and fsync: a *closed* segment is never written again and holds
complete lines only, so ingestion may read it at any time. A segment left ``.open`` by a dead writer
is an *orphan*: :func:`seal_orphans` cuts its half-written last line, if any, and closes it.

Each line is one event: ``{"type": "prediction", ...}`` (built by :func:`prediction_event`) or
``{"type": "feedback", ...}`` (:func:`feedback_event`); :func:`parse_line` turns a line back into an
`ab_events` / `ab_feedback` row and rejects anything else.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


OPEN_SUFFIX = ".jsonl.open"  # a segment being written
CLOSED_SUFFIX = ".jsonl"  # a segment complete for good

# <host>-<pid>-<start_ns>-<seq>.jsonl.open; the host may itself contain dashes.
_OPEN_NAME = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d+)-(?P<seq>\d+)\.jsonl\.open$", re.ASCII)
_TAIL_CHUNK = 64 * 1024


def default_writer_id() -> str:
    """``<host>-<pid>``: what :func:`seal_orphans` parses to decide whether a writer is alive."""
    return f"{socket.gethostname()}-{os.getpid()}"


def fsync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def closed_name(path: Path) -> Path:
    return path.with_name(path.name[: -len(".open")])


def _last_newline_end(fd: int, size: int) -> int:
    """Offset just after the last ``\\n`` in the first ``size`` bytes of ``fd`` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (a zombie or another user's process counts)."""
    if pid <= 0:
        return True  # never signal a process group; treat as alive, i.e. leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def seal_orphans(folder: Path) -> list[Path]:
    """Close the ``.jsonl.open`` segments of dead writers of this host; returns the sealed paths.

    A writer is dead when its id is ``<this host>-<pid>`` and no process ``pid`` exists. Segments of
    other hosts, of live pids and with unparseable names are left alone, and so is a segment whose
    ``flock`` is still held (a live writer, e.g. in another pid namespace). A trailing partial line
    (bytes after the last newline: the writer died inside a write) is truncated and logged; then
    the file is fsynced and renamed to ``.jsonl``.
    """
    folder = Path(folder)
    host = socket.gethostname()
    sealed: list[Path] = []
    for path in sorted(folder.glob(f"*{OPEN_SUFFIX}")):
        match = _OPEN_NAME.match(path.name)
        if match is None:
            log.warning("event log: cannot tell the writer of %s from its name; left open", path.name)
            continue
        if match["host"] != host:
            log.debug("event log: %s belongs to host %s, not this one; left open", path.name, match["host"])
            continue
        if _pid_alive(int(match["pid"])):
            continue
        result = _seal_orphan(path)
        if result is not None:
            sealed.append(result)
    return sealed


def _seal_orphan(path: Path) -> Path | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # sealed by someone else meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("event log: %s is still locked by a live writer although its pid is gone; left open",
                        path.name)
            return None
        size = os.fstat(fd).st_size
        keep = _last_newline_end(fd, size)
        if keep < size:
            os.ftruncate(fd, keep)
            log.warning("event log: sealing orphan %s: truncated %d bytes of a half-written last line "
                        "(kept %d bytes)", path.name, size - keep, keep)
        os.fsync(fd)
        target = closed_name(path)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None  # a concurrent sealer won
        fsync_dir(path.parent)
        log.info("event log: sealed orphan segment %s (%d bytes)", target.name, keep)
        return target
    finally:
        os.close(fd)


def closed_segments(folder: Path) -> list[Path]:
    """The closed segments (``*.jsonl``) directly in ``folder``, sorted by name."""
    return sorted((p for p in Path(folder).glob(f"*{CLOSED_SUFFIX}") if p.is_file()), key=lambda p: p.name)


# -- lines: events and their rows -----------------------------------------------------------------

PREDICTION, FEEDBACK, SHADOW = "prediction", "feedback", "shadow"
# what a shadow line sets on its prediction's `ab_events` row
SHADOW_COLUMNS = ("shadow_version", "shadow_prediction", "shadow_probability", "shadow_model_ms")

# the fields of a prediction event that the router also returns to the caller, in answer order
ANSWER_FIELDS = ("request_id", "variant", "experiment_id", "model_version", "model_used", "fallback_reason",
                 "prediction", "probability", "latency_ms")


def now_iso() -> str:
    """The event time as the log writes it: ISO-8601 in UTC."""
    return datetime.now(UTC).isoformat()


def prediction_event(*, request_id: str, variant: str, experiment_id: str | None, model_version: int,
                     model_used: str, fallback_reason: str | None, prediction: Any, probability: float | None,
                     latency_ms: float, user_id: str | None, features: dict[str, Any], worker: str,
                     error: str | None = None, model_ms: float | None = None, shadow: dict[str, Any] | None = None,
                     time: str | None = None) -> dict[str, Any]:
    """The one builder of a prediction line (answered, rescued by the fallback, or failed).

    ``model_used`` is ``prod``/``staging``/``fallback``, or ``none`` for a row no model could answer
    (``error`` then says why; it counts in the variant's error rate). ``shadow`` is the other
    variant's answer to the same row: ``{"model_version", "prediction", "probability", "model_ms"}``.
    ``latency_ms`` is the whole request's time so far; ``model_ms`` the scoring call that answered
    the row (what the A/B latency guardrail compares, one model against the other).
    :func:`prediction_row` reads it back; :data:`ANSWER_FIELDS` are what the caller gets."""
    event = {"type": PREDICTION, "request_id": request_id, "variant": variant, "experiment_id": experiment_id,
             "model_version": model_version, "model_used": model_used, "fallback_reason": fallback_reason,
             "prediction": prediction, "probability": probability, "latency_ms": latency_ms,
             "model_ms": model_ms, "time": time or now_iso(), "user_id": user_id, "features": features,
             "worker": worker, "error": error}
    if shadow is not None:
        event["shadow"] = shadow
    return event


def answer_of(event: dict[str, Any]) -> dict[str, Any]:
    """What the router returns for a prediction event: its :data:`ANSWER_FIELDS`."""
    return {name: event[name] for name in ANSWER_FIELDS}


def shadow_event(*, request_id: str, model_version: int, prediction: Any, probability: float | None,
                 model_ms: float, worker: str, time: str | None = None) -> dict[str, Any]:
    """The one builder of a shadow line: the other variant's answer to the answered request
    ``request_id``, scored after the answer was sent (so it is a line of its own, written after
    its prediction's line by the same writer). :func:`shadow_row` reads it back."""
    return {"type": SHADOW, "request_id": request_id, "model_version": model_version, "prediction": prediction,
            "probability": probability, "model_ms": model_ms, "time": time or now_iso(), "worker": worker}


def feedback_event(*, feedback_id: str, request_id: str, label: Any, worker: str,
                   time: str | None = None) -> dict[str, Any]:
    """The one builder of a feedback line: the true ``label`` of the prediction ``request_id``."""
    return {"type": FEEDBACK, "feedback_id": feedback_id, "request_id": request_id, "time": time or now_iso(),
            "label": label, "worker": worker}



class BadLine(ValueError):
    """A line of a closed segment that is not a valid event."""


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
        "model_ms": _number(obj, "model_ms"),
        "shadow_version": None if shadow is None else shadow.get("model_version"),
        "shadow_prediction": None if shadow is None else scalar_columns(shadow["prediction"])[0],
        "shadow_probability": None if shadow is None else _number(shadow, "probability"),
        "shadow_model_ms": None if shadow is None else _number(shadow, "model_ms"),
        "worker": _text(obj, "worker"),
        "error": _text(obj, "error"),
    }


def shadow_row(obj: dict[str, Any]) -> dict[str, Any]:
    """The :data:`SHADOW_COLUMNS` of a prediction's `ab_events` row (with its ``request_id``) from
    a shadow event."""
    if "prediction" not in obj:
        raise BadLine("missing 'prediction'")
    version = obj.get("model_version")
    if isinstance(version, bool) or not isinstance(version, int) or not -(2**63) <= version < 2**63:
        raise BadLine(f"'model_version' is not a 64-bit integer: {version!r}")
    return {"request_id": _text(obj, "request_id", required=True), "shadow_version": version,
            "shadow_prediction": scalar_columns(obj["prediction"])[0],
            "shadow_probability": _number(obj, "probability"), "shadow_model_ms": _number(obj, "model_ms")}


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
    if kind == SHADOW:
        return SHADOW, shadow_row(obj)
    raise BadLine(f"unknown event type {kind!r}")


def parse_segment(name: str, data: bytes, events: list[dict[str, Any]], feedback: list[dict[str, Any]],
                  shadows: list[dict[str, Any]]) -> int:
    """Append the rows of one closed segment to ``events``/``feedback``/``shadows``; returns the
    skipped lines.

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
        if kind == SHADOW:  # sets columns of its prediction's row: no segment of its own
            shadows.append(row)
            continue
        row["segment"] = name
        (events if kind == PREDICTION else feedback).append(row)
    if tail:
        skipped += 1
        log.warning("event log: %s line %d skipped: %d bytes without a final newline in a closed segment",
                    name, len(lines) + 1, len(tail))
    return skipped
