"""The Dagster resource that hands assets the configuration, the data root and the lake."""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

from config import PipelineConfig, load_config, resolve_config_path
from lake.batch_files import BatchFiles
from lake.delta import Lake
from lake.files import FileRoot
from lake.open import open_batch_files, open_lake, open_registry, open_report_files, open_shared_root
from lake.paths import DataPaths, data_paths
from lake.registry import ModelRegistry
from lake.report_files import ReportFiles


@functools.lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> PipelineConfig:
    return load_config(path)


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
        return open_lake(self.cfg(), self.paths())

    def registry(self) -> ModelRegistry:
        return open_registry(self.cfg(), self.paths())

    def shared_root(self) -> FileRoot | None:
        """``storage.root_uri`` as files (the replicas' shipped request log), None on one machine."""
        return open_shared_root(self.cfg(), self.paths())

    def batch_files(self) -> BatchFiles:
        """The inbox, archive and quarantine (on the storage root when there is one)."""
        return open_batch_files(self.cfg(), self.paths())

    def report_files(self) -> ReportFiles:
        """Where reports are rendered and published (the storage root when there is one)."""
        return open_report_files(self.cfg(), self.paths())
