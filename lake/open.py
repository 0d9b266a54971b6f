"""Opening the lake and the model registry of a configuration (no Dagster: the router, the command
line and the Dagster resource all open them the same way)."""

from __future__ import annotations

from config import PipelineConfig
from lake.batch_files import BatchFiles
from lake.delta import Lake
from lake.files import FileRoot
from lake.paths import DataPaths
from lake.registry import ModelRegistry
from lake.report_files import ReportFiles


def open_lake(cfg: PipelineConfig, paths: DataPaths) -> Lake:
    """The lake of a configuration: ``storage.lake_uri``, else ``<storage.root_uri>/lake``, else
    ``<data root>/lake``."""
    root = cfg.storage.lake_uri or (f"{cfg.storage.root_uri.rstrip('/')}/lake" if cfg.storage.root_uri
                                    else str(paths.lake))
    return Lake(root, cfg.storage.storage_options, cfg.storage.commit_retries, cfg.storage.checkpoint_interval)


def open_registry(cfg: PipelineConfig, paths: DataPaths) -> ModelRegistry:
    """The model registry of a configuration: its tables in the lake, its files under
    ``<storage.root_uri>/artifacts`` (fetched into ``<data root>/cache/artifacts`` when read) or
    the data root's ``artifacts/``."""
    return ModelRegistry(open_lake(cfg, paths), open_artifacts(cfg, paths))


def open_artifacts(cfg: PipelineConfig, paths: DataPaths) -> FileRoot:
    """The root of the model files of a configuration (see :func:`open_registry`)."""
    if cfg.storage.root_uri is None:
        return FileRoot(paths.artifacts)
    return FileRoot(f"{cfg.storage.root_uri.rstrip('/')}/artifacts", cfg.storage.storage_options,
                    cache_dir=paths.root / "cache" / "artifacts")


def open_shared_root(cfg: PipelineConfig, paths: DataPaths) -> FileRoot | None:
    """The storage root every machine shares (``storage.root_uri``), where the router replicas ship
    their closed request-log segments (:mod:`lake.log_shipping`); None on one machine, where the
    router's segments stay in the data root's ``events/`` folder and are ingested from there."""
    if cfg.storage.root_uri is None:
        return None
    return FileRoot(cfg.storage.root_uri.rstrip("/"), cfg.storage.storage_options,
                    cache_dir=paths.root / "cache" / "root")


def open_batch_files(cfg: PipelineConfig, paths: DataPaths) -> BatchFiles:
    """The inbox, archive and quarantine of a configuration: on the shared storage root
    (``storage.root_uri``) when there is one, so every machine sees the same batches, else in the
    data root (``data/inbox`` ...)."""
    shared = open_shared_root(cfg, paths)
    return BatchFiles(shared if shared is not None else FileRoot(paths.root))


def open_report_files(cfg: PipelineConfig, paths: DataPaths) -> ReportFiles:
    """The reports of a configuration: rendered into the data root's ``reports/`` and published to
    ``<storage.root_uri>/reports`` when there is a shared root (see :mod:`lake.report_files`)."""
    return ReportFiles(paths.reports, open_shared_root(cfg, paths))
