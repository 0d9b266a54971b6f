"""Incremental refresh of the prod model on batches that arrived after it was trained.

Which families refresh incrementally (the fitted preprocessing is kept; only the estimator
learns from the new rows):

- ``lightgbm``: boosting continues from prod's booster (``init_model``) with new trees fitted on
  the new rows;
- ``rf``, ``et``: ``warm_start`` adds new trees, grown on the new rows, to the forest;

every other family (linear models, kNN, a single tree, ...) gets a fresh small AutoML run: the
prod family and preprocessing variant only, no tuning, on the refresh window.

The refresh window is prod's hold-out batches (never trained on) plus the new batches except the
most recent ones, which are the refresh's own hold-out; refreshed and prod models are compared on
it and the gate decides, like for a full retraining.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pandas as pd

from assets.training.data import TrainingData, hold_out_latest, holdout_rows_needed, time_ordered
from assets.training.evaluation import evaluate, gate_decision, naive_metrics
from assets.training.registration import input_schema, library_versions, register_model
from assets.training.retrain import RetrainOutcome
from assets.training.search import params_of, run_search
from assets.training.staging import staging_comparison
from config import config_hash
from config.schema import PipelineConfig
from lake.delta import Lake
from lake.registry import AliasChange, ModelRegistry
from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN, FEATURES, LEADERBOARD, LEADERBOARD_SCHEMA
from serving.model_io import model_frame
from serving.scoring import ServedModel

log = logging.getLogger(__name__)
INCREMENTAL_FAMILIES = {"lightgbm": "boosting continued from the prod booster (init_model)",
                        "rf": "warm_start: new trees added to the forest", "et": "warm_start: new trees added"}


def refresh_rule(cfg: PipelineConfig) -> str:
    """What a refresh waits for, in words (for the messages of the policy and the refresh)."""
    if cfg.training.refresh_min_rows:
        return f"training.refresh_min_rows ({cfg.training.refresh_min_rows})"
    return "prod's own hold-out held (training.refresh_min_rows unset)"


def refresh_rows_needed(prod_row: dict, sizes: pd.Series, cfg: PipelineConfig) -> int:
    """New labelled rows a refresh waits for: ``training.refresh_min_rows`` when set, else as many
    as prod's own hold-out held (``sizes``: labelled rows per batch)."""
    if cfg.training.refresh_min_rows:
        return cfg.training.refresh_min_rows
    held = [b for b in json.loads(prod_row["holdout_batches"]) if b in sizes.index]
    return max(1, int(sizes[held].sum()))


def refresh_data(features: pd.DataFrame, prod_row: dict, cfg: PipelineConfig) -> TrainingData | None:
    """Prod's hold-out + new batches (training) and the newest batches (hold-out); None when fewer
    than ``training.refresh_min_rows`` new labelled rows arrived since prod's data."""
    labelled = features[features[cfg.dataset.target].notna()]
    order = labelled.groupby(BATCH_COLUMN)[EVENT_TIME_COLUMN].min().sort_values().index.tolist()
    sizes = labelled.groupby(BATCH_COLUMN).size()
    used = json.loads(prod_row["training_batches"]) + json.loads(prod_row["holdout_batches"])
    positions = [order.index(b) for b in used if b in order]
    if not positions:
        raise LookupError(f"none of prod v{prod_row['version']}'s batches {used} are in `features`: "
                          "a refresh has nothing to start from; run a full retraining")
    last_used = max(positions)
    new = order[last_used + 1:]
    if int(sizes[new].sum()) < refresh_rows_needed(prod_row, sizes, cfg):
        return None
    train_rows = int(sizes[[b for b in json.loads(prod_row["holdout_batches"]) if b in order] + new].sum())
    holdout = hold_out_latest(new, sizes, holdout_rows_needed(train_rows, cfg.training))
    train_batches = [b for b in json.loads(prod_row["holdout_batches"]) if b in order] + new
    if not train_batches:
        return None

    def rows(batches: list[str]) -> pd.DataFrame:
        part = labelled[labelled[BATCH_COLUMN].isin(batches)]
        return time_ordered(part).reset_index(drop=True)

    return TrainingData(rows(train_batches), rows(holdout), train_batches, holdout)


def refit_incrementally(model: Any, family: str, frame: pd.DataFrame, served: ServedModel, trees: int) -> Any:
    """A copy of ``model`` whose estimator learned from ``frame`` (see the module docstring)."""
    spec = served.spec
    refreshed = copy.deepcopy(model)
    estimator = refreshed.steps[-1][1]
    data = model_frame(frame, spec)
    x = refreshed[:-1].transform(data.drop(columns=[spec.target]))
    y = data[spec.target]
    encoder = dict(refreshed.steps).get("label_encoding")
    if encoder is not None:  # the estimator learned PyCaret's encoded classes (0..k-1), not the labels
        y = pd.Series(encoder.transformer.transform(y), index=y.index)
    if family == "lightgbm":
        estimator.set_params(n_estimators=trees)
        estimator.fit(x, y, init_model=model.steps[-1][1].booster_)
    else:
        estimator.set_params(warm_start=True, n_estimators=estimator.n_estimators + trees)
        estimator.fit(x, y)
    return refreshed


