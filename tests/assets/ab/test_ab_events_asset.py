"""The `ab_events` asset and `event_log_sensor` in Dagster (in process, real instance)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.resources import LakehouseResource
from config.schema import EventLogConfig
from definitions import build_definitions
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
        request = sensor(ctx)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("segments:")

    result = defs.resolve_job_def("ab_events_job").execute_in_process(instance=pipe.instance)
    assert result.success
    [mat] = result.asset_materializations_for_node("ab_events")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert meta["predictions_inserted"] == 30 and meta["feedback_inserted"] == 1 and meta["segments"] >= 3
    assert pipe.lake.table(AB_EVENTS).count() == 30 and pipe.lake.table(AB_FEEDBACK).count() == 1
    again = defs.resolve_job_def("ab_events_job").execute_in_process(instance=pipe.instance)
    [mat] = again.asset_materializations_for_node("ab_events")
    assert mat.metadata["segments"].value == 0 and pipe.lake.table(AB_EVENTS).count() == 30
