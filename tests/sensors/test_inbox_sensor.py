"""inbox_sensor with a real Dagster instance: one run per file version, a persistent cursor."""

import json
import os
import time
from pathlib import Path

import dagster as dg

from assets.resources import LakehouseResource
from definitions import build_definitions
from lake.batch_files import BatchFiles
from lake.files import FileRoot
from sensors.inbox import plan_inbox, scan_inbox
from tests.conftest import write_config


def _evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, resource: LakehouseResource,
              cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lakehouse": resource}) as ctx:
        return sensor(ctx)


def test_sensor_requests_each_file_once_and_again_when_replaced(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "cfg")
    data = tmp_path / "data"
    defs = build_definitions(str(cfg_path), str(data))
    sensor = defs.resolve_sensor_def("inbox_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    resource = LakehouseResource(config_path=str(cfg_path), data_root=str(data))
    inbox = resource.paths().inbox
    (inbox / "batch_00001.csv").write_text("a\n1\n")
    (inbox / "batch_00002.parquet").write_text("x")
    (inbox / ".batch_00003.csv.tmp").write_text("half written")  # never picked up
    (inbox / "bad name!.csv").write_text("a\n1\n")
    instance = dg.DagsterInstance.ephemeral()

    first = _evaluate(sensor, instance, resource, None)
    assert [(r.partition_key, r.run_key.split(":")[0]) for r in first.run_requests] == [
        ("batch_00001", "batch_00001"), ("batch_00002", "batch_00002")]
    assert first.dynamic_partitions_requests[0].partition_keys == ["batch_00001", "batch_00002"]
    # each run carries its file's size, from which later runs' timeouts are derived (no history yet: none)
    assert [r.tags.get("lakehouse/source_bytes") for r in first.run_requests] == ["4", "1"]
    assert not any("dagster/max_runtime" in r.tags for r in first.run_requests)
    reason = json.loads((resource.paths().quarantine / "bad name!.csv.reason.json").read_text())
    assert reason["code"] == "invalid_name"

    again = _evaluate(sensor, instance, resource, first.cursor)  # e.g. after a daemon restart
    assert again.run_requests == [] and again.cursor == first.cursor

    time.sleep(0.01)
    (inbox / "batch_00001.csv").write_text("a\n1\n2\n")  # upstream re-delivers a corrected file
    replaced = _evaluate(sensor, instance, resource, again.cursor)
    assert [r.partition_key for r in replaced.run_requests] == ["batch_00001"]
    assert replaced.run_requests[0].run_key != first.run_requests[0].run_key

    os.remove(inbox / "batch_00002.parquet")  # ingested: moved to the archive
    pruned = _evaluate(sensor, instance, resource, replaced.cursor)
    assert pruned.run_requests == [] and list(json.loads(pruned.cursor)) == ["batch_00001.csv"]


def test_plan_inbox_caps_runs_per_tick(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    for i in range(5):
        (tmp_path / "inbox" / f"batch_{i:05d}.csv").write_text("x")
    (tmp_path / "inbox" / ".batch_00009.csv.tmp").write_text("x")  # an upstream's write in progress
    files = scan_inbox(BatchFiles(FileRoot(tmp_path)))
    new, cursor = plan_inbox(files, {}, limit=2)
    assert [f.batch_id for f in new] == ["batch_00000", "batch_00001"]
    new, cursor = plan_inbox(files, cursor, limit=2)
    assert [f.batch_id for f in new] == ["batch_00002", "batch_00003"]
    assert len(cursor) == 4


def test_a_file_left_in_the_inbox_by_a_failed_run_is_requested_again_up_to_three_runs(tmp_path: Path) -> None:
    from assets.jobs import INGEST_JOB
    from sensors.inbox import MAX_INGEST_ATTEMPTS

    cfg_path = write_config(tmp_path / "cfg")
    data = tmp_path / "data"
    defs = build_definitions(str(cfg_path), str(data))
    sensor, job = defs.resolve_sensor_def("inbox_sensor"), defs.resolve_job_def(INGEST_JOB)
    resource = LakehouseResource(config_path=str(cfg_path), data_root=str(data))
    (resource.paths().inbox / "batch_00001.csv").write_text("a\n1\n")
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluate(sensor, instance, resource, None)
    request = first.run_requests[0]

    def record(run_key: str, status: dg.DagsterRunStatus) -> None:  # what the daemon's run leaves
        instance.create_run_for_job(job, status=status, tags={
            "dagster/partition": "batch_00001", "dagster/run_key": run_key, **request.tags})

    record(request.run_key, dg.DagsterRunStatus.STARTED)
    assert _evaluate(sensor, instance, resource, first.cursor).run_requests == []  # still running
    instance.report_run_failed(instance.get_runs()[0])  # e.g. its process was killed
    retry = _evaluate(sensor, instance, resource, first.cursor).run_requests
    assert [r.run_key for r in retry] == [f"{request.run_key}:attempt2"]
    assert retry[0].partition_key == "batch_00001" and retry[0].tags == request.tags

    record(retry[0].run_key, dg.DagsterRunStatus.FAILURE)
    third = _evaluate(sensor, instance, resource, first.cursor).run_requests
    assert [r.run_key for r in third] == [f"{request.run_key}:attempt3"] and MAX_INGEST_ATTEMPTS == 3
    record(third[0].run_key, dg.DagsterRunStatus.FAILURE)
    assert _evaluate(sensor, instance, resource, first.cursor).run_requests == []  # attempts spent

    record(f"{request.run_key}:attempt4", dg.DagsterRunStatus.SUCCESS)  # a later success: nothing to retry
    assert _evaluate(sensor, instance, resource, first.cursor).run_requests == []
