"""The environment a mode works in: the configuration and data root exported for Dagster, and the
lake and registry of that configuration opened once per mode."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from config import PipelineConfig, load_config
from config.loader import CONFIG_ENV
from lake.delta import Lake
from lake.open import open_lake, open_registry
from lake.paths import DATA_ENV, PROJECT_ROOT, DataPaths, data_paths, route_pycaret_log
from lake.registry import ModelRegistry


def prepare_environment(config: str | None, data: str | None) -> DataPaths:
    """Export the config and data root for Dagster, and give it an instance home with our settings."""
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    paths = data_paths(data).ensure()
    os.environ[DATA_ENV] = str(paths.root)
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    # after DATA_ENV: the log goes under the root just exported (unless the environment names one)
    route_pycaret_log()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", paths.dagster_home / "dagster.yaml")
    return paths


@dataclass(frozen=True)
class Lakehouse:
    """A configuration and its data root, with the lake and the model registry opened on first use.

    The lake holds no table state between calls (each read opens the table anew), so one opening
    serves a whole mode, job runs in between included."""

    cfg: PipelineConfig
    paths: DataPaths

    @classmethod
    def current(cls, paths: DataPaths) -> Lakehouse:
        """The lakehouse of the exported configuration (see :func:`prepare_environment`)."""
        return cls(load_config(), paths)

    @cached_property
    def lake(self) -> Lake:
        return open_lake(self.cfg, self.paths)

    @cached_property
    def registry(self) -> ModelRegistry:
        return open_registry(self.cfg, self.paths)

    def aliases(self) -> dict[str, int]:
        """The registry's aliases now (read anew: a job run may just have moved them)."""
        return self.registry.aliases()
