"""The A/B loop's sensors in a real Dagster daemon: with the router's request log closed on disk and
`ab.auto_promote: true`, no other action leads to event_log_sensor -> ab_events_job, ab_sensor
(new Delta versions, enough labelled requests) -> ab_analysis_job -> `promote`, and ab_sensor ->
promote_job -> staging is prod.

The daemon runs as a subprocess against a temporary DAGSTER_HOME and data root; the test waits
(bounded) for the registry to name the staging version prod, then stops the daemon.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from lake.experiments import ExperimentStore
from lake.registry import ModelRegistry
from tests.assets.ab.test_ab_loop import AB, concept_shift_lakehouse, play_latest_batch
from tests.support.daemon import daemon_runs, run_daemon_until

pytestmark = pytest.mark.slow  # a real dagster-daemon

WAIT_SECONDS = 300


@pytest.mark.timeout(WAIT_SECONDS + 240)
def test_sensors_ingest_analyse_and_promote_in_the_daemon(tmp_path: Path) -> None:
    pipe, _, before = concept_shift_lakehouse(
        tmp_path, {"dagster": {"event_log_poll_seconds": 1}, "ab": {**AB, "sensor_poll_seconds": 1}})
    registry = ModelRegistry(pipe.lake, pipe.paths.artifacts)
    _, answered = play_latest_batch(pipe)

    def promoted() -> bool:  # the promote_job run finished (its alias commit lands a moment before)
        return any(r.status == dg.DagsterRunStatus.SUCCESS for r in daemon_runs(pipe).get("promote_job", []))

    run_daemon_until(pipe, promoted, "a successful promote_job run", WAIT_SECONDS)

    assert registry.aliases() == {"prod": before["staging"], "previous": 1, "fallback": before["fallback"]}
    experiment = ExperimentStore(pipe.lake).all().iloc[-1]
    assert experiment["status"] == "promoted" and experiment["decision"] == "promote"
    assert pipe.lake.table("ab_events").count() == answered
    by_job = daemon_runs(pipe)
    assert {r.tags["dagster/sensor_name"] for r in by_job["ab_events_job"]} == {"event_log_sensor"}
    assert {r.tags["dagster/sensor_name"] for r in by_job["ab_analysis_job"]} == {"ab_sensor"}
    [promotion] = by_job["promote_job"]
    assert promotion.tags["dagster/sensor_name"] == "ab_sensor"
    assert promotion.tags["dagster/run_key"] == f"{experiment['experiment_id']}:promote"
    # the first ingestion and analysis led to the promotion; later ones may still have been running
    # when the daemon was stopped, but none failed
    assert by_job["ab_events_job"][-1].status == by_job["ab_analysis_job"][-1].status == dg.DagsterRunStatus.SUCCESS
    assert not [r.run_id for runs in by_job.values() for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
