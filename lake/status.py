"""What the lake says about the system's health, for monitoring: drift verdicts and the retraining
they requested, the A/B analysis' looks and guardrail breaches, the running experiment, the aliases.

Plain reads of small tables (the batch rows of `drift`, `ab_decisions`, `experiments`, the alias
history), the same on a local folder and on an object store. The lake exporter
(:mod:`exporter.collector`) turns them into Prometheus series; the alert rules in
``ops/prometheus/alerts.yml`` fire on those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lake.delta import Lake
from lake.experiments import DECISION_ACTIONS, GUARDRAILS, RUNNING, Experiment, ExperimentStore
from lake.registry import ModelRegistry
from lake.tables import DRIFT, DRIFT_BATCH_ROW, MODEL_ALIASES

# every guardrail and decision (lake.experiments) gets a series from the start, so the first
# breach is an increase from 0 that Prometheus can see

@dataclass(frozen=True)
class LakeStatus:
    drift_batches: int = 0                # batches with a drift verdict
    drift_batches_drifted: int = 0        # ... whose verdict was "drifted"
    retrain_requests: int = 0             # ... that requested a retraining (persistent drift)
    last_retrain_request_at: float | None = None  # unix seconds of the newest request
    decisions: dict[str, int] = field(default_factory=dict)          # action -> looks
    decisions_blocked: int = 0
    guardrail_breaches: dict[str, int] = field(default_factory=dict)  # guardrail -> looks that breached it
    running: Experiment | None = None
    aliases: dict[str, int] = field(default_factory=dict)


def drift_counts(lake: Lake) -> tuple[int, int, int, float | None]:
    """(batches checked, drifted, retraining requested, newest request's unix time) from the
    batch verdict rows of `drift` (one per batch: a re-check overwrites the batch's rows)."""
    rows = lake.read(DRIFT, where=f"feature = '{DRIFT_BATCH_ROW}'",
                     columns=["batch_id", "drifted", "retrain_requested", "computed_at"], missing_ok=True)
    if rows.empty:
        return 0, 0, 0, None
    requested = rows[rows["retrain_requested"].fillna(False).astype(bool)]
    newest = requested["computed_at"].max() if len(requested) else None
    return (int(rows["batch_id"].nunique()), int(rows["drifted"].fillna(False).astype(bool).sum()),
            int(requested["batch_id"].nunique()), None if newest is None else pd.Timestamp(newest).timestamp())


def decision_counts(decisions: pd.DataFrame) -> tuple[dict[str, int], int, dict[str, int]]:
    """(looks per action, blocked looks, looks per breached guardrail), every known key present."""
    actions = {a: 0 for a in DECISION_ACTIONS}
    breaches = {g: 0 for g in GUARDRAILS}
    if decisions.empty:
        return actions, 0, breaches
    for action, n in decisions["action"].value_counts().items():
        actions[str(action)] = int(n)
    for guardrail, n in decisions["guardrail"].dropna().value_counts().items():
        breaches[str(guardrail)] = int(n)
    return actions, int(decisions["blocked"].fillna(False).astype(bool).sum()), breaches


def lake_status(registry: ModelRegistry) -> LakeStatus:
    """Everything above, read now from the registry's lake."""
    lake = registry.lake
    store = ExperimentStore(lake)
    checked, drifted, requested, last = drift_counts(lake)
    actions, blocked, breaches = decision_counts(store.decisions())
    running = store.running()
    return LakeStatus(checked, drifted, requested, last, actions, blocked, breaches,
                      running if running is not None and running.status == RUNNING else None,
                      registry.aliases() if lake.exists(MODEL_ALIASES) else {})
