"""The lake exporter's figures from real Delta tables: counts of drift verdicts and retraining
requests, A/B looks per decision and per breached guardrail (every known label from 0), the
running experiment, and a lake that cannot be read as `lakehouse_lake_up 0`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import LakeCollector
from lake.delta import Lake
from lake.experiments import GUARDRAILS, ExperimentStore
from lake.registry import ModelRegistry
from lake.status import lake_status
from lake.tables import DRIFT, DRIFT_BATCH_ROW, DRIFT_SCHEMA


def _drift_rows(batch: str, *, drifted: bool, retrain: bool, at: datetime) -> pd.DataFrame:
    batch_row = {"batch_id": batch, "feature": DRIFT_BATCH_ROW, "kind": "batch", "drifted": drifted,
                 "retrain_requested": retrain, "computed_at": at}
    feature_row = {"batch_id": batch, "feature": "distance", "kind": "numeric", "drifted": drifted,
                   "computed_at": at}  # a feature row: not counted as a batch
    return pd.DataFrame([batch_row, feature_row]).reindex(columns=DRIFT_SCHEMA.names)


def _scrape(registry: ModelRegistry) -> dict[tuple[str, tuple], float]:
    prom = CollectorRegistry()
    prom.register(LakeCollector(registry))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(prom).decode())
            for s in family.samples}


def test_counts_from_the_lake_and_every_guardrail_from_zero(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    registry = ModelRegistry(lake, tmp_path / "artifacts")
    empty = _scrape(registry)  # a fresh lake: every counter at 0, so a first event is an increase
    assert empty[("lakehouse_lake_up", ())] == 1.0
    assert empty[("lakehouse_drift_retrain_requested_batches", ())] == 0.0
    assert {empty[("lakehouse_ab_guardrail_breaches_total", (("guardrail", g),))] for g in GUARDRAILS} == {0.0}

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    for i, (drifted, retrain) in enumerate([(False, False), (True, False), (True, True), (True, True)]):
        lake.append(DRIFT, _drift_rows(f"b{i}", drifted=drifted, retrain=retrain, at=t0 + pd.Timedelta(hours=i)),
                    schema=DRIFT_SCHEMA)
    store = ExperimentStore(lake)
    experiment = store.ensure(1, 3, 0.5, actor="test")
    store.log_decision(experiment, action="continue", reason="not enough", run_id="r1")
    store.log_decision(experiment, action="continue", reason="blocked: srm", run_id="r2", blocked=True)
    store.log_decision(experiment, action="rollback", reason="guardrail: B's fallback share", run_id="r3",
                       guardrail="fallback_share", always_valid_p=0.4)

    status = lake_status(registry)
    assert (status.drift_batches, status.drift_batches_drifted, status.retrain_requests) == (4, 3, 2)
    assert status.last_retrain_request_at == (t0 + pd.Timedelta(hours=3)).timestamp()
    assert status.decisions == {"promote": 0, "rollback": 1, "continue": 2} and status.decisions_blocked == 1
    assert status.guardrail_breaches == {"error_rate": 0, "model_p95_ms": 0, "latency_p95_ms": 0,
                                         "fallback_share": 1}
    assert status.running.experiment_id == experiment.experiment_id

    seen = _scrape(registry)
    assert seen[("lakehouse_drift_retrain_requested_batches", ())] == 2.0
    assert seen[("lakehouse_drift_batches_drifted", ())] == 3.0
    assert seen[("lakehouse_ab_decisions_blocked_total", ())] == 1.0
    assert seen[("lakehouse_ab_decisions_total", (("action", "continue"),))] == 2.0
    assert seen[("lakehouse_ab_guardrail_breaches_total", (("guardrail", "fallback_share"),))] == 1.0
    assert seen[("lakehouse_ab_experiment_split_b", (("experiment_id", experiment.experiment_id),
                                                     ("prod_version", "1"), ("staging_version", "3")))] == 0.5
    assert seen[("lakehouse_drift_last_retrain_request_timestamp_seconds", ())] == status.last_retrain_request_at
    logged = store.decisions()
    assert list(logged["run_id"]) == ["r1", "r2", "r3"] and logged["always_valid_p"].iloc[-1] == 0.4

    # a re-check against a new prod overwrites b3's verdict: the drift figures are state and fall
    # (as gauges; a falling counter would read as a reset and raise a false alert)
    lake.overwrite_batch(DRIFT, _drift_rows("b3", drifted=False, retrain=False, at=t0 + pd.Timedelta(hours=5)),
                         "b3", schema=DRIFT_SCHEMA, column="batch_id")
    rechecked = _scrape(registry)
    assert rechecked[("lakehouse_drift_retrain_requested_batches", ())] == 1.0
    assert rechecked[("lakehouse_drift_batches_drifted", ())] == 2.0
    assert rechecked[("lakehouse_drift_last_retrain_request_timestamp_seconds", ())] == \
        (t0 + pd.Timedelta(hours=2)).timestamp()


def test_an_unreadable_lake_is_up_0_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.append(DRIFT, _drift_rows("b0", drifted=True, retrain=True, at=datetime(2026, 12, 1, tzinfo=UTC)),
                schema=DRIFT_SCHEMA)
    for log_file in (tmp_path / "lake" / DRIFT / "_delta_log").glob("*.json"):
        log_file.write_text("{not json")  # a corrupt commit: reading the table raises
    seen = _scrape(ModelRegistry(lake, tmp_path / "artifacts"))
    assert seen[("lakehouse_lake_up", ())] == 0.0
    assert ("lakehouse_drift_retrain_requested_batches", ()) not in seen  # no stale or made-up numbers
    assert "reading the lake" in caplog.text and str(tmp_path / "lake") in caplog.text
