"""Dagster side of the A/B test: the ``ab_analysis`` asset, ``promote_job`` and ``ab_sensor``
(thin wrappers over assets.ab_analysis, assets.ab_report and assets.promotion)."""

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import dagster as dg
from pydantic import Field

from assets.ab_analysis import analyse, labelled_count, labelled_events
from assets.ab_events_asset import ab_events
from assets.ab_report import write_report
from assets.metadata import numbers
from assets.promotion import promote, rollback
from assets.resources import LakehouseResource
from lake.delta import Lake
from lake.experiments import RUNNING, ExperimentStore
from lake.tables import AB_EVENTS, AB_FEEDBACK

AB_ANALYSIS_JOB = "ab_analysis_job"
PROMOTE_JOB = "promote_job"


@dg.asset(group_name="ab_test", deps=[ab_events], kinds={"scipy", "html"},
          description="The running experiment from the request log: per-variant requests, users, labelled "
                      "share, metric, latency, fallback share; SRM and label balance; B - A with a 95% CI; the "
                      "always-valid (mSPRT) p-value over every look; the required sample; the decision "
                      "(promote / rollback / continue) written to `experiments`; an HTML report.")
def ab_analysis(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg, lake, paths = lakehouse.cfg(), lakehouse.lake(), lakehouse.paths()
    store = ExperimentStore(lake)
    experiment = store.running()
    if experiment is None:
        return dg.MaterializeResult(metadata={"decision": "none", "reason": "no running experiment"})
    events = labelled_events(lake, experiment.experiment_id)
    analysis = analyse(events, experiment, cfg.dataset.task, cfg.ab)
    store.update(experiment.experiment_id, actor=f"ab_analysis:{context.run_id}", reason=analysis.decision.reason,
                 decision=analysis.decision.action)
    report = write_report(analysis, events, paths.reports / "ab_report.html")
    context.log.info("experiment %s: %s (%s)", experiment.experiment_id, analysis.decision.action,
                     analysis.decision.reason)
    s = analysis.summary()
    plotted = {k: v for k, v in s.items() if isinstance(v, int | float) and not isinstance(v, bool) and v is not None}
    table = "\n".join(f"| {v} | {f.requests} | {f.users} | {f.labelled_share:.1%} | "
                      f"{'' if f.metric is None else round(f.metric, 4)} | "
                      f"{'' if f.latency_p95_ms is None else round(f.latency_p95_ms, 1)} | {f.fallback_share:.1%} | "
                      f"{f.error_rate:.2%} |"
                      for v, f in analysis.variants.items())
    return dg.MaterializeResult(metadata={
        "decision": analysis.decision.action, "reason": analysis.decision.reason,
        "blocked": dg.MetadataValue.bool(analysis.decision.blocked), "experiment_id": experiment.experiment_id,
        **numbers(plotted),
        "summary": dg.MetadataValue.md(
            f"**{analysis.decision.action.upper()}**: {analysis.decision.reason}\n\n"
            f"| variant | requests | users | labelled | loss ({analysis.metric}) | latency p95 ms | fallback "
            f"| errors |\n"
            f"|---|---|---|---|---|---|---|---|\n{table}"),
        "report": dg.MetadataValue.path(str(report)),
    })


class PromoteConfig(dg.Config):
    """Run config of promote_job (Launchpad, the command line, or ab_sensor)."""

    action: Literal["auto", "promote", "rollback"] = Field(
        default="auto", description="auto: apply the running experiment's last analysis decision.")
    reason: str = Field(default="", description="Recorded with the alias / experiment change.")


@dg.op(description="Promote staging to prod (one alias commit) or roll the experiment back (split 0).")
def apply_decision(context: dg.OpExecutionContext, config: PromoteConfig, lakehouse: LakehouseResource) -> str:
    registry = lakehouse.registry()
    store = ExperimentStore(registry.lake)
    running = store.running()
    action = config.action
    if action == "auto":
        if running is None or running.status != RUNNING:
            context.log.info("no running experiment: nothing to apply")
            return "nothing"
        row = store.all().set_index("experiment_id").loc[running.experiment_id]
        action = row["decision"] if row["decision"] in ("promote", "rollback") else "nothing"
        if action == "nothing":
            context.log.info("experiment %s: last decision %r, nothing to apply", running.experiment_id,
                             row["decision"])
            return action
    reason = config.reason or f"{action} by promote_job {context.run_id}"
    actor = f"promote_job:{context.run_id}"
    if action == "promote":
        aliases = promote(registry, actor=actor, reason=reason)
        context.log.info("promoted: aliases now %s", aliases)
    else:
        experiment_id = rollback(registry, actor=actor, reason=reason)
        context.log.info("rolled back experiment %s", experiment_id)
    return action


@dg.job(name=PROMOTE_JOB, tags={"lakehouse/pipeline": "promote"},
        description="Apply the A/B decision: promote staging (prod -> staging's version, previous -> old prod, "
                    "staging cleared, one commit) or roll back (split 0, experiment closed).")
def promote_job() -> None:
    apply_decision()


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
        row = store.all().set_index("experiment_id").loc[experiment_id]
        key = f"{experiment_id}:{row['decision']}"
        if row["decision"] in ("promote", "rollback") and key not in cursor.applied:
            requests.append(dg.RunRequest(
                run_key=key, job_name=PROMOTE_JOB, tags={"lakehouse/trigger": "ab_sensor"},
                run_config={"ops": {"apply_decision": {"config": {"action": row["decision"],
                                                                  "reason": f"ab_sensor: {row['reason']}"}}}}))
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
