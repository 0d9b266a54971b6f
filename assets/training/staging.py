"""Whether a new candidate may take the ``staging`` alias from the model that holds it.

A full retraining (drift) and a refresh (stable batches) both end in a candidate for
``staging``. Without a comparison the later one always wins, so ``-mode update``'s refresh of a
stale prod replaced the staging model a drift retraining had just produced. The rule here: a
candidate replaces the current staging model only when it beats it on the same rows, the
candidate's hold-out rows that staging never trained on. Both are scored there with their own
feature specs; the comparison is written into the candidate's gate (its registry row), so a
candidate kept out of staging says why.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from assets.training.evaluation import evaluate, higher_is_better
from features import FeatureSpec
from lake.registry import ModelRegistry
from lake.tables import BATCH_COLUMN
from serving.scoring import ServedModel

# When the preferred metric is undefined on some rows (AUC with one class present, R2 of a constant
# target), these are defined on any labelled rows and are in every model's hold-out metrics.
DEFINED_ON_ANY_ROWS = {"classification": ("LogLoss", "Accuracy"), "regression": ("MAE", "RMSE")}


def comparable_metric(metrics: list[dict[str, float]], preferred: str, task: str) -> tuple[str | None, str]:
    """The metric to compare on: ``preferred`` when it is finite in every one of ``metrics``,
    else the first of :data:`DEFINED_ON_ANY_ROWS` that is; and a note when it is not ``preferred``."""
    def defined(metric: str) -> bool:
        return all(m.get(metric) is not None and math.isfinite(m[metric]) for m in metrics)

    if defined(preferred):
        return preferred, ""
    for metric in DEFINED_ON_ANY_ROWS[task]:
        if defined(metric):
            return metric, (f"{preferred} is undefined on these rows (one class only, or a constant "
                            f"target), so {metric} decides")
    return None, f"neither {preferred} nor {'/'.join(DEFINED_ON_ANY_ROWS[task])} is defined on these rows"


def beats(candidate: dict[str, float], incumbent: dict[str, float], preferred: str, task: str) -> dict[str, Any]:
    """Whether ``candidate``'s metrics are strictly better than ``incumbent``'s (same rows): a tie
    keeps the incumbent, since a swap must be earned. Returns the metric, both values and why."""
    metric, note = comparable_metric([candidate, incumbent], preferred, task)
    if metric is None:
        return {"replace": False, "metric": None, "reason": f"{note}: the incumbent is kept"}
    cand, inc = candidate[metric], incumbent[metric]
    better = cand > inc if higher_is_better(metric) else cand < inc
    verdict = "beats" if better else "does not beat"
    return {"replace": better, "metric": metric, "candidate": cand, "incumbent": inc,
            "reason": f"{metric} {cand:.4f} {verdict} {inc:.4f}" + (f" ({note})" if note else "")}


def staging_comparison(registry: ModelRegistry, candidate: Any, spec: FeatureSpec, holdout: pd.DataFrame,
                       metric: str) -> dict[str, Any] | None:
    """Compare ``candidate`` with the current ``staging`` model on the hold-out rows staging never
    trained on; None when there is no staging model. ``replace`` says whether the candidate may
    take the alias, ``reason`` why (also when there are no such rows: then staging, trained on
    data at least as new as the candidate's hold-out, is kept)."""
    aliases = registry.aliases()
    if "staging" not in aliases or aliases.get("staging") == aliases.get("prod"):
        return None
    version = int(aliases["staging"])
    row = registry.get(version)
    seen = set(json.loads(row["training_batches"]))
    rows = holdout[~holdout[BATCH_COLUMN].isin(seen)]
    base = {"staging_version": version, "rows": len(rows),
            "batches": sorted(set(rows[BATCH_COLUMN])) if len(rows) else []}
    if rows.empty:
        return {**base, "replace": False, "metric": None,
                "reason": f"staging v{version} was trained on every hold-out batch of the candidate: no rows to "
                          f"compare them on, so staging v{version} is kept"}
    model = registry.load(version)
    staging_metrics = evaluate(model, rows, ServedModel.from_registry_row(row, model).spec)
    outcome = beats(evaluate(candidate, rows, spec), staging_metrics, metric, spec.task)
    what = f"replaces staging v{version}" if outcome["replace"] else f"is kept out; staging v{version} stays"
    return {**base, "replace": outcome["replace"], "metric": outcome["metric"],
            "candidate": outcome.get("candidate"), "staging": outcome.get("incumbent"),
            "reason": f"candidate vs staging v{version} on {len(rows)} hold-out rows staging never trained on: "
                      f"{outcome['reason']}, so the candidate {what}"}
