"""What the registry records of a model beside its metrics (input schema, latency and memory
profile, library versions), and registering a fitted model with its interpretation."""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from assets.training.evaluation import holdout_standard_errors
from assets.training.interpretation import interpret
from features import FeatureSpec
from lake.registry import ModelRegistry
from serving.compiled import SCORER_FILE, compile_verified
from serving.model_io import model_frame


def input_schema(train: pd.DataFrame, spec: FeatureSpec, max_categories: int = 200) -> dict:
    """What a request must look like: the spec, categories seen and numeric ranges in training."""
    from dataclasses import asdict

    return {
        "spec": asdict(spec),
        "categories": {c: train[c].dropna().value_counts().index[:max_categories].tolist() for c in spec.categorical},
        "numeric_ranges": {c: [float(train[c].min()), float(train[c].max())] for c in spec.numeric
                           if train[c].notna().any()},
        "dtypes": {c: str(train[c].dtype) for c in spec.feature_columns},
    }


def latency_profile(model: Any, frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, float]:
    """Median single-row and 1,000-row predict time, and peak traced memory of a 1,000-row call."""
    x = model_frame(frame, spec, with_target=False)
    rows = x.sample(1000, replace=len(x) < 1000, random_state=0).reset_index(drop=True)
    singles = []
    for i in range(25):
        started = time.perf_counter()
        model.predict(rows.iloc[[i]])
        singles.append(time.perf_counter() - started)
    batches = []
    for _ in range(3):
        started = time.perf_counter()
        model.predict(rows)
        batches.append(time.perf_counter() - started)
    tracemalloc.start()
    model.predict(rows)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"latency_single_ms": 1000 * statistics.median(singles),
            "latency_batch_ms": 1000 * statistics.median(batches), "peak_memory_mb": peak / 2**20}


def library_versions() -> dict[str, str]:
    names = ("pycaret", "scikit-learn", "pandas", "numpy", "scipy", "lightgbm", "joblib", "deltalake", "pyarrow")
    return {"python": sys.version.split()[0], **{n: pkg_version(n) for n in names}}


def compiled_scorer(model: Any, holdout: pd.DataFrame, spec: FeatureSpec, row: dict, folder: Path) -> dict:
    """Compile the model, verify it against its pipeline on the hold-out and adversarial rows, and
    write ``scorer.joblib`` into ``folder`` when it passed; the registry row's ``scorer*`` fields."""
    schema = row.get("input_schema")
    schema = json.loads(schema) if isinstance(schema, str) else schema
    scorer, fields = compile_verified(model, spec, holdout, schema)
    if scorer is None:
        return {**fields, "scorer_sha256": None}
    data = scorer.state_bytes()
    (folder / SCORER_FILE).write_bytes(data)
    return {**fields, "scorer_sha256": hashlib.sha256(data).hexdigest()}


def register_model(registry: ModelRegistry, model: Any, holdout: pd.DataFrame, spec: FeatureSpec, row: dict) -> int:
    """Pickle the model, profile it, write its interpretation, and register it; returns the version.
    The row's ``gate`` gains ``holdout_rows`` and ``holdout_standard_errors`` (per hold-out metric)."""
    # staged beside the files' local side (the root itself, or an object store's cache), so that a
    # local registration hard-links instead of copying
    registry.files.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=registry.files.cache_dir) as tmp:
        artifact = Path(tmp) / "model.joblib"
        joblib.dump(model, artifact)
        written = interpret(model, holdout, spec, Path(tmp) / "interpretation")
        # the hold-out's size and sampling noise per metric: drift judges a later batch's metric
        # against them (assets/drift/compute.py: model_drift)
        gate = {**row.get("gate", {}), "holdout_rows": len(holdout),
                "holdout_standard_errors": holdout_standard_errors(model, holdout, spec,
                                                                   list(row.get("holdout_metrics", {})))}
        row = {**row, "gate": gate, **latency_profile(model, holdout, spec),
               "interpretation": {k: str(Path(v).relative_to(tmp)) for k, v in written.items()},
               **compiled_scorer(model, holdout, spec, row, Path(tmp))}
        return registry.register(artifact, row)