def refresh(lake: Lake, registry: ModelRegistry, cfg: PipelineConfig, run_id: str,
            progress: Any = None) -> RetrainOutcome | None:
    """Refresh prod on the new batches; register the result as ``staging`` if it passes the gate
    and beats the current staging model, if any, on the same rows (else it is registered without
    an alias and its gate says why). None when there is nothing to refresh yet."""
    say = progress or log.info
    aliases = registry.aliases()
    if "prod" not in aliases:
        raise LookupError("no prod model to refresh: run a full retraining first")
    prod_row = registry.get(aliases["prod"])
    prod = registry.load(aliases["prod"])
    served = ServedModel.from_registry_row(prod_row, prod)
    features_version = lake.version(FEATURES)
    data = refresh_data(lake.read(FEATURES, version=features_version), prod_row, cfg)
    if data is None:
        say(f"refresh: fewer new labelled rows since prod v{prod_row['version']}'s data than "
            f"{refresh_rule(cfg)}; nothing to do")
        return None
    family, spec = str(prod_row["model_id"]), served.spec
    say(f"refresh of prod v{prod_row['version']} ({family}) on {len(data.train)} rows of {data.train_batches}, "
        f"hold-out {len(data.holdout)} rows of {data.holdout_batches}")
    if family in INCREMENTAL_FAMILIES:
        model = refit_incrementally(prod, family, data.train, served, cfg.training.refresh_trees)
        how, cv = f"incremental: {INCREMENTAL_FAMILIES[family]}", {}
        board = pd.DataFrame()
    else:
        variants = {v.name: v for v in cfg.training.variants}
        if prod_row["variant"] not in variants:  # another variant would be another model, not a refresh
            raise ValueError(f"prod v{prod_row['version']} was trained with preprocessing variant "
                             f"{prod_row['variant']!r}, which training.variants no longer defines "
                             f"({sorted(variants)}): a refresh cannot rebuild it; retrain instead")
        small = cfg.model_copy(update={"training": cfg.training.model_copy(update={
            "models": [family], "variants": [variants[prod_row["variant"]]], "tune_top": 0})})
        search = run_search(data.train, spec, small, run_id, say)
        model, how, cv, board = search.pipeline, "fresh small AutoML run (prod family and variant)", \
            search.cv_metrics, search.leaderboard
        lake.append(LEADERBOARD, board, schema=LEADERBOARD_SCHEMA)
    metrics = evaluate(model, data.holdout, spec)
    gate = gate_decision(metrics, evaluate(prod, data.holdout, spec), cfg,
                         naive_metrics(data.train, data.holdout, spec))
    gate["refresh"] = {"parent_version": int(prod_row["version"]), "method": how}
    outcome = RetrainOutcome(run_id, board, metrics, gate, aliases=aliases, train_rows=len(data.train),
                             holdout_rows=len(data.holdout), train_batches=data.train_batches,
                             holdout_batches=data.holdout_batches, features_version=features_version or 0,
                             model_id=family, algorithm=type(model.steps[-1][1]).__name__,
                             variant=f"{prod_row['variant']}+refresh")
    say(f"refresh ({how}): hold-out {metrics}; gate: {gate['reason']}")
    if not gate["passed"]:
        return outcome
    # a drift retraining's staging model is not replaced by a refresh of the prod it was meant to
    # replace unless the refresh beats it on rows neither trained on
    comparison = staging_comparison(registry, model, spec, data.holdout, cfg.sort_metric)
    if comparison is not None:
        gate["staging_comparison"] = comparison
        say(comparison["reason"])
    version = register_model(registry, model, data.holdout, spec, {
        "task": spec.task, "metric": cfg.sort_metric, "training_batches": data.train_batches,
        "holdout_batches": data.holdout_batches, "features_version": features_version,
        "training_rows": len(data.train), "config_hash": config_hash(cfg), "library_versions": library_versions(),
        "input_schema": {**input_schema(data.train, spec), "spec": served.schema["spec"]}, "run_id": run_id,
        "role": "candidate", "algorithm": outcome.algorithm, "model_id": family, "variant": outcome.variant,
        "hyperparameters": params_of(model), "cv_metrics": cv, "holdout_metrics": metrics, "gate": gate})
    outcome.version = version
    if comparison is not None and not comparison["replace"]:
        say(f"registered refreshed version {version} without an alias: {comparison['reason']}")
        return outcome
    outcome.alias = "staging"
    why = f"refresh of v{prod_row['version']} ({how}) passed the gate" + (
        f"; {comparison['reason']}" if comparison else "")
    outcome.aliases = registry.set_aliases([AliasChange("staging", version)], actor=f"refresh:{run_id}", reason=why)
    say(f"registered refreshed version {version} as staging")
    return outcome
