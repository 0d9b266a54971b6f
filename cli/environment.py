"""The environment a mode works in: the configuration and data root exported for Dagster, and the
lake and registry of that configuration opened once per mode."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from config import PipelineConfig, load_config
from config.loader import CONFIG_ENV
from lake.batch_files import BatchFiles
from lake.delta import Lake
from lake.open import open_batch_files, open_lake, open_registry, open_report_files
from lake.paths import DATA_ENV, PROJECT_ROOT, DataPaths, data_paths, route_pycaret_log
from lake.registry import ModelRegistry
from lake.report_files import ReportFiles


def prepare_environment(config: str | None, data: str | None) -> DataPaths:
    """Export the config and data root for Dagster, and give it an instance home with our settings."""
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    paths = data_paths(data).ensure()
    os.environ[DATA_ENV] = str(paths.root)
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)
    # after DATA_ENV: the log goes under the root just exported (unless the environment names one)
    route_pycaret_log()
    write_instance_settings(load_config(config), paths.dagster_home)
    return paths


POSTGRES_URL_FORM = "postgresql+psycopg2://user:password@host:5432/db"


def instance_settings(cfg: PipelineConfig, override: dict | None = None) -> dict:
    """The Dagster instance's ``dagster.yaml``: the project's file, the storage that
    ``dagster.instance_storage`` names, and ``override``'s sections merged one level deep.

    PostgreSQL is named by its environment variable (``dagster.postgres_url_env``), which Dagster
    reads in each process: the URL's password is never written to the instance home."""
    settings = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    if cfg.dagster.instance_storage == "postgres":
        url = os.environ.get(cfg.dagster.postgres_url_env)
        if not url:
            raise RuntimeError(f"dagster.instance_storage is postgres but {cfg.dagster.postgres_url_env} is not set "
                               f"({POSTGRES_URL_FORM})")
        if url.split("://", 1)[0] != "postgresql+psycopg2":
            # SQLAlchemy 2.1 (the lock's) reads a bare postgresql:// as psycopg 3, which is not installed;
            # dagster-postgres brings psycopg2
            raise RuntimeError(f"{cfg.dagster.postgres_url_env} must use the psycopg2 driver: {POSTGRES_URL_FORM}, "
                               f"not {url.split('://', 1)[0]}://")
        settings["storage"] = {"postgres": {"postgres_url": {"env": cfg.dagster.postgres_url_env}}}
    for section, values in (override or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


def write_instance_settings(cfg: PipelineConfig, home: Path, override: dict | None = None) -> Path:
    """Write :func:`instance_settings` as ``home/dagster.yaml`` (atomically: a daemon starting
    meanwhile reads the old file or the new one); returns its path."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    tmp = target.with_name(f".dagster.yaml.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(instance_settings(cfg, override), sort_keys=False))
    tmp.replace(target)
    return target


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

    @cached_property
    def report_files(self) -> ReportFiles:
        """Where reports are rendered and published (the storage root when there is one)."""
        return open_report_files(self.cfg, self.paths)

    @cached_property
    def batch_files(self) -> BatchFiles:
        """The inbox, archive and quarantine (on the storage root when there is one)."""
        return open_batch_files(self.cfg, self.paths)

    def aliases(self) -> dict[str, int]:
        """The registry's aliases now (read anew: a job run may just have moved them)."""
        return self.registry.aliases()
