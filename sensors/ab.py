"""The A/B sensors: ``event_log_sensor`` (closed segments of the router's request log ->
``ab_events_job``) and ``ab_sensor`` (enough new labelled requests -> ``ab_analysis_job``; with
``ab.auto_promote``, a promote / rollback decision -> ``promote_job``). Their decisions are plain
functions (:func:`plan_ab_requests`) tested on real tables without a sensor context.
"""

import json
import time
from dataclasses import asdict, dataclass, field

import dagster as dg

from assets.ab.analysis import labelled_count
from assets.ab.assets import REQUEST_LOG
from assets.jobs import AB_ANALYSIS_JOB, AB_EVENTS_JOB, PROMOTE_JOB, promote_run_config
from assets.resources import LakehouseResource
from lake.delta import Lake
from lake.experiments import ExperimentStore
from lake.log_shipping import shipped_segments
from lake.request_log import closed_segments
from lake.tables import AB_EVENTS, AB_FEEDBACK


def build_event_log_sensor(poll_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(name="event_log_sensor", job_name=AB_EVENTS_JOB, minimum_interval_seconds=poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Closed segments in the router's event log -> an ab_events_job run.")
    def event_log_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
        shared = lakehouse.shared_root()
        # one machine: the data root's events/ folder; several: what the replicas shipped to the root
        names = [p.name for p in closed_segments(lakehouse.paths().events)] if shared is None else \
            [key.rsplit("/", 1)[-1] for key in shipped_segments(shared)]
        if not names:
            return dg.SkipReason("no closed event-log segments" if shared is None else
                                 f"no shipped event-log segments in {shared.uri}/events/inbox")
        # one run per set of segments (a run in progress keeps them until it moves them); the
        # 10-minute bucket lets a failed run be retried even when no new segment arrives
        waiting = f"{names[0]}:{names[-1]}:{len(names)}"
        key = f"segments:{waiting}:{int(time.time() // 600)}"
        context.log.info("event log: %d closed segment(s) waiting", len(names))
        # the request log is an external asset (the router writes it): an observation records each
        # new set of waiting segments once (the cursor remembers the last one observed)
        observed = [] if context.cursor == waiting else [dg.AssetObservation(
            REQUEST_LOG, description=f"{len(names)} closed segment(s) waiting for ab_events",
            metadata={"closed_segments": dg.MetadataValue.int(len(names)), "first_segment": names[0],
                      "last_segment": names[-1]})]
        run = dg.RunRequest(run_key=key, tags={"lakehouse/trigger": "event_log_sensor"})
        return dg.SensorResult(run_requests=[run], asset_events=observed, cursor=waiting)

    return event_log_sensor


@dataclass
class ABCursor:
    """ab_sensor's state: the `ab_events` / `ab_feedback` versions it last looked at, the labelled
    requests of each experiment at its last analysis, and the decisions already sent to promote_job."""

    events_version: int | None = None
    feedback_version: int | None = None
    analysed: dict[str, int] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> "ABCursor":
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(raw.get("events_version"), raw.get("feedback_version"), dict(raw.get("analysed", {})),
                   list(raw.get("applied", [])))

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def plan_ab_requests(lake: Lake, cursor: ABCursor, min_new_labels: int,
                     auto_promote: bool) -> tuple[list[dg.RunRequest], "ABCursor", str]:
    """ab_sensor's decision, without Dagster's sensor context: an analysis run when the running
    experiment gained ``min_new_labels`` labelled requests since its last analysis (counted only
    when `ab_events` or `ab_feedback` has a new Delta version), and with ``auto_promote`` a
    promote_job run for a promote / rollback decision not applied yet. Returns the run requests,
    the new cursor and, when nothing is requested, why."""
    store = ExperimentStore(lake)
    running = store.running()
    versions = (lake.version(AB_EVENTS), lake.version(AB_FEEDBACK))
    new = ABCursor(versions[0], versions[1], dict(cursor.analysed), list(cursor.applied))
    requests: list[dg.RunRequest] = []
    if running is None:
        return requests, new, "no running experiment"
    experiment_id = running.experiment_id
    why = f"no new version of {AB_EVENTS} / {AB_FEEDBACK} since the last tick"
    if versions != (cursor.events_version, cursor.feedback_version):
        labelled = labelled_count(lake, experiment_id)
        gained = labelled - cursor.analysed.get(experiment_id, 0)
        if gained >= min_new_labels:
            requests.append(dg.RunRequest(run_key=f"analysis-{experiment_id}-{labelled}", job_name=AB_ANALYSIS_JOB,
                                          tags={"lakehouse/trigger": "ab_sensor"}))
            new.analysed = {**cursor.analysed, experiment_id: labelled}
        why = f"{gained} new labelled request(s) in {experiment_id}, fewer than {min_new_labels}"
    if auto_promote:
        decision, reason = store.last_decision(experiment_id)
        key = f"{experiment_id}:{decision}"
        if decision in ("promote", "rollback") and key not in cursor.applied:
            requests.append(dg.RunRequest(
                run_key=key, job_name=PROMOTE_JOB, tags={"lakehouse/trigger": "ab_sensor"},
                run_config=promote_run_config(decision, f"ab_sensor: {reason}")))
            new.applied = [*cursor.applied, key][-50:]
    return requests, new, why


def build_ab_sensor(jobs: list, poll_seconds: int, min_new_labels: int, auto_promote: bool) -> dg.SensorDefinition:
    """``jobs``: the analysis job and promote_job, which the sensor's run requests name."""

    @dg.sensor(name="ab_sensor", jobs=jobs, minimum_interval_seconds=poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="New Delta versions of ab_events / ab_feedback with enough new labelled requests of "
                           "the running experiment -> ab_analysis_job; with ab.auto_promote, a promote / rollback "
                           "decision -> promote_job.")
    def ab_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
        requests, cursor, why = plan_ab_requests(lakehouse.lake(), ABCursor.parse(context.cursor), min_new_labels,
                                                 auto_promote)
        if not requests:
            return dg.SensorResult(skip_reason=why, cursor=cursor.dump())
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())

    return ab_sensor
