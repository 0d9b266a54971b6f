"""Dagster side of the A/B test: the ``ab_analysis`` asset and ``promote_job`` (thin wrappers over
assets.ab_analysis, assets.ab_report and assets.promotion); their sensors are in sensors/ab.py."""

from typing import Literal

import dagster as dg
from pydantic import Field

from assets.ab_analysis import Analysis, analyse, labelled_events
from assets.ab_events_asset import ab_events
from assets.ab_report import write_report
from assets.metadata import numbers
from assets.promotion import promote, rollback
from assets.resources import LakehouseResource
from config.schema import ABConfig
from lake.experiments import RUNNING, ExperimentStore

AB_ANALYSIS_JOB = "ab_analysis_job"
PROMOTE_JOB = "promote_job"


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


@dg.asset(group_name="ab_test", deps=[ab_events], kinds={"scipy", "html"},
          check_specs=[dg.AssetCheckSpec(SRM_CHECK, asset="ab_analysis", description="Users per variant match the "
                                         "experiment's split (chi-square); a mismatch blocks any decision."),
                       dg.AssetCheckSpec(LABELS_CHECK, asset="ab_analysis", description="A and B get labels at "
                                         "the same rate (chi-square); uneven labels block any decision.")],
          description="The running experiment from the request log: per-variant requests, users, labelled "
                      "share, metric, latency, fallback share; SRM and label balance; B - A with a 95% CI; the "
                      "always-valid (mSPRT) p-value over every look; the required sample; the decision "
                      "(promote / rollback / continue) written to `experiments`; an HTML report.")
def ab_analysis(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    cfg, lake, paths = lakehouse.cfg(), lakehouse.lake(), lakehouse.paths()
    store = ExperimentStore(lake)
    experiment = store.running()
    if experiment is None:
        return dg.MaterializeResult(metadata={"decision": "none", "reason": "no running experiment"},
                                    check_results=_health_checks(None, cfg.ab))
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
    }, check_results=_health_checks(analysis, cfg.ab))


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
