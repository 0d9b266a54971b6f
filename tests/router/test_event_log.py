"""The router's event log: durable appends, rotation, orphan sealing, exactly-once ingestion."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from assets.ab.events import ingest_event_log
from config.schema import EventLogConfig
from lake.delta import Lake
from lake.paths import PROJECT_ROOT
from lake.request_log import closed_segments, seal_orphans
from lake.tables import AB_EVENTS, AB_FEEDBACK
from router import event_log as event_log_module
from router.event_log import EventLog

HOST = socket.gethostname()


def config(**overrides: Any) -> EventLogConfig:
    values: dict[str, Any] = {"fsync_interval_seconds": 30.0, "segment_max_bytes": 1 << 20,
                              "segment_max_seconds": 60.0}
    return EventLogConfig(**{**values, **overrides})


def prediction(i: int, **overrides: Any) -> dict[str, Any]:
    event = {"type": "prediction", "request_id": f"req-{i:05d}", "time": "2024-05-01T12:00:00.123456Z",
             "user_id": f"u{i % 7}", "variant": "A", "experiment_id": "exp-1", "model_version": 3,
             "model_used": "prod", "fallback_reason": None, "features": {"temp": 12.5, "city": "Oslo"},
             "prediction": "yes", "probability": 0.8, "latency_ms": 4.25, "worker": "test"}
    return {**event, **overrides}


def feedback(i: int, label: Any) -> dict[str, Any]:
    return {"type": "feedback", "feedback_id": f"fb-{i}", "request_id": f"req-{i:05d}",
            "time": "2024-05-01T13:00:00Z", "label": label, "worker": "test"}


def segment_ids(paths: list[Path]) -> list[str]:
    """request_ids of all lines of the segments, in order."""
    return [json.loads(line)["request_id"] for path in paths for line in path.read_text().splitlines()]


def dead_pid() -> int:
    """A pid no process can have: above the kernel's maximum."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events"
    events.mkdir()
    return events, events / "ingested"


def table_ids(lake: Lake, table: str = AB_EVENTS, key: str = "request_id") -> list[str]:
    return lake.read(table, columns=[key])[key].tolist() if lake.exists(table) else []


# -- writing and rotation --------------------------------------------------------------------------

def test_rotation_by_size_seals_named_segments_in_order(folders: tuple[Path, Path]) -> None:
    folder, _ = folders
    writer_id = f"{HOST}-{os.getpid()}"
    log = EventLog(folder, config(segment_max_bytes=1024), writer_id=writer_id)
    assert log.segment_path is None  # opened lazily
    for i in range(60):
        log.append(prediction(i))
        assert log.segment_path is not None and log.segment_path.name.endswith(".jsonl.open")
    open_name = log.segment_path.name
    log.close()

    segments = closed_segments(folder)
    assert len(segments) >= 10  # ~290 bytes a line, <= 1024 bytes a segment
    assert not list(folder.glob("*.open"))
    assert segments[-1].name == open_name.removesuffix(".open")
    pattern = re.compile(rf"^{re.escape(writer_id)}-(\d{{19}})-(\d{{6}})\.jsonl$")
    matches = [pattern.match(p.name) for p in segments]
    assert all(matches)
    assert [int(m[2]) for m in matches if m] == list(range(len(segments)))
    assert all(p.stat().st_size <= 1024 and p.read_bytes().endswith(b"\n") for p in segments)
    assert segment_ids(segments) == [f"req-{i:05d}" for i in range(60)]
    assert log.events_written == 60 and log.segments_sealed == len(segments)
    with pytest.raises(RuntimeError, match="closed"):
        log.append(prediction(99))


def test_rotation_by_age_on_append_and_when_idle(folders: tuple[Path, Path]) -> None:
    folder, _ = folders
    with EventLog(folder, config(segment_max_seconds=0.05)) as log:
        for i in range(3):
            log.append(prediction(i))
        time.sleep(0.1)
        for i in range(3, 5):
            log.append(prediction(i))
    segments = closed_segments(folder)
    assert [len(p.read_text().splitlines()) for p in segments] == [3, 2]
    assert segment_ids(segments) == [f"req-{i:05d}" for i in range(5)]

    # An idle writer's aged segment is sealed by the background thread, without another append.
    idle = folder / "idle"
    log = EventLog(idle, config(fsync_interval_seconds=0.02, segment_max_seconds=0.05))
    log.append(prediction(0))
    deadline = time.monotonic() + 5
    while not closed_segments(idle) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.segment_path is None
    assert [p.name.count("-") for p in closed_segments(idle)] == [HOST.count("-") + 3]
    assert not list(idle.glob("*.open"))
    log.close()
    assert len(closed_segments(idle)) == 1  # no empty segment left behind


