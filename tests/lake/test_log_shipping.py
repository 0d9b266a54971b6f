"""Shipping closed request-log segments from replicas' local spools to the storage root, and
ingesting them from there exactly once: two replicas, a crash between put and delete, a replica
killed with -9, and (slow) the same on a real S3-compatible object store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from assets.ab.events import ingest_shipped_event_log
from config.schema import EventLogConfig
from lake.delta import Lake
from lake.files import FileRoot
from lake.log_shipping import INBOX_PREFIX, INGESTED_PREFIX, seal_and_ship, ship_segments, shipped_segments
from lake.request_log import OPEN_SUFFIX, default_writer_id, prediction_event
from lake.tables import AB_EVENTS
from router.event_log import EventLog

ROOT = Path(__file__).resolve().parents[2]
CFG = EventLogConfig(fsync_interval_seconds=0.05, segment_max_bytes=4096)  # several segments per replica


def _event(request_id: str, worker: str) -> dict:
    return prediction_event(request_id=request_id, variant="A", experiment_id=None, model_version=1,
                            model_used="prod", fallback_reason=None, prediction=1, probability=0.75,
                            latency_ms=1.0, user_id="u", features={"x": 1.0}, worker=worker)


def _write(spool: Path, writer: str, ids: list[str]) -> None:
    with EventLog(spool, CFG, writer_id=writer) as log:
        for rid in ids:
            log.append(_event(rid, writer))


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]


def _events(lake: Lake) -> list[str]:
    return sorted(lake.read(AB_EVENTS)["request_id"])


def test_two_replicas_ship_and_ingestion_loads_every_request_once(tmp_path: Path) -> None:
    root = FileRoot(tmp_path / "root")
    lake = Lake(str(tmp_path / "root" / "lake"))
    a, b = _ids("a", 120), _ids("b", 80)
    _write(tmp_path / "spool-a", "hostA-1", a)
    _write(tmp_path / "spool-b", "hostB-2", b)
    shipped_a = ship_segments(tmp_path / "spool-a", root)
    shipped_b = ship_segments(tmp_path / "spool-b", root)
    assert len(shipped_a.shipped) >= 3 and len(shipped_b.shipped) >= 2  # rotation at 4 KiB
    assert not list((tmp_path / "spool-a").iterdir()) and not list((tmp_path / "spool-b").iterdir())
    assert len(shipped_segments(root)) == len(shipped_a.shipped) + len(shipped_b.shipped)

    outcome = ingest_shipped_event_log(lake, root)
    assert outcome.events_inserted == 200 and _events(lake) == sorted(a + b)
    assert shipped_segments(root) == []
    assert len(root.list(INGESTED_PREFIX)) == len(outcome.segments) == len(shipped_a.shipped + shipped_b.shipped)
    again = ingest_shipped_event_log(lake, root)  # nothing left: no commit either
    assert again.segments == [] and again.versions == {}


def test_a_crash_between_put_and_delete_ships_again_and_inserts_nothing_twice(tmp_path: Path) -> None:
    root = FileRoot(tmp_path / "root")
    lake = Lake(str(tmp_path / "root" / "lake"))
    spool = tmp_path / "spool"
    ids = _ids("r", 60)
    _write(spool, "hostA-1", ids)
    segments = sorted(spool.glob("*.jsonl"))
    for path in segments:  # "crashed" after the put: local copies stay
        root.put_file(path, f"{INBOX_PREFIX}/{path.name}")
    first = ingest_shipped_event_log(lake, root)
    assert first.events_inserted == 60
    redo = ship_segments(spool, root)  # the restart ships the same segments again
    assert redo.shipped == [p.name for p in segments] and not list(spool.iterdir())
    second = ingest_shipped_event_log(lake, root)
    assert second.events == 60 and second.events_inserted == 0 and _events(lake) == sorted(ids)


def test_a_replica_killed_with_minus_9_is_sealed_and_shipped_by_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from config.schema import EventLogConfig
        from lake.request_log import prediction_event
        from router.event_log import EventLog
        log = EventLog({str(spool)!r}, EventLogConfig(segment_max_bytes=2**20))
        for i in range(50):
            log.append(prediction_event(request_id=f"k-{{i:04d}}", variant="A", experiment_id=None,
                       model_version=1, model_used="prod", fallback_reason=None, prediction=0,
                       probability=0.25, latency_ms=1.0, user_id="u", features={{}}, worker="w"))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert len(list(spool.glob(f"*{OPEN_SUFFIX}"))) == 1  # the dead replica's open segment
    assert default_writer_id().rsplit("-", 1)[0] in next(spool.iterdir()).name  # written on this host

    root = FileRoot(tmp_path / "root")
    outcome = seal_and_ship(spool, root)
    assert len(outcome.sealed) == 1 and outcome.shipped == outcome.sealed
    lake = Lake(str(tmp_path / "root" / "lake"))
    assert ingest_shipped_event_log(lake, root).events_inserted == 50
    assert _events(lake) == _ids("k", 50)


def test_a_live_writers_open_segment_is_not_shipped(tmp_path: Path) -> None:
    root = FileRoot(tmp_path / "root")
    log = EventLog(tmp_path / "spool", EventLogConfig())  # this process: alive
    try:
        log.append(_event("live-1", "w"))
        outcome = seal_and_ship(tmp_path / "spool", root)
        assert outcome.shipped == [] and outcome.sealed == []  # our own pid is alive
        assert shipped_segments(root) == []
    finally:
        log.close()
    assert len(ship_segments(tmp_path / "spool", root).shipped) == 1


@pytest.mark.slow
def test_replicas_ship_to_a_real_object_store_and_ingestion_reads_it_once(tmp_path: Path) -> None:
    from devservers.object_store import throwaway_object_store

    with throwaway_object_store() as store:
        prefix = f"roots/{uuid.uuid4().hex}"
        root = FileRoot(store.uri(prefix), store.storage_options, cache_dir=tmp_path / "cache")
        lake = Lake(store.uri(f"{prefix}/lake"), store.storage_options)
        a, b = _ids("a", 90), _ids("b", 70)
        _write(tmp_path / "spool-a", "hostA-1", a)
        _write(tmp_path / "spool-b", "hostB-2", b)
        shipped = ship_segments(tmp_path / "spool-a", root).shipped + ship_segments(tmp_path / "spool-b", root).shipped
        assert len(shipped) >= 4 and sorted(k.rsplit("/", 1)[-1] for k in shipped_segments(root)) == sorted(shipped)
        # a crash inside the object store's copy-then-delete move: one segment in both prefixes
        first = shipped_segments(root)[0]
        root.put_file(_copy_of(root, first, tmp_path), f"{INGESTED_PREFIX}/{first.rsplit('/', 1)[-1]}")
        outcome = ingest_shipped_event_log(lake, root)
        assert outcome.events_inserted == 160 and _events(lake) == sorted(a + b)
        assert shipped_segments(root) == [] and len(root.list(INGESTED_PREFIX)) == len(shipped)
        assert not any(os.scandir(tmp_path / "spool-a")) and not any(os.scandir(tmp_path / "spool-b"))


def _copy_of(root: FileRoot, key: str, tmp_path: Path) -> Path:
    path = tmp_path / "copy.jsonl"
    path.write_bytes(root.read_bytes(key))
    return path
