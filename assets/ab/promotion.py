"""Promotion and rollback of the staging model: plain functions over the registry and experiments.

- promote: ONE commit of `model_aliases` moves ``prod`` to the staging version, ``previous`` to the
  old prod and clears ``staging`` (compare-and-set on both: a concurrent change makes it fail,
  never half-apply); then the experiment closes as ``promoted``. The router's pollers see the
  alias commit and swap.
- rollback: the experiment's split goes to 0 and it closes as ``rolled_back`` in one commit of
  `experiments`; every worker sends all traffic to prod at its next poll. The staging alias stays
  (its history is in `model_aliases`); the router does not reopen a decided experiment.

Every alias change keeps who / when / from -> to / why / experiment in `model_aliases`, so
:func:`prod_at` answers "which model was prod at time T".
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd

from lake.experiments import RUNNING, ExperimentStore
from lake.registry import AliasChange, ModelRegistry

log = logging.getLogger(__name__)


def promote(registry: ModelRegistry, *, actor: str, reason: str, experiment_id: str | None = None) -> dict[str, int]:
    """Staging becomes prod (one alias commit), the old prod ``previous``; closes the experiment."""
    aliases = registry.aliases()
    if "staging" not in aliases:
        raise LookupError("nothing to promote: no staging model")
    prod, staging = aliases.get("prod"), aliases["staging"]
    store = ExperimentStore(registry.lake)
    running = store.running()
    experiment_id = experiment_id or (running.experiment_id if running and running.staging_version == staging
                                      else None)
    changes = [AliasChange("prod", staging), AliasChange("staging", None)]
    if prod is not None:
        changes.append(AliasChange("previous", prod))
    new = registry.set_aliases(changes, actor=actor, reason=reason, experiment_id=experiment_id,
                               expect={"prod": prod, "staging": staging})
    if experiment_id:
        store.update(experiment_id, actor=actor, reason=reason, status="promoted", decision="promote")
    log.info("promoted v%d to prod (was v%s): %s", staging, prod, reason)
    return new


def rollback(registry: ModelRegistry, *, actor: str, reason: str, experiment_id: str | None = None) -> str:
    """Stop sending staging traffic at once: split 0 and the experiment closed as rolled back."""
    store = ExperimentStore(registry.lake)
    if experiment_id is None:
        running = store.running()
        if running is None or running.status != RUNNING:
            raise LookupError("nothing to roll back: no running experiment")
        experiment_id = running.experiment_id
    store.update(experiment_id, actor=actor, reason=reason, status="rolled_back", decision="rollback", split_b=0.0)
    log.info("experiment %s rolled back: %s", experiment_id, reason)
    return experiment_id


def prod_at(history: pd.DataFrame, when: datetime) -> int | None:
    """The prod version at time ``when``, from the alias history."""
    changes = history[(history["alias"] == "prod") & (history["changed_at"] <= pd.Timestamp(when))]
    if changes.empty:
        return None
    last = changes.sort_values("change_id").iloc[-1]
    return None if pd.isna(last["version"]) else int(last["version"])
