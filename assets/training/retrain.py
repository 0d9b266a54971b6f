"""One training run end to end: data window -> AutoML -> hold-out -> gate -> registry and alias."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from assets.ingest.steps import require_contract
from assets.training.data import select_training_data, spec_for_window
from assets.training.evaluation import compare_with_fallback, evaluate, gate_decision, naive_metrics
from assets.training.fallback import FALLBACK_MODEL_ID, fit_fallback
from assets.training.registration import input_schema, library_versions, register_model
from assets.training.search import params_of, run_search
from assets.training.staging import staging_comparison
from config import config_hash
from config.schema import PipelineConfig
from features import FeatureSpec
from lake.delta import Lake
from lake.registry import AliasChange, ModelRegistry
from lake.tables import FEATURES, LEADERBOARD, LEADERBOARD_SCHEMA
from serving.scoring import ServedModel

log = logging.getLogger(__name__)


@dataclass
class RetrainOutcome:
    run_id: str
    leaderboard: pd.DataFrame
    holdout_metrics: dict[str, float]
    gate: dict[str, Any]
    version: int | None = None
    alias: str | None = None
    aliases: dict[str, int] = field(default_factory=dict)
    train_rows: int = 0
    holdout_rows: int = 0
    train_batches: list[str] = field(default_factory=list)
    holdout_batches: list[str] = field(default_factory=list)
    features_version: int = 0
    model_id: str = ""
    algorithm: str = ""
    variant: str = ""
    search_seconds: float = 0.0
    fallback_version: int | None = None
    fallback_comparison: dict[str, Any] | None = None  # compare_with_fallback on the hold-out


def retrain(lake: Lake, registry: ModelRegistry, cfg: PipelineConfig, run_id: str,
            progress: Any = None) -> RetrainOutcome:
    """Train candidates on the configured window, evaluate on the hold-out and register the
    winner if it passes the gate: as ``prod`` when there is none yet, else as ``staging`` unless a
    staging model beats it on the same rows (:func:`assets.training.staging.staging_comparison`;
    then it is registered without an alias and its gate says why)."""
    say = progress or log.info
    spec = FeatureSpec.from_contract(require_contract(lake), cfg)
    features_version = lake.version(FEATURES)
    if features_version is None:
        raise LookupError("the `features` table does not exist yet: ingest batches first")
    data = select_training_data(lake.read(FEATURES, version=features_version), cfg)
    say(f"training on {len(data.train)} rows of {len(data.train_batches)} batch(es) "
        f"({data.train_batches[0]}..{data.train_batches[-1]}), hold-out {len(data.holdout)} rows "
        f"of {data.holdout_batches} (features v{features_version})")
    spec, calendar_left_out = spec_for_window(spec, data.train, cfg.training.calendar_min_cycles)
    calendar_notes = [f"time feature {name} is not a model input: {why}" for name, why in calendar_left_out.items()]
    for note in calendar_notes:
        say(note)
    search = run_search(data.train, spec, cfg, run_id, say)
    search.notes[:0] = calendar_notes
    lake.append(LEADERBOARD, search.leaderboard, schema=LEADERBOARD_SCHEMA)
    holdout = evaluate(search.pipeline, data.holdout, spec)
    current = registry.aliases()
    prod_metrics = None
    if "prod" in current:  # the same hold-out rows for both, so the comparison is fair
        prod_model = registry.load(current["prod"])  # scored with its own inputs, which may differ
        prod_spec = ServedModel.from_registry_row(registry.get(current["prod"]), prod_model).spec
        prod_metrics = evaluate(prod_model, data.holdout, prod_spec)
    naive = naive_metrics(data.train, data.holdout, spec)
    # the fallback is fitted before the gate, so its comparison with the candidate is in the gate's
    # record (registry row, run metadata) whether or not the candidate passes
    fallback = fit_fallback(data.train, spec, cfg.training.session_id)
    versus = compare_with_fallback(search.pipeline, fallback, data.holdout, spec, cfg.sort_metric,
                                   seed=cfg.training.session_id)
    gate = gate_decision(holdout, prod_metrics, cfg, naive, fallback=versus)
    if search.notes:  # what the search left out, in the registry row and the run's metadata
        gate["search_notes"] = search.notes
    outcome = RetrainOutcome(run_id, search.leaderboard, holdout, gate, aliases=current,
                             train_rows=len(data.train), holdout_rows=len(data.holdout),
                             train_batches=data.train_batches, holdout_batches=data.holdout_batches,
                             features_version=features_version, model_id=search.model_id,
                             algorithm=search.algorithm, variant=search.variant,
                             search_seconds=search.seconds, fallback_comparison=versus)
    say(f"hold-out {holdout}; gate: {gate['reason']}")
    if not gate["passed"]:
        return outcome
    common = {"task": spec.task, "metric": cfg.sort_metric, "training_batches": data.train_batches,
              "holdout_batches": data.holdout_batches, "features_version": features_version,
              "training_rows": len(data.train), "config_hash": config_hash(cfg),
              "library_versions": library_versions(), "input_schema": input_schema(data.train, spec),
              "run_id": run_id}
    # staging may hold a model made earlier (a drift retraining, a refresh): it is replaced only by
    # a candidate that beats it on rows neither trained on; the comparison goes into the gate
    comparison = (staging_comparison(registry, search.pipeline, spec, data.holdout, cfg.sort_metric)
                  if "prod" in current else None)
    if comparison is not None:
        gate["staging_comparison"] = comparison
        say(comparison["reason"])
    version = register_model(registry, search.pipeline, data.holdout, spec, {
        **common, "role": "candidate", "algorithm": search.algorithm, "model_id": search.model_id,
        "variant": search.variant, "hyperparameters": params_of(search.pipeline), "cv_metrics": search.cv_metrics,
        "holdout_metrics": holdout, "gate": gate})
    outcome.version = version
    if comparison is not None and not comparison["replace"]:
        say(f"registered version {version} without an alias: {comparison['reason']}")
    else:
        alias = "staging" if "prod" in current else "prod"
        outcome.alias = alias
        why = f"passed the gate: {gate['reason']}" + (f"; {comparison['reason']}" if comparison else "")
        outcome.aliases = registry.set_aliases([AliasChange(alias, version)], actor=f"retrain_job:{run_id}",
                                               reason=why)
        say(f"registered version {version} as {alias}")
    outcome.fallback_version = _refresh_fallback(registry, fallback, data, spec, cfg, common=common, run_id=run_id,
                                                 say=say)
    outcome.aliases = registry.aliases()
    return outcome


def _refresh_fallback(registry: ModelRegistry, model: Any, data: Any, spec: FeatureSpec, cfg: PipelineConfig, *,
                      common: dict, run_id: str, say: Any) -> int | None:
    """Register the robust fallback, fitted on the same window, as ``fallback`` if it clears the
    gate's floor (otherwise the previous fallback stays)."""
    metrics = evaluate(model, data.holdout, spec)
    gate = gate_decision(metrics, None, cfg, naive_metrics(data.train, data.holdout, spec))
    if not gate["passed"]:
        say(f"fallback not registered: {gate['reason']}")
        return None
    version = register_model(registry, model, data.holdout, spec, {
        **common, "role": "fallback", "algorithm": type(model.steps[-1][1]).__name__,
        "model_id": FALLBACK_MODEL_ID, "variant": "ordinal_native_nan", "hyperparameters": params_of(model),
        "cv_metrics": {}, "holdout_metrics": metrics, "gate": gate})
    registry.set_aliases([AliasChange("fallback", version)], actor=f"retrain_job:{run_id}",
                         reason=f"robust fallback refreshed with the candidate: {gate['reason']}")
    say(f"registered fallback version {version} ({metrics})")
    return version
