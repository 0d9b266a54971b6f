"""The router's shipping thread: a failed sweep keeps the segments, says so and is retried."""

from __future__ import annotations

import time
from pathlib import Path

from config.schema import EventLogConfig
from lake.files import FileRoot
from lake.log_shipping import shipped_segments
from router import metrics
from router.event_log import EventLog
from router.log_shipper import LogShipper


def _write(spool: Path, n: int) -> None:
    with EventLog(spool, EventLogConfig(segment_max_bytes=1024), writer_id="testhost-1") as log:
        for i in range(n):
            log.append({"type": "prediction", "request_id": f"{i:032x}", "pad": "x" * 200})


def test_a_failed_sweep_keeps_the_segments_counts_and_the_next_one_ships(tmp_path: Path) -> None:
    spool, root = tmp_path / "spool", tmp_path / "root"
    _write(spool, 12)
    closed = sorted(p.name for p in spool.glob("*.jsonl"))
    assert len(closed) >= 3
    (root / "events").mkdir(parents=True)
    (root / "events" / "inbox").write_text("not a folder")  # every put under it fails
    shipper = LogShipper(spool, FileRoot(root), interval_seconds=0.05)
    failures = metrics.SHIP_FAILURES._value.get()
    assert shipper.sweep() is None
    assert metrics.SHIP_FAILURES._value.get() == failures + 1
    assert "stay in the local spool" in shipper.last_error
    assert sorted(p.name for p in spool.glob("*.jsonl")) == closed  # nothing lost, nothing half-moved

    (root / "events" / "inbox").unlink()
    shipped_before = metrics.SHIPPED_SEGMENTS._value.get()
    shipper.start()  # the timer retries by itself
    deadline = time.monotonic() + 10
    while list(spool.glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    shipper.stop()
    assert shipper.last_error is None and not list(spool.glob("*.jsonl"))
    assert [k.rsplit("/", 1)[-1] for k in shipped_segments(FileRoot(root))] == closed
    assert metrics.SHIPPED_SEGMENTS._value.get() == shipped_before + len(closed)
