"""Runs whose process died are marked failed, so they never hold the run queue.

Dagster's code server fails a run launched through it when the run's worker process exits (it
polls its children), and run monitoring (``dagster.yaml``) fails a run past its
``dagster/max_runtime``. Neither sees a run that the command line (``run.py``) executes in its own
process: when that process is killed, the run stays ``STARTED`` for good, and with one ingest run
at a time (the tag concurrency limit in ``dagster.yaml``) it holds the daemon's queue. So the
command line tags each run with the process that executes it (:func:`process_tags`), and
:func:`fail_dead_runs`, called by the inbox sensor on every tick and by the command line before
each run, marks failed the unfinished runs of this host whose process is gone.

A process id can be reused; the process's start time (Linux ``/proc/<pid>/stat``) is recorded
with it, so a new process under an old id is not taken for the run's.

A run can also hang alive (a parser stuck on a file the bounded reading did not foresee) or be
orphaned where no one watches it (the code server that launched it was killed). The last resort is
a per-run timeout, Dagster's ``dagster/max_runtime`` tag, enforced by the daemon's run monitoring:
:func:`ingest_max_runtime` derives it for each ingest run from the instance's own history.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import MAX_RUNTIME_SECONDS_TAG

PID_TAG = "lakehouse/pid"
HOST_TAG = "lakehouse/host"
START_TAG = "lakehouse/pid_start"  # clock ticks since boot at which the process started (Linux)
SOURCE_BYTES_TAG = "lakehouse/source_bytes"  # size of the batch file an ingest run reads
# How many of the latest successful ingest runs the timeout is derived from: enough to hold the
# slow ones of a noisy machine, few enough that a faster pipeline (after an upgrade) is seen soon.
RUNTIME_HISTORY = 20


def process_start(pid: int) -> str:
    """When process ``pid`` started (field 22 of ``/proc/<pid>/stat``), or "" where there is no
    /proc (then only the id is compared)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    # the command name (field 2) is in parentheses and may hold spaces: count from after it
    return stat[stat.rindex(")") + 2:].split()[19]


def process_tags(pid: int | None = None) -> dict[str, str]:
    """The tags naming the process that executes a run (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), START_TAG: process_start(pid)}


def process_alive(pid: int, started: str) -> bool:
    """Whether process ``pid`` still runs and is the one that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    if not started:
        return True
    current = process_start(pid)
    return current in ("", started)


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every unfinished run of this host whose executing process (:data:`PID_TAG`) is
    gone; returns their run ids. Runs without the tags (launched through a code server, which
    watches its own children) and runs of other hosts (whose processes cannot be checked from
    here) are left alone."""
    host = socket.gethostname()
    statuses = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
    failed = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=statuses)):
        run = record.dagster_run
        tags = run.tags
        if PID_TAG not in tags or tags.get(HOST_TAG) != host:
            continue
        pid = int(tags[PID_TAG])
        if process_alive(pid, tags.get(START_TAG, "")):
            continue
        instance.report_run_failed(run, message=(
            f"the process executing this run (pid {pid} on {host}) is gone: it was killed or crashed "
            f"mid-run; marked failed so the run queue moves on (the next run of the same partition "
            "replaces what this one wrote)"))
        failed.append(run.run_id)
    return failed


def ingest_max_runtime(instance: dg.DagsterInstance, file_bytes: int, margin: float,
                       explicit: float | None = None) -> float | None:
    """The ``dagster/max_runtime`` (seconds) of an ingest run of a ``file_bytes`` file, or None when
    there is nothing to derive it from yet (no successful ingest run recorded its file size).

    ``explicit`` (``ingest.max_runtime_seconds``) wins. Otherwise the run may take ``margin`` times
    the slowest of the last :data:`RUNTIME_HISTORY` successful ingest runs, each scaled up to this
    file's size (an ingestion costs in proportion to its batch: docs/performance.md; never scaled
    down, so a small file keeps the fixed per-run cost). ``margin`` 10 is an order of magnitude: the
    same run on the same machine varies within about 3x under load (the benchmarks' repeated runs),
    so 10x the slowest success is a run that stopped making progress, not a slow one.
    """
    if explicit is not None:
        return float(explicit)
    from assets.jobs import INGEST_JOB

    records = instance.get_run_records(filters=dg.RunsFilter(job_name=INGEST_JOB,
                                                             statuses=[dg.DagsterRunStatus.SUCCESS]),
                                       limit=RUNTIME_HISTORY)
    expected = []
    for record in records:
        size = record.dagster_run.tags.get(SOURCE_BYTES_TAG)
        if not size or record.start_time is None or record.end_time is None:
            continue
        seconds = record.end_time - record.start_time
        expected.append(seconds * max(1.0, file_bytes / max(int(size), 1)))
    return margin * max(expected) if expected else None


def ingest_run_tags(instance: dg.DagsterInstance, source_file: str, size: int, margin: float,
                    explicit: float | None = None) -> dict[str, str]:
    """The tags of an ingest run of batch file ``source_file`` of ``size`` bytes: its name, its
    size and, once it can be derived (:func:`ingest_max_runtime`), the run's timeout."""
    tags = {"lakehouse/source_file": source_file, SOURCE_BYTES_TAG: str(size)}
    limit = ingest_max_runtime(instance, size, margin, explicit)
    if limit is not None:
        tags[MAX_RUNTIME_SECONDS_TAG] = f"{limit:.0f}"
    return tags
