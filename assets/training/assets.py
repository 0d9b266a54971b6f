"""Dagster side of training (thin wrappers): ``candidate_models``, the AutoML run of ``retrain_job``
(:mod:`assets.training.retrain`, :mod:`assets.training.refresh`), and ``summary_report``."""

import json
from typing import Literal

import dagster as dg
from pydantic import Field

from assets.ingest.assets import features
from assets.metadata import model_version_metadata, numbers, report_links
from assets.resources import LakehouseResource
from assets.training.data import judge_rows
from assets.training.refresh import refresh
from assets.training.retrain import retrain
from lake.report_files import SUMMARY_REPORT
from lake.tables import LEADERBOARD


class RetrainConfig(dg.Config):
    """Run config of `candidate_models` (Launchpad, or the sensors' run requests)."""

    mode: Literal["full", "refresh"] = Field(
        default="full", description="full: AutoML search over all models and variants; refresh: incremental "
        "refresh of prod on the batches that arrived after its data (see README, Model lifecycle).")


STAGING_MODEL, PROD_MODEL = "staging_model", "prod_model"


@dg.multi_asset(
    name="candidate_models",
    specs=[
        dg.AssetSpec("candidate_models", group_name="training", deps=[features], kinds={"pycaret", "deltalake"},
                     description="PyCaret AutoML on a time-ordered window of `features`: every preprocessing "
                                 "variant compared with time-series CV, the best tuned and finalized, evaluated on "
                                 "the most recent batches, and registered (prod if none, else staging) when it "
                                 "passes the gate."),
        # skippable: a run whose winner fails the gate registers no challenger, and then the staging
        # model did not change (its history shows only the runs that moved it)
        dg.AssetSpec(STAGING_MODEL, group_name="registry", deps=["candidate_models"], skippable=True,
                     kinds={"deltalake"},
                     description="The registry's `staging` alias: the challenger the router serves to the B "
                                 "share of users. Materialized when a training run registers a version that "
                                 "passed the gate while a prod exists; its metadata names the version."),
    ])
def candidate_models(context: dg.AssetExecutionContext, config: RetrainConfig, lakehouse: LakehouseResource):
    """The AutoML run; yields the candidates' materialization, then the staging model's when one was
    registered (the very first version goes straight to prod: reported on ``prod_model``)."""
    cfg, lake = lakehouse.cfg(), lakehouse.lake()
    try:
        if config.mode == "refresh":
            outcome = refresh(lake, lakehouse.registry(), cfg, context.run_id, context.log.info)
            if outcome is None:
                yield dg.MaterializeResult(asset_key="candidate_models",
                                           metadata={"mode": "refresh", "registered_version": "nothing to refresh"})
                return
        else:
            outcome = retrain(lake, lakehouse.registry(), cfg, context.run_id, context.log.info)
    except (LookupError, ValueError) as exc:  # no data yet / not enough batches: say so in the UI
        raise dg.Failure(str(exc)) from exc
    yield dg.MaterializeResult(asset_key="candidate_models", metadata=_candidates_metadata(outcome, config, cfg,
                                                                                            lakehouse))
    if outcome.version is None or outcome.alias is None:
        return
    model = {**model_version_metadata(lakehouse.registry(), outcome.version),
             "registered_by": dg.MetadataValue.text(f"retrain_job ({config.mode}) run {context.run_id}")}
    if outcome.alias == "staging":
        yield dg.MaterializeResult(asset_key=STAGING_MODEL, metadata=model)
    else:  # the first version: no prod to challenge, so the registry made it prod directly
        context.log_event(dg.AssetMaterialization(PROD_MODEL, description="first registered version: no prod "
                                                  "before it, so no experiment", metadata={
                                                      **model, "decided_by": "no prod before (first version)"}))


def _candidates_metadata(outcome, config: RetrainConfig, cfg, lakehouse: LakehouseResource) -> dict:
    """The candidates' materialization: registered version, gate, hold-out, leaderboard, links."""
    lake = lakehouse.lake()
    board = outcome.leaderboard
    shown = board[["rank", "model_id", "model", "variant", "stage", "sort_value", "fit_seconds"]].head(15) \
        if len(board) else board
    metric = cfg.sort_metric
    versus = outcome.fallback_comparison
    return {
        "mode": config.mode,
        "registered_version": dg.MetadataValue.int(outcome.version) if outcome.version else "not registered",
        "alias": outcome.alias or "none",
        "gate": dg.MetadataValue.json(outcome.gate),
        **numbers({f"holdout_{k}": v for k, v in outcome.holdout_metrics.items()}),
        **numbers({"train_rows": outcome.train_rows, "holdout_rows": outcome.holdout_rows,
                   "features_version": outcome.features_version, "search_seconds": outcome.search_seconds}),
        "best": f"{outcome.model_id} ({outcome.algorithm}, variant {outcome.variant})",
        "sort_metric": metric,
        "leaderboard": dg.MetadataValue.md(shown.round(4).to_markdown(index=False) if len(shown)
                                           else "(incremental refresh: no search)"),
        "leaderboard_table": dg.MetadataValue.path(lake.uri(LEADERBOARD)),
        "aliases": dg.MetadataValue.json(outcome.aliases),
        **(_fallback_metadata(versus) if versus else {}),
        **_interpretation_links(lakehouse, outcome.version),
    }


def _fallback_metadata(versus: dict) -> dict[str, dg.MetadataValue]:
    """The fallback against the candidate on the same hold-out: numbers to plot across runs, and
    the sentence the gate recorded."""
    from assets.training.evaluation import fallback_note

    return {**numbers({f"holdout_fallback_{versus['metric']}": versus["fallback"],
                       "fallback_advantage": versus["advantage"]}),
            "fallback_beats_candidate": dg.MetadataValue.bool(versus["fallback_better"]),
            "fallback_vs_candidate": dg.MetadataValue.text(fallback_note(versus)),
            "fallback_comparison": dg.MetadataValue.json(versus)}


def _interpretation_links(lakehouse: LakehouseResource, version: int | None) -> dict[str, dg.MetadataValue]:
    """Paths of the registered version's interpretation files (importance, coefficients, tree, SHAP)."""
    if version is None:
        return {}
    registry = lakehouse.registry()
    row = registry.get(version)
    folder = registry.version_folder(row)
    return {f"interpretation_{kind}": dg.MetadataValue.path(str(folder / rel))
            for kind, rel in json.loads(row["interpretation"]).items()}


@dg.asset(group_name="training", deps=["candidate_models"], kinds={"html", "matplotlib"},
          description="HTML summary over batches and model versions: data quality, metrics, hyperparameters, "
                      "latency and memory per version, alias history, best candidate of each run.")
def summary_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    from assets.training.report import make_summary_report

    cfg, reports = lakehouse.cfg(), lakehouse.report_files()
    lake = lakehouse.lake()
    counts = make_summary_report(lake, reports.render_path(SUMMARY_REPORT), dataset=cfg.dataset.name,
                                 metric=cfg.sort_metric, registry=lakehouse.registry(), target=cfg.dataset.target,
                                 common_rows=judge_rows(lake, cfg))
    location = reports.publish(SUMMARY_REPORT)
    context.log.info("summary report written to %s", location)
    return dg.MaterializeResult(metadata={**report_links(location, cfg.router.base_url()), **numbers(counts)})
