"""Opening the lake and the model registry of a configuration (no Dagster: the router, the command
line and the Dagster resource all open them the same way)."""

from __future__ import annotations

from config import PipelineConfig
from lake.delta import Lake
from lake.paths import DataPaths
from lake.registry import ModelRegistry


def open_lake(cfg: PipelineConfig, paths: DataPaths) -> Lake:
    """The lake of a configuration: ``storage.lake_uri`` or ``<data root>/lake``."""
    root = cfg.storage.lake_uri or str(paths.lake)
    return Lake(root, cfg.storage.storage_options, cfg.storage.commit_retries, cfg.storage.checkpoint_interval)


def open_registry(cfg: PipelineConfig, paths: DataPaths) -> ModelRegistry:
    """The model registry of a configuration: its tables in the lake, its artifacts under the data root."""
    return ModelRegistry(open_lake(cfg, paths), paths.artifacts)
