"""The Dagster resource that hands assets the configuration, the data root and the lake."""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

from config import PipelineConfig, load_config, resolve_config_path
from lake.delta import Lake
from lake.paths import DataPaths, data_paths
from lake.registry import ModelRegistry


@functools.lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> PipelineConfig:
    return load_config(path)


def lake_for(cfg: PipelineConfig, paths: DataPaths) -> Lake:
    """The lake of a configuration: ``storage.lake_uri`` or ``<data root>/lake``."""
    root = cfg.storage.lake_uri or str(paths.lake)
    return Lake(root, cfg.storage.storage_options, cfg.storage.commit_retries, cfg.storage.checkpoint_interval)


class LakehouseResource(dg.ConfigurableResource):
    """Configuration file and data root of this instance (empty: env variables or defaults)."""

    config_path: str = ""
    data_root: str = ""

    def cfg(self) -> PipelineConfig:
        path = resolve_config_path(self.config_path or None)
        return _cached_config(str(path), Path(path).stat().st_mtime_ns)

    def paths(self) -> DataPaths:
        return data_paths(self.data_root or None).ensure()

    def lake(self) -> Lake:
        return lake_for(self.cfg(), self.paths())

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.lake(), self.paths().artifacts)
