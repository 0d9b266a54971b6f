"""What new batches should trigger for the models: nothing, a full retraining or a refresh.

No prod model and enough batches -> full AutoML retraining; a batch whose drift verdict requests
retraining -> full AutoML retraining; a prod model and enough new labelled rows since its data
-> incremental refresh; otherwise nothing. ``drift_sensor`` applies the same rules in the daemon.
Whichever runs, its candidate takes ``staging`` only if it beats the staging model already there on
the same rows (:mod:`assets.training.staging`), so a refresh of a stale prod cannot silently
replace a drift retraining's staging model.
"""

from __future__ import annotations

from collections.abc import Sequence

from assets.training.data import select_training_data
from assets.training.refresh import refresh_data, refresh_rule
from config.schema import PipelineConfig
from lake.delta import Lake
from lake.registry import ModelRegistry
from lake.tables import FEATURES


def training_action(lake: Lake, registry: ModelRegistry, cfg: PipelineConfig,
                    drifted_batches: Sequence[str] = ()) -> tuple[str | None, str]:
    """("full" | "refresh" | None, why); ``drifted_batches``: new batches whose drift verdict
    requests retraining (see :func:`assets.drift.compute.retrain_requests`)."""
    if not lake.exists(FEATURES):
        return None, "no features yet"
    features = lake.read(FEATURES)
    aliases = registry.aliases()
    if "prod" not in aliases:
        try:
            select_training_data(features, cfg)
        except ValueError as exc:
            return None, f"no prod model, and not enough data for a first one: {exc}"
        return "full", "no prod model yet"
    if drifted_batches:
        return "full", f"drift against prod's training data in {list(drifted_batches)}"
    try:
        data = refresh_data(features, registry.get(aliases["prod"]), cfg)
    except LookupError as exc:
        return "full", str(exc)
    if data is None:
        return None, f"fewer new labelled rows since prod's data than {refresh_rule(cfg)}"
    why = "new labelled batches since prod's data and no drift flagged"
    if "staging" in aliases:
        why += (f"; staging v{aliases['staging']} is replaced only if the refresh beats it on the same rows")
    return "refresh", why
