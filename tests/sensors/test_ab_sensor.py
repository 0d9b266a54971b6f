"""ab_sensor's plan (plain function, real Delta tables): an analysis only when `ab_events` /
`ab_feedback` have new versions holding enough new labelled requests of the running experiment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from assets.ab.analysis import labelled_count
from assets.jobs import AB_ANALYSIS_JOB, PROMOTE_JOB
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
    assert promote.run_config["ops"]["prod_model"]["config"]["action"] == "promote"
    again, cursor, _ = plan_ab_requests(lake, cursor, 100, auto_promote=True)
    assert again == []  # a decision is sent to promote_job once


def test_asset_checks_flag_a_sample_ratio_mismatch_and_a_duplicated_request(tmp_path: Path) -> None:
    """ab_analysis's checks fail (ERROR) on a log where every user landed in A of a 50/50 split;
    ab_events' check fails when a request appears twice in the table."""
    import dagster as dg

    from tests.support.pipeline import Pipeline

    pipe = Pipeline(tmp_path)
    experiment = ExperimentStore(pipe.lake).ensure(1, 2, 0.5, actor="test")
    _requests(pipe.lake, experiment.experiment_id, 300, labelled=300)
    job = pipe.defs.resolve_job_def("ab_analysis_job")

    def checks() -> dict[str, dg.AssetCheckEvaluation]:
        result = job.execute_in_process(instance=pipe.instance)
        assert result.success
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    found = checks()
    srm = found["no_sample_ratio_mismatch"]
    assert not srm.passed and srm.severity == dg.AssetCheckSeverity.ERROR and "{'A': 300, 'B': 0}" in srm.description
    assert found["labels_arrive_evenly"].passed and found["each_request_once"].passed
    row = ExperimentStore(pipe.lake).get(experiment.experiment_id)
    assert row.status == "running"
    assert ExperimentStore(pipe.lake).all().iloc[-1]["decision"] == "continue"  # blocked, not decided

    one = pipe.lake.read(AB_EVENTS).head(1)
    pipe.lake.append(AB_EVENTS, one, schema=AB_EVENTS_SCHEMA)  # what an at-least-once writer would do
    duplicated = checks()["each_request_once"]
    assert not duplicated.passed and duplicated.metadata["duplicated"].value == 1
