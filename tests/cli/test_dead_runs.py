"""A command-line run killed mid-ingestion (a real ``kill -9``): its Dagster run is marked failed
by the next run, never left STARTED to hold the one-ingest-at-a-time queue, and the batch is
ingested again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from lake.faults import CRASH_MARKER_ENV, CRASH_POINT_ENV
from tests.conftest import write_config

pytestmark = pytest.mark.slow  # three run.py processes, one killed

ROOT = Path(__file__).resolve().parents[2]


def _run_py(cfg: Path, data: Path, mode: str, env: dict[str, str] | None = None, **kwargs):
    args = [sys.executable, str(ROOT / "run.py"), "-mode", mode, "--config", str(cfg), "--data", str(data)]
    return subprocess.Popen(args, cwd=ROOT, env=env or dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_a_run_killed_mid_ingestion_is_failed_by_the_next_run_which_ingests_the_batch(tmp_path: Path) -> None:
    cfg, data = write_config(tmp_path / "cfg"), tmp_path / "data"
    streamed = _run_py(cfg, data, "stream")
    assert streamed.wait(timeout=300) == 0, streamed.stdout.read()
    files = sorted(p.name for p in (data / "inbox").iterdir())
    assert len(files) >= 2

    marker = tmp_path / "reached"
    env = {**os.environ, CRASH_POINT_ENV: "after_raw_commit", CRASH_MARKER_ENV: str(marker)}
    killed = _run_py(cfg, data, "ingest", env)
    deadline = time.monotonic() + 240
    while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), f"the crash point was not reached: {killed.poll()} {killed.stdout.read()}"
    assert marker.read_text().split() == ["after_raw_commit", str(killed.pid)]  # the run executes in run.py
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)

    home = data / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert len(started) == 1  # Dagster alone would keep it so for good
        zombie = started[0].dagster_run
        assert zombie.tags["lakehouse/pid"] == str(killed.pid) and zombie.tags["lakehouse/pid_start"]
    assert (data / "inbox" / files[0]).exists()  # killed before the archive move

    again = _run_py(cfg, data, "ingest")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and out.strip().splitlines()[-1] == "True", out
    assert "its process is gone (killed mid-run); marked failed" in out

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(zombie.run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE
        failure = [e for e in instance.all_logs(zombie.run_id) if e.dagster_event
                   and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE]
        assert f"pid {killed.pid}" in failure[-1].message and "is gone" in failure[-1].message
        unfinished = instance.get_run_records(filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]))
        assert unfinished == []
    assert sorted(p.name for p in (data / "archive").iterdir()) == files and not list((data / "inbox").iterdir())
    from deltalake import DeltaTable

    batches = DeltaTable(str(data / "lake" / "batches")).to_pandas()
    assert sorted(batches.loc[batches["status"] == "ingested", "source_file"]) == files
    assert sorted(batches["batch_id"]) == sorted(f.split(".")[0] for f in files)  # one row each, no duplicate
