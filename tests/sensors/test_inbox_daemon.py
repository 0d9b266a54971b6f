"""A zombie ingest run does not hold the queue, in a real Dagster daemon.

The zombie is a run that Dagster holds as ``STARTED`` while nothing executes it and nothing
watches it: the code server that launched it was killed, so no process tag names it (the
command line's tags, assets/run_health.py) and no code server reports its worker's exit. With one
ingest run at a time (``dagster.yaml``), it would keep every later batch queued for good. Its
``dagster/max_runtime`` (the per-run timeout that ingest runs carry) lets the daemon's run
monitoring fail it; the batch dropped into the inbox meanwhile waits in the queue, then flows.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.tags import MAX_RUNTIME_SECONDS_TAG

from assets.jobs import INGEST_JOB
from lake.tables import BATCHES
from tests.support.daemon import daemon_runs, home_instance, install_instance_config, run_daemon_until
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow  # a real dagster-daemon

WAIT_SECONDS = 240
ZOMBIE_TIMEOUT_SECONDS = 20  # long enough that the new batch's run is queued behind the zombie first


@pytest.mark.timeout(WAIT_SECONDS + 120)
def test_a_zombie_started_ingest_run_is_failed_and_the_next_batch_flows(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, {"dagster": {"inbox_poll_seconds": 1}})
    monitoring = {"run_monitoring": {"poll_interval_seconds": 1}}
    install_instance_config(pipe, monitoring)
    with home_instance(pipe) as instance:
        instance.add_dynamic_partitions("batches", ["batch_zombie"])
        zombie = instance.create_run_for_job(pipe.job, tags={
            "lakehouse/pipeline": "ingest", "dagster/partition": "batch_zombie",
            MAX_RUNTIME_SECONDS_TAG: str(ZOMBIE_TIMEOUT_SECONDS)})
        instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, job_name=INGEST_JOB),
                                      run_id=zombie.run_id)
        assert instance.get_run_by_id(zombie.run_id).status == dg.DagsterRunStatus.STARTED

    def drop_a_batch() -> None:
        batch = pipe.emulator.emit_next()
        assert batch is not None and batch.batch_id == "batch_00001"

    def ingested() -> bool:
        runs = [r for r in daemon_runs(pipe).get(INGEST_JOB, []) if r.run_id != zombie.run_id]
        return any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

    run_daemon_until(pipe, ingested, "the new batch's ingestion", WAIT_SECONDS, before=drop_a_batch,
                     instance_config=monitoring)

    with home_instance(pipe) as instance:
        dead = instance.get_run_record_by_id(zombie.run_id)
        [flowed] = [r for r in instance.get_run_records(dg.RunsFilter(job_name=INGEST_JOB))
                    if r.dagster_run.run_id != zombie.run_id]
        messages = [e.message for e in instance.all_logs(zombie.run_id)]
    assert dead.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert any(f"maximum runtime of {ZOMBIE_TIMEOUT_SECONDS} seconds" in (m or "") for m in messages), messages
    # the batch's run waited in the queue until the zombie was failed, then ran
    assert flowed.dagster_run.tags["dagster/partition"] == "batch_00001"
    assert flowed.start_time >= dead.end_time
    assert pipe.lake.read_batch(BATCHES, "batch_00001", column="batch_id")["status"].tolist() == ["ingested"]
    assert not list(pipe.paths.inbox.iterdir())
