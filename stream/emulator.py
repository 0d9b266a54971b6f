"""Stream emulator: order the source by time, cut it into batches, drop them into the inbox.

A batch file is written under a temporary dot-name and renamed into place, so the inbox sensor
(or any upstream watcher) never sees a half-written file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from config.schema import PipelineConfig, StreamConfig
from lake.batch_files import INBOX
from lake.open import open_batch_files
from lake.paths import DataPaths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSlice:
    """One planned batch: its id and the positional rows of the time-ordered source."""

    index: int
    batch_id: str
    start: int
    stop: int
    time_min: pd.Timestamp
    time_max: pd.Timestamp


def batch_id_for(index: int) -> str:
    """Zero-padded so that lexicographic order is stream order."""
    return f"batch_{index:05d}"


def order_by_time(df: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Rows in event-time order (stable, so ties keep the source order); untimed rows dropped."""
    times = pd.to_datetime(df[time_column], utc=True, errors="coerce")
    untimed = int(times.isna().sum())
    if untimed:
        log.warning("stream: %d row(s) without a parseable %r cannot be ordered and are left out",
                    untimed, time_column)
    ordered = df.assign(_t=times).loc[times.notna()].sort_values("_t", kind="stable")
    return ordered.reset_index(drop=True)


def plan_batches(ordered: pd.DataFrame, stream: StreamConfig) -> list[BatchSlice]:
    """Cut a time-ordered frame (with column ``_t``) into consecutive batches."""
    n = len(ordered)
    if n == 0:
        return []
    if stream.batch_by == "rows":
        bounds = [(s, min(s + stream.batch_rows, n)) for s in range(0, n, stream.batch_rows)]
    else:
        bins = window_index(ordered["_t"], stream.batch_window)
        change = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]]).tolist()
        bounds = list(zip(change, [*change[1:], n], strict=True))
    if stream.max_batches is not None:
        bounds = bounds[: stream.max_batches]
    return [BatchSlice(i + 1, batch_id_for(i + 1), s, e, ordered["_t"].iloc[s], ordered["_t"].iloc[e - 1])
            for i, (s, e) in enumerate(bounds)]


def window_index(times: pd.Series, window: str) -> np.ndarray:
    """Index of the time window each (sorted, tz-aware) timestamp falls in.

    Windows are anchored like pandas anchors the offset (``1MS`` -> calendar months, ``7D`` ->
    7-day windows from the first day's midnight), so batch boundaries are human-readable.
    """
    offset = to_offset(window)
    first = times.iloc[0].normalize()
    anchor = offset.rollback(first) if not isinstance(offset, Tick) else first
    edges = pd.date_range(anchor, times.iloc[-1] + offset, freq=offset)
    return np.searchsorted(edges.asi8, times.to_numpy(dtype="datetime64[ns]").astype("int64"), side="right") - 1


@dataclass(frozen=True)
class EmittedBatch:
    batch_id: str
    name: str          # the file name in the inbox
    location: str      # where it went: <inbox>/<name>, a path or a URI
    rows: int
    time_min: pd.Timestamp
    time_max: pd.Timestamp


class StreamEmulator:
    """Emits the configured source as a sequence of batch files, remembering its position."""

    def __init__(self, cfg: PipelineConfig, paths: DataPaths, source: pd.DataFrame | None = None) -> None:
        self.cfg = cfg
        self.paths = paths
        self._source = source
        self._ordered: pd.DataFrame | None = None
        self._plan: list[BatchSlice] | None = None

    def _load(self) -> tuple[pd.DataFrame, list[BatchSlice]]:
        if self._ordered is None or self._plan is None:
            from stream.sources import load_source

            source = self._source if self._source is not None else load_source(self.cfg.dataset)
            self._ordered = order_by_time(source, self.cfg.dataset.time_column)
            self._plan = plan_batches(self._ordered, self.cfg.stream)
        return self._ordered, self._plan

    @property
    def plan(self) -> list[BatchSlice]:
        return self._load()[1]

    def position(self) -> int:
        """Number of batches already emitted."""
        state = self.paths.stream_state
        if not state.exists():
            return 0
        return int(json.loads(state.read_text())["emitted"])

    def reset(self) -> None:
        """Start the stream again from its first batch."""
        self.paths.stream_state.unlink(missing_ok=True)

    def _save_position(self, emitted: int) -> None:
        state = self.paths.stream_state
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_name(f".{state.name}.tmp")
        tmp.write_text(json.dumps({"emitted": emitted, "total": len(self.plan)}))
        os.replace(tmp, state)

    def emit_next(self) -> EmittedBatch | None:
        """Write the next batch into the inbox; None when the stream is exhausted."""
        ordered, plan = self._load()
        pos = self.position()
        if pos >= len(plan):
            return None
        batch = plan[pos]
        rows = ordered.iloc[batch.start: batch.stop].drop(columns="_t")
        files = open_batch_files(self.cfg, self.paths)
        # written whole under a temporary name, then delivered into the inbox whole (an upstream's drop)
        with tempfile.TemporaryDirectory(dir=self.paths.root, prefix=".emit.") as tmp:
            path = write_batch_file(rows, Path(tmp), batch.batch_id, self.cfg.stream.file_format)
            file = files.put(path)
        self._save_position(pos + 1)
        location = f"{files.location(INBOX)}/{file.name}"
        log.info("stream: emitted %s (%d rows, %s .. %s) -> %s", batch.batch_id, len(rows),
                 batch.time_min, batch.time_max, location)
        return EmittedBatch(batch.batch_id, file.name, location, len(rows), batch.time_min, batch.time_max)

    def emit_all(self) -> list[EmittedBatch]:
        """Write every remaining batch into the inbox."""
        out = []
        while (batch := self.emit_next()) is not None:
            out.append(batch)
        return out


def write_batch_file(rows: pd.DataFrame, inbox: Path, batch_id: str, file_format: str) -> Path:
    """Write one batch atomically (temp name, then rename) and return its final path."""
    inbox.mkdir(parents=True, exist_ok=True)
    final = inbox / f"{batch_id}.{file_format}"
    tmp = inbox / f".{batch_id}.{file_format}.tmp"
    if file_format == "csv":
        rows.to_csv(tmp, index=False)
    else:
        rows.to_parquet(tmp, index=False)
    os.replace(tmp, final)
    return final
