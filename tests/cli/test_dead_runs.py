"""``run.py -mode ingest`` killed with a real SIGKILL at every crash point of a batch (after each
step's commit, and between the last commit and the archive move): the batch is visibly
incomplete (`batches` says ``ingesting``, the file is still in the inbox), its Dagster run is
marked failed by the next run instead of staying STARTED and holding the one-ingest-at-a-time
queue, and the next run completes it: every table holds what a clean ingestion of the same files
holds, no duplicate, each file archived once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from deltalake import DeltaTable

from lake.faults import CRASH_MARKER_ENV, CRASH_POINT_ENV
from tests.conftest import write_config

pytestmark = pytest.mark.slow  # run.py processes, one killed per crash point

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("raw", "quality", "cleaned", "features", "batches")
CRASH_POINTS = ("after_raw_commit", "after_quality_commit", "after_cleaned_commit", "after_features_commit",
                "after_drift", "before_archive")


def _run_py(cfg: Path, data: Path, mode: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "run.py"), "-mode", mode, "--config", str(cfg), "--data", str(data)]
    return subprocess.Popen(args, cwd=ROOT, env=env or dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _rows_by_batch(data: Path) -> dict[str, dict[str, int]]:
    """Rows per table and batch (batches: one row per batch and status)."""
    out = {}
    for table in TABLES:
        frame = DeltaTable(str(data / "lake" / table)).to_pandas()
        key = "batch_id" if "batch_id" in frame.columns else "_batch_id"
        if table == "batches":
            out[table] = frame.groupby([key, "status"]).size().to_dict()
        else:
            out[table] = frame.groupby(key).size().to_dict()
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    """Rows per table and batch of a clean ingestion of the toy stream (the expected state)."""
    folder = tmp_path_factory.mktemp("clean")
    cfg, data = write_config(folder / "cfg"), folder / "data"
    _finish(_run_py(cfg, data, "stream"))
    _finish(_run_py(cfg, data, "ingest"))
    return _rows_by_batch(data)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_run_killed_at_a_crash_point_is_failed_and_the_next_run_completes_the_batch(
        point: str, clean: dict[str, dict[str, int]], tmp_path: Path) -> None:
    cfg, data = write_config(tmp_path / "cfg"), tmp_path / "data"
    _finish(_run_py(cfg, data, "stream"))
    files = sorted(p.name for p in (data / "inbox").iterdir())
    assert len(files) >= 2

    marker = tmp_path / "reached"
    killed = _run_py(cfg, data, "ingest", {**os.environ, CRASH_POINT_ENV: point, CRASH_MARKER_ENV: str(marker)})
    deadline = time.monotonic() + 240
    while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), f"{point} not reached: {killed.poll()} {killed.communicate(timeout=60)[0]}"
    assert marker.read_text().split() == [point, str(killed.pid)]  # the run executes in run.py itself
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)

    # visibly incomplete: the first batch is not `ingested`, its file is still in the inbox
    batches = DeltaTable(str(data / "lake" / "batches")).to_pandas()
    first = files[0].split(".")[0]
    status = batches.loc[batches["batch_id"] == first, "status"].tolist()
    assert status == (["ingested"] if point == "before_archive" else ["ingesting"])
    assert (data / "inbox" / files[0]).exists() and not (data / "archive" / files[0]).exists()
    home = data / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert len(started) == 1  # Dagster alone would keep it so for good
        zombie = started[0].dagster_run
        assert zombie.tags["lakehouse/pid"] == str(killed.pid) and zombie.tags["lakehouse/pid_start"]

    out = _finish(_run_py(cfg, data, "ingest"))
    assert out.strip().splitlines()[-1] == "True", out
    assert "its process is gone (killed mid-run); marked failed" in out

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(zombie.run_id).status == dg.DagsterRunStatus.FAILURE
        failure = [e for e in instance.all_logs(zombie.run_id) if e.dagster_event
                   and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE]
        assert f"pid {killed.pid}" in failure[-1].message and "is gone" in failure[-1].message
        assert instance.get_run_records(filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])) == []
    # complete and equal to a clean ingestion: same rows per table and batch, every batch
    # `ingested` once, every file archived once and none left in the inbox
    assert _rows_by_batch(data) == clean
    assert sorted(p.name for p in (data / "archive").iterdir()) == files and not list((data / "inbox").iterdir())
    raw = DeltaTable(str(data / "lake" / "raw")).to_pandas()
    assert not raw.drop(columns=["_ingested_at"]).duplicated().any() and pd.notna(raw["_batch_id"]).all()
