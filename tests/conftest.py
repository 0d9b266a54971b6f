"""Shared fixtures: a small synthetic dataset, its config, and a temporary data root."""

from __future__ import annotations

import copy
import gc
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from config import PipelineConfig, load_config
from lake.delta import Lake
from lake.paths import PYCARET_LOG_ENV, DataPaths, data_paths

# PyCaret's log of the whole test session, outside the repository (make test sets it too)
os.environ.setdefault(PYCARET_LOG_ENV, str(Path(tempfile.gettempdir()) / "lakehouse-tests-pycaret.log"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Garbage collection sized for this suite; it cost ~10 s of the fast lane, all of it full
    collections walking a heap of ~500,000 objects.

    Freeze what the imports and the collection allocated (dagster, pycaret, sklearn, ...: ~300,000
    objects) out of the collector's reach: PyCaret calls ``gc.collect()`` after every model it fits
    (ten calls per training run) and each walked that whole heap. A larger first-generation threshold
    (700 by default) makes the automatic full collections rare (~40 in a run, 0.2 s each, were ~2).
    Memory peaks ~70 MB higher."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def make_source(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Hourly rows in shuffled order: 2 categoricals, numerics with gaps, a yes/no target."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    temp = rng.normal(15, 8, n).round(2)
    temp[rng.random(n) < 0.05] = np.nan
    df = pd.DataFrame({
        "ts": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "city": rng.choice(["Oslo", "Rome", "Lima"], n),
        "plan": rng.choice(["basic", "pro"], n),
        "temp": temp,
        "amount": rng.gamma(2.0, 10.0, n).round(2),
        "visits": rng.integers(0, 20, n),
        "row_id": [f"r{i}" for i in range(n)],
    })
    df["churn"] = np.where((df["temp"].fillna(15) > 18) ^ (rng.random(n) < 0.1), "yes", "no")
    df.loc[rng.random(n) < 0.03, "plan"] = None  # missing categories reach the model pipeline too
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


BASE_CONFIG: dict[str, Any] = {
    "dataset": {
        "name": "toy",
        "task": "classification",
        "source": {"path": "source.csv"},
        "time_column": "ts",
        "target": "churn",
        "id_column": "row_id",
        "numeric": ["temp", "amount", "visits"],
        "categorical": ["city", "plan"],
        "text": [],
    },
    "stream": {"batch_by": "rows", "batch_rows": 300},
    "quality": {"ranges": {"temp": {"min": -30, "max": 45}}, "min_score": 0.5},
    "features": {"time_features": ["hour", "day_of_week", "is_weekend"]},
}


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(folder: Path, override: dict | None = None, source: pd.DataFrame | None = None) -> Path:
    """Write source.csv and pipeline.yaml into ``folder``; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    (make_source() if source is None else source).to_csv(folder / "source.csv", index=False)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(deep_merge(BASE_CONFIG, override or {}), sort_keys=False))
    return path


@pytest.fixture
def toy_config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cfg")


@pytest.fixture
def toy_cfg(toy_config_path: Path) -> PipelineConfig:
    return load_config(toy_config_path)


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return data_paths(tmp_path / "data").ensure()


@pytest.fixture
def lake(paths: DataPaths) -> Lake:
    return Lake(str(paths.lake))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the developer's data/ or config by accident."""
    monkeypatch.setenv("LAKEHOUSE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("LAKEHOUSE_CONFIG", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def two_model_template(tmp_path_factory: pytest.TempPathFactory):
    """The router tests' instance (prod v1, staging v3, fallback v4 on the toy stream), built once
    per session; each module takes its own copy (``Pipeline.copy_to``: the registry's paths are
    relative, so a copied data root serves its own files), instead of training the same models
    again in every module."""
    from tests.router.test_router import two_model_lakehouse

    return two_model_lakehouse(tmp_path_factory.mktemp("two-models"))
