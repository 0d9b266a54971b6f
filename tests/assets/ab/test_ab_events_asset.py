"""The `ab_events` asset and `event_log_sensor` in Dagster (in process, real instance)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.resources import LakehouseResource
from config.schema import EventLogConfig
from definitions import build_definitions
from lake.log_shipping import seal_and_ship, shipped_segments
from lake.tables import AB_EVENTS, AB_FEEDBACK
from router.event_log import EventLog
from tests.conftest import write_config
from tests.support.pipeline import Pipeline


def _event(i: int) -> dict:
    return {"type": "prediction", "request_id": f"{i:032x}", "time": "2026-01-01T00:00:00+00:00",
            "user_id": f"u{i}", "variant": "A", "experiment_id": None, "model_version": 1, "model_used": "prod",
            "fallback_reason": None, "features": {"temp": 1.0}, "prediction": 1, "probability": 0.7,
            "latency_ms": 3.0, "worker": "test"}


def test_event_log_sensor_and_ab_events_asset(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "cfg")
    pipe = Pipeline(tmp_path, config_path=cfg_path)
    defs = build_definitions(str(cfg_path), str(pipe.paths.root))
    sensor = defs.resolve_sensor_def("event_log_sensor")
    resource = LakehouseResource(config_path=str(cfg_path), data_root=str(pipe.paths.root))
    with dg.build_sensor_context(instance=pipe.instance, resources={"lakehouse": resource}) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)  # nothing closed yet

    log = EventLog(pipe.paths.events, EventLogConfig(segment_max_bytes=2048), writer_id="testhost-1")
    for i in range(30):  # ~250 bytes each: several segments rotate
        log.append(_event(i))
    log.append({"type": "feedback", "feedback_id": "f" * 32, "request_id": f"{3:032x}", "label": 1,
                "time": "2026-01-01T00:01:00+00:00", "worker": "test"})
    log.close()
    with dg.build_sensor_context(instance=pipe.instance, resources={"lakehouse": resource}) as ctx:
        tick = sensor(ctx)
    [request] = tick.run_requests
    assert request.run_key.startswith("segments:")
    # the request log (an external asset) is observed once per new set of waiting segments
    [observed] = tick.asset_events
    assert observed.asset_key == dg.AssetKey("request_log") and observed.metadata["closed_segments"].value >= 3
    with dg.build_sensor_context(instance=pipe.instance, cursor=tick.cursor,
                                 resources={"lakehouse": resource}) as ctx:
        again = sensor(ctx)
    assert again.asset_events == [] and [r.run_key for r in again.run_requests] == [request.run_key]

    result = defs.resolve_job_def("ab_events_job").execute_in_process(instance=pipe.instance)
    assert result.success
    [mat] = result.asset_materializations_for_node("ab_events")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["predictions_inserted"] == 30 and meta["feedback_inserted"] == 1 and meta["segments"] >= 3
    assert pipe.lake.table(AB_EVENTS).count() == 30 and pipe.lake.table(AB_FEEDBACK).count() == 1
    again = defs.resolve_job_def("ab_events_job").execute_in_process(instance=pipe.instance)
    [mat] = again.asset_materializations_for_node("ab_events")
    assert mat.metadata["segments"].value == 0 and pipe.lake.table(AB_EVENTS).count() == 30


def test_with_a_shared_root_the_sensor_and_the_asset_read_what_the_replicas_shipped(tmp_path: Path) -> None:
    """storage.root_uri set: replicas ship closed segments to <root>/events/inbox; the sensor sees
    them there (not in the local folder), and the asset first ships what a router on this host
    left in its spool, then ingests the inbox exactly once and moves it to events/ingested."""
    shared = tmp_path / "shared"
    cfg_path = write_config(tmp_path / "cfg", {"storage": {"root_uri": str(shared)}})
    pipe = Pipeline(tmp_path, config_path=cfg_path)
    assert pipe.lake.uri(AB_EVENTS).startswith(str(shared / "lake"))
    defs = build_definitions(str(cfg_path), str(pipe.paths.root))
    sensor = defs.resolve_sensor_def("event_log_sensor")
    resource = LakehouseResource(config_path=str(cfg_path), data_root=str(pipe.paths.root))
    files = resource.shared_root()
    assert files is not None and files.uri == str(shared)

    replica_spool = tmp_path / "replica" / "events"  # another machine's data root, as far as it matters
    with EventLog(replica_spool, EventLogConfig(segment_max_bytes=2048), writer_id="otherhost-7") as log:
        for i in range(20):
            log.append(_event(i))
    with EventLog(pipe.paths.events, EventLogConfig(), writer_id="thishost-9") as log:  # a local router's spool
        for i in range(20, 25):
            log.append(_event(i))
    with dg.build_sensor_context(instance=pipe.instance, resources={"lakehouse": resource}) as ctx:
        skipped = sensor(ctx)  # closed segments in a local folder are not the shared inbox
    assert isinstance(skipped, dg.SkipReason) and f"{shared}/events/inbox" in skipped.skip_message

    shipped = seal_and_ship(replica_spool, files)
    assert len(shipped.shipped) >= 3 and not list(replica_spool.glob("*.jsonl"))
    with dg.build_sensor_context(instance=pipe.instance, resources={"lakehouse": resource}) as ctx:
        [request] = sensor(ctx).run_requests
    assert request.run_key.startswith(f"segments:{shipped.shipped[0]}:")

    result = defs.resolve_job_def("ab_events_job").execute_in_process(instance=pipe.instance)
    [mat] = result.asset_materializations_for_node("ab_events")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["predictions_inserted"] == 25 and meta["segments"] == len(shipped.shipped) + 1
    assert meta["segments_from"] == f"{shared}/events/inbox"
    assert pipe.lake.table(AB_EVENTS).count() == 25
    assert not shipped_segments(files) and not list(pipe.paths.events.glob("*.jsonl"))
    assert len(list((shared / "events" / "ingested").glob("*.jsonl"))) == len(shipped.shipped) + 1
    again = defs.resolve_job_def("ab_events_job").execute_in_process(instance=pipe.instance)
    [mat] = again.asset_materializations_for_node("ab_events")
    assert mat.metadata["segments"].value == 0 and pipe.lake.table(AB_EVENTS).count() == 25
