"""Configuration: the pydantic model and its loader (``load_config``)."""

from config.loader import DEFAULT_CONFIG_PATH, ConfigError, config_hash, load_config, resolve_config_path
from config.schema import PipelineConfig

__all__ = ["DEFAULT_CONFIG_PATH", "ConfigError", "PipelineConfig", "config_hash", "load_config",
           "resolve_config_path"]