def test_grouped_fsync_and_failures(folders: tuple[Path, Path]) -> None:
    folder, _ = folders
    log = EventLog(folder, config(fsync_interval_seconds=0.02))
    log.append(prediction(0))
    deadline = time.monotonic() + 5
    while log.fsyncs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.fsyncs >= 1
    fsyncs = log.fsyncs
    time.sleep(0.1)  # nothing written meanwhile: no more fsyncs
    assert log.fsyncs == fsyncs
    with pytest.raises(ValueError):  # NaN is not JSON: raised, nothing written
        log.append(prediction(1, latency_ms=float("nan")))
    log.close()
    assert segment_ids(closed_segments(folder)) == ["req-00000"]
    assert log.events_written == 1


def test_failed_write_raises_and_leaves_only_whole_lines(folders: tuple[Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = folders
    log = EventLog(folder, config())
    log.append(prediction(0))
    first = log.segment_path

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])  # the kernel took half the line, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(event_log_module, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space"):
        log.append(prediction(1))
    monkeypatch.undo()
    assert log.segment_path is None and first is not None and not first.exists()  # cut back and sealed
    log.append(prediction(2))
    log.close()
    segments = closed_segments(folder)
    assert len(segments) == 2 and all(p.read_bytes().endswith(b"\n") for p in segments)
    assert segment_ids(segments) == ["req-00000", "req-00002"]
    assert log.events_written == 2


