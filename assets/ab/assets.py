"""Dagster side of the A/B test (thin wrappers): the ``ab_events`` asset (the request log into Delta,
over :mod:`assets.ab.events`), the ``ab_analysis`` asset (:mod:`assets.ab.analysis`, :mod:`assets.ab.report`)
and the ``prod_model`` asset that promote_job materializes (:mod:`assets.ab.promotion`). The jobs are built in
:mod:`assets.jobs`, the sensors in :mod:`sensors.ab`."""

from typing import Literal

import dagster as dg
from pydantic import Field

from assets.ab.analysis import A, Analysis, B, analyse, labelled_events
from assets.ab.events import ingest_event_log, ingest_shipped_event_log
from assets.ab.promotion import promote, rollback
from assets.ab.report import write_report
from assets.ab.review import review_markdown
from assets.metadata import model_version_metadata, numbers, report_links
from assets.resources import LakehouseResource
from config.schema import ABConfig
from lake.experiments import RUNNING, ExperimentStore
from lake.log_shipping import seal_and_ship
from lake.report_files import AB_REPORT
from lake.tables import AB_EVENTS, AB_FEEDBACK

UNIQUE_CHECK = "each_request_once"
REQUEST_LOG, STAGING_MODEL, PROD_MODEL = "request_log", "staging_model", "prod_model"

# The router writes the request log, not Dagster: an external asset, so the lineage shows where
# ab_events comes from. event_log_sensor records an observation of it for every new closed
# segment it sees (the UI's "observed" entries), before it starts the ingesting run.
request_log = dg.AssetSpec(
    REQUEST_LOG, group_name="ab_test", kinds={"jsonl"}, deps=[STAGING_MODEL],
    description="The routers' request log: one JSON line per answered request (variant, model version, "
                "features, prediction) and per late label, in closed segments (on one machine the data "
                "root's events/ folder; replicas ship theirs to <root>/events/inbox). Written by the router "
                "before it answers. A is served by prod, B by this staging model (prod_model is not drawn as its "
                "parent: prod_model depends on the analysis of this log, and the graph has no cycles).")


def _unique_check(lake) -> dg.AssetCheckResult:
    """Exactly once, verified on the table: as many distinct request ids as rows."""
    ids = lake.read(AB_EVENTS, columns=["request_id"])["request_id"] if lake.exists(AB_EVENTS) else None
    rows, distinct = (0, 0) if ids is None else (len(ids), int(ids.nunique()))
    return dg.AssetCheckResult(check_name=UNIQUE_CHECK, passed=rows == distinct, severity=dg.AssetCheckSeverity.ERROR,
                               description=f"{rows} rows, {distinct} distinct request ids",
                               metadata={"rows": rows, "duplicated": rows - distinct})


@dg.asset(group_name="ab_test", kinds={"deltalake"}, deps=[request_log],
          check_specs=[dg.AssetCheckSpec(UNIQUE_CHECK, asset="ab_events", description="Every logged request is in "
                                         "`ab_events` once (request_id unique over the whole table).")],
          description="Predictions and late labels the router logged, from its closed event-log segments, "
                      "merged exactly once on request_id / feedback_id (segments of dead workers are sealed "
                      "first, a half-written last line dropped).")
