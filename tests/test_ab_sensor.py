"""ab_sensor's plan (plain function, real Delta tables): an analysis only when `ab_events` /
`ab_feedback` have new versions holding enough new labelled requests of the running experiment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from assets.ab_analysis import labelled_count
from assets.ab_assets import AB_ANALYSIS_JOB, PROMOTE_JOB
from lake.delta import Lake
from lake.experiments import ExperimentStore
from lake.tables import AB_EVENTS, AB_EVENTS_SCHEMA, AB_FEEDBACK, AB_FEEDBACK_SCHEMA
from sensors.ab import ABCursor, plan_ab_requests


def _requests(lake: Lake, experiment_id: str, count: int, labelled: int) -> None:
    """``count`` answered requests of the experiment, the first ``labelled`` of them with a label."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4().hex for _ in range(count)]
    events = pd.DataFrame({"request_id": ids, "event_time": now, "user_id": [f"u{i}" for i in range(count)],
                           "variant": "A", "experiment_id": experiment_id, "model_version": 1,
                           "model_used": "prod", "prediction": "1", "ingested_at": now})
    lake.merge(AB_EVENTS, events.reindex(columns=AB_EVENTS_SCHEMA.names), ["request_id"], schema=AB_EVENTS_SCHEMA,
               insert_only=True)
    feedback = pd.DataFrame({"feedback_id": [uuid.uuid4().hex for _ in range(labelled)],
                             "request_id": ids[:labelled], "event_time": now, "label": "1", "label_value": 1.0,
                             "ingested_at": now})
    lake.merge(AB_FEEDBACK, feedback.reindex(columns=AB_FEEDBACK_SCHEMA.names), ["feedback_id"],
               schema=AB_FEEDBACK_SCHEMA, insert_only=True)


def test_the_cursor_follows_table_versions_and_counts_labelled_requests(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    store = ExperimentStore(lake)
    requests, cursor, why = plan_ab_requests(lake, ABCursor(), 100, auto_promote=True)
    assert requests == [] and why == "no running experiment"

    experiment = store.ensure(1, 2, 0.5, actor="test")
    _requests(lake, experiment.experiment_id, 80, labelled=60)
    _requests(lake, "another-experiment", 500, labelled=500)  # not this experiment's labels
    assert labelled_count(lake, experiment.experiment_id) == 60
    requests, cursor, why = plan_ab_requests(lake, cursor, 100, auto_promote=False)
    assert requests == [] and why.startswith("60 new labelled request(s)")
    assert (cursor.events_version, cursor.feedback_version) == (lake.version(AB_EVENTS), lake.version(AB_FEEDBACK))

    # unchanged tables: nothing is counted again
    requests, same, why = plan_ab_requests(lake, cursor, 100, auto_promote=False)
    assert requests == [] and "no new version" in why and same == cursor

    _requests(lake, experiment.experiment_id, 50, labelled=45)  # 105 labelled in all
    requests, cursor, _ = plan_ab_requests(lake, ABCursor.parse(cursor.dump()), 100, auto_promote=False)
    [run] = requests
    assert run.job_name == AB_ANALYSIS_JOB and run.run_key == f"analysis-{experiment.experiment_id}-105"
    assert cursor.analysed == {experiment.experiment_id: 105}

    _requests(lake, experiment.experiment_id, 30, labelled=30)  # 30 more since that analysis: not enough
    requests, cursor, why = plan_ab_requests(lake, cursor, 100, auto_promote=False)
    assert requests == [] and why.startswith("30 new labelled")

    store.update(experiment.experiment_id, actor="test", reason="B is better", decision="promote")
    requests, cursor, _ = plan_ab_requests(lake, cursor, 100, auto_promote=True)
    [promote] = requests
    assert promote.job_name == PROMOTE_JOB and promote.run_key == f"{experiment.experiment_id}:promote"
    assert promote.run_config["ops"]["apply_decision"]["config"]["action"] == "promote"
    again, cursor, _ = plan_ab_requests(lake, cursor, 100, auto_promote=True)
    assert again == []  # a decision is sent to promote_job once