def test_concurrent_threads_write_whole_lines(folders: tuple[Path, Path]) -> None:
    folder, _ = folders
    log = EventLog(folder, config(segment_max_bytes=4096))

    def work(t: int) -> None:
        for i in range(150):
            log.append(prediction(t * 1000 + i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    ids = segment_ids(closed_segments(folder))  # every line parses: no interleaved writes
    assert sorted(ids) == sorted(f"req-{t * 1000 + i:05d}" for t in range(4) for i in range(150))
    for t in range(4):  # each thread's events in its own order
        own = [x for x in ids if int(x[4:]) // 1000 == t]
        assert own == sorted(own)


def test_fork_child_writes_its_own_segment(folders: tuple[Path, Path]) -> None:
    folder, _ = folders
    log = EventLog(folder, config())
    log.append(prediction(0))
    parent_segment = log.segment_path
    pid = os.fork()
    if pid == 0:  # child: must not write into the parent's segment
        code = 1
        try:
            log.append(prediction(1))
            ok = log.segment_path != parent_segment and f"-{os.getpid()}-" in log.segment_path.name
            log.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.append(prediction(2))
    assert log.segment_path == parent_segment
    log.close()
    by_writer = {p.name.split("-")[-3]: segment_ids([p]) for p in closed_segments(folder)}
    assert by_writer == {str(os.getpid()): ["req-00000", "req-00002"], str(pid): ["req-00001"]}


# -- durability and orphans ------------------------------------------------------------------------

CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from config.schema import EventLogConfig
from router.event_log import EventLog
log = EventLog(Path({folder!r}), EventLogConfig(fsync_interval_seconds=30, segment_max_bytes=4096,
                                                segment_max_seconds=60))
i = 0
while True:
    rid = f"kill-{{i:06d}}"
    log.append({{"type": "prediction", "request_id": rid, "time": "2024-05-01T12:00:00Z", "user_id": None,
                "variant": "B", "experiment_id": "e", "model_version": 1, "model_used": "staging",
                "fallback_reason": None, "features": {{"x": i}}, "prediction": i, "probability": None,
                "latency_ms": 1.0, "worker": "child"}})
    print(rid, flush=True)
    i += 1
    time.sleep(0.0005)
"""


def test_kill_9_loses_no_acknowledged_event(lake: Lake, folders: tuple[Path, Path]) -> None:
    folder, ingested = folders
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(PROJECT_ROOT), folder=str(folder))],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    reported = [child.stdout.readline().strip() for _ in range(200)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)  # reaped: a zombie would still look alive to seal_orphans
    reported += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert len(reported) >= 200 and "" not in reported

    open_segments = list(folder.glob("*.jsonl.open"))
    assert [p.name.split("-")[-3] for p in open_segments] == [str(child.pid)]
    complete_lines = sum(p.read_bytes().count(b"\n") for p in folder.glob("*.jsonl*"))

    outcome = ingest_event_log(lake, folder, ingested)
    assert outcome.sealed == [open_segments[0].name.removesuffix(".open")]
    assert outcome.skipped_lines == 0
    ids = table_ids(lake)
    assert len(ids) == len(set(ids)) == complete_lines == outcome.events_inserted
    assert set(reported) <= set(ids)
    assert len(ids) - len(reported) in (0, 1)  # at most the event appended but not yet reported
    assert not list(folder.glob("*.jsonl*"))
    assert sorted(p.name for p in ingested.iterdir()) == sorted(outcome.segments)


def test_half_written_last_line_is_cut_and_logged(lake: Lake, folders: tuple[Path, Path],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    folder, ingested = folders
    name = f"{HOST}-{dead_pid()}-{time.time_ns()}-000000.jsonl.open"
    complete = b"".join(json.dumps(prediction(i)).encode() + b"\n" for i in range(2))
    partial = b'{"type":"prediction","request_id":"req-00002","ti'
    (folder / name).write_bytes(complete + partial)
    # Left alone: another host's orphan, a live writer (this process), a name without a pid.
    others = [f"otherhost-{dead_pid()}-1-000000.jsonl.open", f"{HOST}-{os.getpid()}-1-000000.jsonl.open",
              "custom-writer.jsonl.open"]
    for other in others:
        (folder / other).write_bytes(partial)

    with caplog.at_level(logging.INFO, logger="lake.request_log"):
        outcome = ingest_event_log(lake, folder, ingested)
    closed = name.removesuffix(".open")
    assert outcome.sealed == [closed]
    assert (outcome.events, outcome.skipped_lines, outcome.segments) == (2, 0, [closed])
    assert (ingested / closed).read_bytes() == complete
    assert sorted(table_ids(lake)) == ["req-00000", "req-00001"]
    truncations = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(truncations) == 1 and name in truncations[0] and f"{len(partial)} bytes" in truncations[0]
    assert sorted(p.name for p in folder.glob("*.open")) == sorted(others)
    assert seal_orphans(folder) == []


# -- exactly once ----------------------------------------------------------------------------------

def test_ingestion_is_exactly_once(lake: Lake, folders: tuple[Path, Path]) -> None:
    folder, ingested = folders
    with EventLog(folder, config(segment_max_bytes=1024)) as log:
        for i in range(20):
            log.append(prediction(i))
    segments = [p.name for p in closed_segments(folder)]
    assert len(segments) >= 3

    first = ingest_event_log(lake, folder, ingested, batch_segments=2)
    assert first.segments == segments
    assert (first.events, first.events_inserted, first.feedback) == (20, 20, 0)
    assert sorted(table_ids(lake)) == [f"req-{i:05d}" for i in range(20)]
    version = lake.version(AB_EVENTS)
    assert first.versions == {AB_EVENTS: version}
    assert version == (len(segments) + 1) // 2 - 1  # one commit per batch of 2 segments

    second = ingest_event_log(lake, folder, ingested)
    assert (second.segments, second.events, second.versions) == ([], 0, {})
    assert lake.version(AB_EVENTS) == version and len(table_ids(lake)) == 20

    # Crash between the commit and the move: the segment is back in the folder, even twice.
    shutil.copy(ingested / segments[0], folder / segments[0])
    shutil.copy(ingested / segments[0], folder / ("z" + segments[0]))
    again = ingest_event_log(lake, folder, ingested)
    lines = len((ingested / segments[0]).read_text().splitlines())
    assert again.segments == [segments[0], "z" + segments[0]]
    assert (again.events, again.duplicates, again.events_inserted) == (lines, lines, 0)
    assert sorted(table_ids(lake)) == [f"req-{i:05d}" for i in range(20)]
    assert not closed_segments(folder)


def test_shadow_lines_set_their_requests_columns_across_segments_and_re_reads(
        lake: Lake, folders: tuple[Path, Path]) -> None:
    """A shadow line (logged after the answer) lands on its prediction's row, whether it is in
    the same segment, a later one ingested in a later run, or read again after a crash."""
    folder, ingested = folders

    def shadow(i: int) -> dict[str, Any]:
        return {"type": "shadow", "request_id": f"req-{i:05d}", "model_version": 4, "prediction": "no",
                "probability": 0.25 + i / 100, "model_ms": 0.5, "time": "2024-05-01T12:00:01Z", "worker": "test"}

    with EventLog(folder, config(segment_max_bytes=1024)) as log:
        for i in range(10):
            log.append(prediction(i))
            log.append(shadow(i) if i % 2 else prediction(i + 100))  # odd ones shadowed
    first = ingest_event_log(lake, folder, ingested, batch_segments=1)  # a shadow may follow in a later batch
    assert (first.events_inserted, first.shadows, first.shadows_applied) == (15, 5, 5)
    rows = lake.read(AB_EVENTS).set_index("request_id")
    shadowed = [f"req-{i:05d}" for i in range(1, 10, 2)]
    assert rows.loc[shadowed, "shadow_version"].tolist() == [4] * 5
    assert rows.loc[shadowed, "shadow_probability"].tolist() == pytest.approx([0.26, 0.28, 0.30, 0.32, 0.34])
    assert rows.loc[shadowed, "shadow_model_ms"].tolist() == [0.5] * 5
    assert rows.drop(index=shadowed)["shadow_version"].isna().all()
    # a later run: the shadow of a request ingested by an earlier run
    with EventLog(folder, config()) as log:
        log.append(shadow(0))
    later = ingest_event_log(lake, folder, ingested)
    assert (later.events, later.shadows_applied) == (0, 1)
    assert lake.read(AB_EVENTS).set_index("request_id").loc["req-00000", "shadow_prediction"] == '"no"'
    # re-read after a crash between the commit and the move: the same values, no new rows
    for name in first.segments:
        shutil.copy(ingested / name, folder / name)
    again = ingest_event_log(lake, folder, ingested)
    assert (again.events_inserted, again.shadows_applied) == (0, 5)
    after = lake.read(AB_EVENTS).set_index("request_id")
    assert len(after) == 15 and after.index.is_unique
    assert after.loc[shadowed, "shadow_probability"].tolist() == pytest.approx([0.26, 0.28, 0.30, 0.32, 0.34])
    assert after.loc["req-00000", "shadow_version"] == 4 and pd.isna(after.loc["req-00100", "shadow_version"])


def test_live_writer_untouched_and_concurrent_ingestion(lake: Lake, folders: tuple[Path, Path]) -> None:
    folder, ingested = folders
    live = EventLog(folder, config(), writer_id=f"{HOST}-{os.getpid()}")
    for i in range(5):
        live.append(prediction(i))
    with EventLog(folder, config(), writer_id=f"{HOST}-{os.getpid()}x") as done:
        for i in range(5, 10):
            done.append(prediction(i))
    outcome = ingest_event_log(lake, folder, ingested)
    assert outcome.sealed == [] and len(outcome.segments) == 1
    assert live.segment_path is not None and live.segment_path.exists()
    assert sorted(table_ids(lake)) == [f"req-{i:05d}" for i in range(5, 10)]
    live.close()
    ingest_event_log(lake, folder, ingested)
    assert sorted(table_ids(lake)) == [f"req-{i:05d}" for i in range(10)]

    # A thread keeps appending (and rotating) while ingestion runs.
    writer = EventLog(folder, config(segment_max_bytes=2048, segment_max_seconds=0.1, fsync_interval_seconds=0.05))
    stop = threading.Event()
    written: list[str] = []

    def append_forever() -> None:
        i = 100
        while not stop.is_set():
            writer.append(prediction(i))
            written.append(f"req-{i:05d}")
            i += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=append_forever)
    thread.start()
    try:
        runs = []
        for _ in range(2):
            time.sleep(0.3)
            runs.append(ingest_event_log(lake, folder, ingested))
    finally:
        stop.set()
        thread.join(timeout=10)
        writer.close()
    assert all(run.segments for run in runs) and all(run.sealed == [] for run in runs)
    ingest_event_log(lake, folder, ingested)
    ids = table_ids(lake)
    assert len(written) > 100
    assert len(ids) == len(set(ids)) == len(written) + 10
    assert set(ids) == set(written) | {f"req-{i:05d}" for i in range(10)}
    assert not list(folder.glob("*.jsonl*"))


# -- content ---------------------------------------------------------------------------------------

def test_rows_feedback_and_corrupt_lines(lake: Lake, folders: tuple[Path, Path],
                                         caplog: pytest.LogCaptureFixture) -> None:
    folder, ingested = folders
    with EventLog(folder, config()) as log:
        log.append(prediction(0, features={"z": 1, "a": [1, 2]}, prediction=True))
        log.append(prediction(1, prediction=2.5, user_id=None, experiment_id=None, probability=None,
                              model_used="fallback", fallback_reason="missing_features"))
        log.append(prediction(2, time="2024-05-01T14:00:00+02:00"))
        for i, label in enumerate(["yes", 1, True, 2.5]):
            log.append(feedback(i, label))
    written_segment = closed_segments(folder)[0].name
    corrupt = folder / f"{HOST}-{dead_pid()}-1-000000.jsonl"
    corrupt.write_text("\n".join([
        json.dumps(prediction(10)),
        "not json at all",
        json.dumps({k: v for k, v in prediction(11).items() if k != "request_id"}),
        json.dumps(prediction(12, model_version="three")),
        json.dumps(feedback(10, "no")),
        "",
    ]))

    with caplog.at_level(logging.WARNING, logger="lake.request_log"):
        outcome = ingest_event_log(lake, folder, ingested)
    assert (outcome.events, outcome.feedback, outcome.skipped_lines) == (4, 5, 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(corrupt.name in w and "line 2" in w for w in warnings)
    assert any(corrupt.name in w and "line 3" in w and "request_id" in w for w in warnings)
    assert any(corrupt.name in w and "line 4" in w and "model_version" in w for w in warnings)

    events = lake.read(AB_EVENTS).set_index("request_id").sort_index()
    assert events.index.tolist() == ["req-00000", "req-00001", "req-00002", "req-00010"]
    first = events.loc["req-00000"]
    assert first["features"] == '{"a": [1, 2], "z": 1}'
    assert (first["prediction"], first["prediction_value"], first["probability"]) == ("true", 1.0, 0.8)
    assert (first["variant"], first["model_version"], first["latency_ms"]) == ("A", 3, 4.25)
    assert first["event_time"] == pd.Timestamp("2024-05-01T12:00:00.123456Z")
    assert first["segment"] == written_segment
    second = events.loc["req-00001"]
    assert (second["prediction"], second["prediction_value"]) == ("2.5", 2.5)
    assert second["user_id"] is None and second["experiment_id"] is None and pd.isna(second["probability"])
    assert (second["model_used"], second["fallback_reason"]) == ("fallback", "missing_features")
    assert events.loc["req-00002", "event_time"] == pd.Timestamp("2024-05-01T12:00:00Z")
    assert events.loc["req-00010", "prediction"] == '"yes"' and pd.isna(events.loc["req-00010", "prediction_value"])
    assert events.loc["req-00010", "segment"] == corrupt.name
    assert events["ingested_at"].notna().all()

    fb = lake.read(AB_FEEDBACK).set_index("feedback_id").sort_index()
    assert fb["label"].to_dict() == {"fb-0": '"yes"', "fb-1": "1", "fb-10": '"no"', "fb-2": "true", "fb-3": "2.5"}
    values = fb["label_value"].to_dict()
    assert pd.isna(values.pop("fb-0")) and pd.isna(values.pop("fb-10"))
    assert values == {"fb-1": 1.0, "fb-2": 1.0, "fb-3": 2.5}
    assert fb.loc["fb-1", "request_id"] == "req-00001"
    assert fb.loc["fb-1", "event_time"] == pd.Timestamp("2024-05-01T13:00:00Z")
