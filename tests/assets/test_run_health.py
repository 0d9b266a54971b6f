"""Which process executes a run, and whether it is still the same process (assets/run_health.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import MAX_RUNTIME_SECONDS_TAG

from assets.jobs import INGEST_JOB
from assets.run_health import (
    HOST_TAG,
    PID_TAG,
    SOURCE_BYTES_TAG,
    START_TAG,
    ingest_max_runtime,
    ingest_run_tags,
    process_alive,
    process_start,
    process_tags,
)


def test_a_run_names_this_process_and_a_reused_or_dead_pid_is_not_it() -> None:
    tags = process_tags()
    assert tags[PID_TAG] == str(os.getpid()) and tags[HOST_TAG] == socket.gethostname()
    assert tags[START_TAG] == process_start(os.getpid()) and tags[START_TAG].isdigit()
    assert process_alive(os.getpid(), tags[START_TAG]) is True
    # the same id with another start time: a new process under a reused id, not the run's
    assert process_alive(os.getpid(), str(int(tags[START_TAG]) + 1)) is False
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start(child.pid)
    child.wait()
    assert process_alive(child.pid, started) is False  # exited and reaped
    assert process_alive(child.pid, "") is False


def _ingest_runs(instance: dg.DagsterInstance, runs: list[tuple[dict[str, str], float, bool]]) -> list[float]:
    """Runs of a job named ingest_job, each (tags, seconds it sleeps, whether it succeeds); returns
    each run's recorded duration (from its start and end events)."""
    @dg.op
    def work(context) -> None:  # unannotated: Dagster refuses the string annotation of `from __future__`
        time.sleep(float(context.run.tags["seconds"]))
        if context.run.tags["ok"] != "1":
            raise RuntimeError("a failed ingestion")

    @dg.job(name=INGEST_JOB)
    def ingest_like() -> None:
        work()

    durations = []
    for tags, seconds, ok in runs:
        result = ingest_like.execute_in_process(instance=instance, raise_on_error=False,
                                                tags={**tags, "seconds": str(seconds), "ok": "1" if ok else "0"})
        record = instance.get_run_record_by_id(result.run_id)
        durations.append(record.end_time - record.start_time)
    return durations


def test_the_ingest_timeout_is_derived_from_the_slowest_success_scaled_to_the_file() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert ingest_max_runtime(instance, 1000, 10.0) is None  # nothing to derive it from yet
        assert ingest_max_runtime(instance, 1000, 10.0, explicit=120.0) == 120.0
        small, large, untagged, failed = _ingest_runs(instance, [
            ({SOURCE_BYTES_TAG: "1000"}, 0.05, True), ({SOURCE_BYTES_TAG: "4000"}, 0.3, True),
            ({}, 1.5, True),  # no file size: not comparable, left out
            ({SOURCE_BYTES_TAG: "1000"}, 1.5, False)])  # failed: not a measure of a healthy ingestion
        assert untagged > 1.0 and failed > 1.0
        # a file no larger than those seen: the slowest success, never scaled down
        assert ingest_max_runtime(instance, 500, 10.0) == pytest.approx(10 * max(small, large))
        # a file 8x the larger one: each success scaled to its size, the slowest kept
        assert ingest_max_runtime(instance, 32_000, 10.0) == pytest.approx(10 * max(small * 32, large * 8))


def test_an_ingest_run_carries_its_file_size_and_timeout(tmp_path: Path) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert ingest_run_tags(instance, "batch_00009.csv", 2000, 10.0) == {"lakehouse/source_file": "batch_00009.csv",
                                                           SOURCE_BYTES_TAG: "2000"}
        [seconds] = _ingest_runs(instance, [({SOURCE_BYTES_TAG: "1000"}, 0.2, True)])
        tags = ingest_run_tags(instance, "batch_00009.csv", 2000, 10.0)
        assert float(tags[MAX_RUNTIME_SECONDS_TAG]) == pytest.approx(10 * seconds * 2, abs=0.5)