def ab_events(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    paths, lake, shared = lakehouse.paths(), lakehouse.lake(), lakehouse.shared_root()
    if shared is None:  # one machine: the router's segments are in the data root's events/ folder
        outcome = ingest_event_log(lake, paths.events, paths.events_ingested)
        source = str(paths.events)
    else:  # replicas ship to <root>/events/inbox; a router that died on this host is swept first
        swept = seal_and_ship(paths.events, shared)
        outcome = ingest_shipped_event_log(lake, shared)
        outcome.sealed = swept.sealed + outcome.sealed
        source = f"{shared.uri}/events/inbox"
    context.log.info("event log: %d segment(s), %d prediction(s) (%d new), %d feedback (%d new)",
                     len(outcome.segments), outcome.events, outcome.events_inserted, outcome.feedback,
                     outcome.feedback_inserted)
    return dg.MaterializeResult(metadata={
        **numbers({"segments": len(outcome.segments), "predictions": outcome.events,
                   "predictions_inserted": outcome.events_inserted, "feedback": outcome.feedback,
                   "feedback_inserted": outcome.feedback_inserted, "skipped_lines": outcome.skipped_lines,
                   "duplicates": outcome.duplicates,
                   "ab_events_rows": lake.table(AB_EVENTS).count() if lake.exists(AB_EVENTS) else 0,
                   "ab_feedback_rows": lake.table(AB_FEEDBACK).count() if lake.exists(AB_FEEDBACK) else 0}),
        "sealed_orphans": dg.MetadataValue.json(outcome.sealed),
        "segments_from": dg.MetadataValue.text(source),
        "ab_events_uri": dg.MetadataValue.path(lake.uri(AB_EVENTS)),
    }, check_results=[_unique_check(lake)])


SRM_CHECK, LABELS_CHECK = "no_sample_ratio_mismatch", "labels_arrive_evenly"


def _health_checks(analysis: Analysis | None, cfg: ABConfig) -> list[dg.AssetCheckResult]:
    """The two conditions that block any decision, as asset checks (red in the UI when they fail)."""
    if analysis is None:
        return [dg.AssetCheckResult(check_name=name, passed=True, description="no running experiment")
                for name in (SRM_CHECK, LABELS_CHECK)]
    srm, labels = analysis.srm, analysis.labels
    users = {v: f.users for v, f in analysis.variants.items()}
    return [
        dg.AssetCheckResult(
            check_name=SRM_CHECK, passed=bool(srm.p_value >= cfg.srm_alpha), severity=dg.AssetCheckSeverity.ERROR,
            description=f"users per variant {users} against {analysis.experiment.ab_split_b:.0%} to B: "
                        f"chi-square p={srm.p_value:.3g} (fails below {cfg.srm_alpha})",
            metadata={"p_value": float(srm.p_value), "observed_b": srm.detail.get("observed_b") or 0.0,
                      "expected_b": float(analysis.experiment.ab_split_b)}),
        dg.AssetCheckResult(
            check_name=LABELS_CHECK, passed=bool(labels.p_value >= cfg.label_alpha),
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"labelled share A {labels.detail.get('labelled_share_a')}, B "
                        f"{labels.detail.get('labelled_share_b')}: chi-square p={labels.p_value:.3g} "
                        f"(fails below {cfg.label_alpha})",
            metadata={"p_value": float(labels.p_value)}),
    ]


@dg.asset(group_name="ab_test", deps=[ab_events, STAGING_MODEL], kinds={"scipy", "html"},
          check_specs=[dg.AssetCheckSpec(SRM_CHECK, asset="ab_analysis", description="Users per variant match the "
                                         "experiment's split (chi-square); a mismatch blocks any decision."),
                       dg.AssetCheckSpec(LABELS_CHECK, asset="ab_analysis", description="A and B get labels at "
                                         "the same rate (chi-square); uneven labels block any decision.")],
          description="The running experiment from the request log: per-variant requests, users, labelled "
                      "share, metric, latency, fallback share; SRM and label balance; B - A with a 95% CI; the "
                      "always-valid (mSPRT) p-value over every look; the required sample; the decision "
                      "(promote / rollback / continue) written to `experiments`; an HTML report.")
def ab_analysis(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg, lake = lakehouse.cfg(), lakehouse.lake()
    store = ExperimentStore(lake)
    experiment = store.running()
    if experiment is None:
        return dg.MaterializeResult(metadata={"decision": "none", "reason": "no running experiment"},
                                    check_results=_health_checks(None, cfg.ab))
    events = labelled_events(lake, experiment.experiment_id)
    analysis = analyse(events, experiment, cfg.dataset.task, cfg.ab)
    store.update(experiment.experiment_id, actor=f"ab_analysis:{context.run_id}", reason=analysis.decision.reason,
                 decision=analysis.decision.action)
    store.log_decision(experiment, action=analysis.decision.action, reason=analysis.decision.reason,
                       run_id=context.run_id, blocked=analysis.decision.blocked,
                       guardrail=analysis.decision.guardrail, always_valid_p=analysis.decision.always_valid_p)
    reports = lakehouse.report_files()
    write_report(analysis, events, reports.render_path(AB_REPORT))
    report = reports.publish(AB_REPORT)
    context.log.info("experiment %s: %s (%s)", experiment.experiment_id, analysis.decision.action,
                     analysis.decision.reason)
    s = analysis.summary()
    # plotted figures to 4 significant digits: more is noise to a reviewer (counts stay whole)
    plotted = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in s.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and v is not None}
    models = {variant: {"version": version, "algorithm": _algorithm(lakehouse.registry(), version, context)}
              for variant, version in ((A, experiment.prod_version), (B, experiment.staging_version))}
    return dg.MaterializeResult(metadata={
        "decision": analysis.decision.action, "reason": analysis.decision.reason,
        "blocked": dg.MetadataValue.bool(analysis.decision.blocked), "experiment_id": experiment.experiment_id,
        "A": f"v{models[A]['version']} ({models[A]['algorithm']})",
        "B": f"v{models[B]['version']} ({models[B]['algorithm']})",
        "decision_basis": analysis.basis,
        **numbers(plotted),
        # the unit the effect is stated in (ab.mde_unit) and its value in loss units
        "minimum_detectable_effect": analysis.effect.describe() if analysis.effect else "n/a",
        "summary": dg.MetadataValue.md(review_markdown(analysis, models)),
        **report_links(report, cfg.router.base_url()),
    }, check_results=_health_checks(analysis, cfg.ab))


def _algorithm(registry, version: int, context: dg.AssetExecutionContext) -> str:
    """The algorithm of a compared version, or a visible note when the registry lacks it."""
    try:
        return str(registry.get(version)["algorithm"])
    except KeyError:
        context.log.warning("A/B: model version %s of the experiment is not in the registry", version)
        return "not in the registry"


class PromoteConfig(dg.Config):
    """Run config of promote_job (Launchpad, the command line, or ab_sensor)."""

    action: Literal["auto", "promote", "rollback"] = Field(
        default="auto", description="auto: apply the running experiment's last analysis decision.")
    reason: str = Field(default="", description="Recorded with the alias / experiment change.")


@dg.asset(
    name=PROD_MODEL, group_name="registry", deps=[ab_analysis], kinds={"deltalake"}, output_required=False,
    description="The registry's `prod` alias: the model the router serves to A (and to everyone outside an "
                "experiment). Materialized by promote_job when an experiment's decision promotes staging (one "
                "alias commit: prod -> staging's version, previous -> old prod), with the experiment and the "
                "decision's reason; the very first version, registered straight to prod by training, is "
                "recorded here too. A rollback changes no alias: it is an observation of staging_model. "
                "Drift is measured against this model: after a promotion the daily drift schedule re-checks "
                "the batches against it (drift shows as stale until then).")
def prod_model(context: dg.AssetExecutionContext, config: PromoteConfig, lakehouse: LakehouseResource):
    """promote_job: apply the decision. Yields a materialization only when prod changed."""
    registry = lakehouse.registry()
    store = ExperimentStore(registry.lake)
    running = store.running()
    action, decided = config.action, None
    if action == "auto":
        if running is None or running.status != RUNNING:
            context.log.info("no running experiment: nothing to apply")
            return
        decided, _ = store.last_decision(running.experiment_id)
        action = decided if decided in ("promote", "rollback") else "nothing"
        if action == "nothing":
            context.log.info("experiment %s: last decision %r, nothing to apply", running.experiment_id, decided)
            return
    reason = config.reason or f"{action} by promote_job {context.run_id}"
    actor = f"promote_job:{context.run_id}"
    experiment_id = running.experiment_id if running is not None and running.status == RUNNING else None
    if experiment_id is not None and decided is None:  # an explicit action (ab_sensor sends the decision's)
        decided = store.last_decision(experiment_id)[0]
    if action == "promote":
        before = registry.aliases()
        aliases = promote(registry, actor=actor, reason=reason)
        context.log.info("promoted: aliases now %s", aliases)
        yield dg.MaterializeResult(metadata={
            **model_version_metadata(registry, aliases["prod"]),
            "previous_version": dg.MetadataValue.int(before["prod"]) if "prod" in before else "none",
            "experiment_id": experiment_id or "none (explicit promotion)",
            "decided_by": f"ab_analysis decision of experiment {experiment_id}" if decided == "promote"
            else f"explicit promote_job action, against the analysis ({decided or 'none'}): {reason}",
            "reason": reason})
    else:
        experiment_id = rollback(registry, actor=actor, reason=reason)
        context.log.info("rolled back experiment %s", experiment_id)
        context.log_event(dg.AssetObservation(STAGING_MODEL, description="experiment rolled back: B gets no "
                                              "traffic", metadata={"experiment_id": experiment_id,
                                                                   "action": "rollback", "reason": reason}))
