"""Load and validate a configuration file; a bad file fails at once naming the key."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.schema import PipelineConfig

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "pipeline.yaml"
CONFIG_ENV = "LAKEHOUSE_CONFIG"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or does not match the schema."""


def resolve_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: the argument, else ``$LAKEHOUSE_CONFIG``, else the default."""
    chosen = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    return Path(chosen).expanduser().resolve()


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({exc.error_count()} error(s)):"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {key}: {err['msg']}{shown}")
    return "\n".join(lines)


def _absolutize_sources(raw: dict[str, Any], base: Path) -> None:
    """Resolve relative source paths against the config file's folder (not the cwd)."""
    dataset = raw.get("dataset")
    if not isinstance(dataset, dict):
        return
    sources = [dataset.get("source")] + [j.get("source") for j in dataset.get("joins") or []
                                         if isinstance(j, dict)]
    for src in sources:
        if isinstance(src, dict) and not src.get("package") and isinstance(src.get("path"), str):
            p = Path(src["path"]).expanduser()
            src["path"] = str(p if p.is_absolute() else (base / p).resolve())


def load_config(path: str | os.PathLike[str] | None = None) -> PipelineConfig:
    """Read, resolve and validate a YAML configuration file.

    Raises :class:`ConfigError` with one line per problem, each naming the dotted key.
    """
    cfg_path = resolve_config_path(path)
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{cfg_path}: cannot read configuration file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{cfg_path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: expected a mapping at the top level, got {type(raw).__name__}")
    _absolutize_sources(raw, cfg_path.parent)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(cfg_path, exc)) from exc


def config_hash(cfg: PipelineConfig) -> str:
    """A stable sha256 of the validated configuration (for lineage in tables and the registry)."""
    payload = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()
