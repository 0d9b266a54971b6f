"""What a new batch should trigger for the models: nothing, a full retraining or a refresh.

The drift issue adds the third input (a drifted batch forces a full retraining); until then:
no prod model and enough batches -> full AutoML retraining; a prod model and enough new
labelled rows since its data -> incremental refresh; otherwise nothing.
"""

from __future__ import annotations

from assets.refresh import refresh_data
from assets.training import select_training_data
from config.schema import PipelineConfig
from lake.delta import Lake
from lake.registry import ModelRegistry
from lake.tables import FEATURES


def training_action(lake: Lake, registry: ModelRegistry, cfg: PipelineConfig) -> tuple[str | None, str]:
    """("full" | "refresh" | None, why)."""
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
    try:
        data = refresh_data(features, registry.get(aliases["prod"]), cfg)
    except LookupError as exc:
        return "full", str(exc)
    if data is None:
        return None, f"fewer than {cfg.training.refresh_min_rows} new labelled rows since prod's data"
    return "refresh", "new labelled batches since prod's data and no drift flagged"
