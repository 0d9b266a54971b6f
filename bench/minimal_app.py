"""The smallest useful prediction endpoint: the baseline bench/router.py compares the router with.

Loads the prod model from the registry once per gunicorn worker (at import, like router.wsgi:
no preload), and ``POST /predict`` parses the JSON body, builds the one-row frame of the raw
features the way the router does (the model's input fields in schema order, then
:func:`serving.scoring.score_frame`) and returns the prediction. Nothing else: no validation, no
A/B split, no event log, no metrics, no access log.

    LAKEHOUSE_CONFIG=... LAKEHOUSE_DATA=... gunicorn -k gthread -w 2 --threads 4 \
        -b 127.0.0.1:8001 'bench.minimal_app:create_app()'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
from flask import Flask, Response, request

from config import PipelineConfig, load_config
from lake.open import open_registry
from lake.paths import data_paths
from serving.scoring import ServedModel, score_frame


def load_prod(cfg: PipelineConfig, data_root: str | None = None) -> ServedModel:
    """The prod model of the registry, sha256-checked, with its input schema."""
    paths = data_paths(data_root)
    registry = open_registry(cfg, paths)
    version = registry.aliases()["prod"]
    return ServedModel.from_registry_row(registry.get(version), registry.load(version))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def create_app(cfg: PipelineConfig | None = None, data_root: str | None = None) -> Flask:
    served = load_prod(cfg or load_config(), data_root)
    spec = served.spec
    fields = [spec.time_column, *spec.numeric, *spec.categorical, *spec.text]
    worker = os.getpid()  # which worker answered: keep-alive connections stick to one
    app = Flask(__name__)

    @app.get("/health")
    def health():
        return {"status": "ok", "version": served.version, "worker": worker}

    @app.post("/predict")
    def predict():
        features = json.loads(request.get_data())["features"]
        scored = score_frame(pd.DataFrame([{name: features.get(name) for name in fields}]), served)
        probability = scored["probability"].iloc[0] if "probability" in scored else None
        body = {"model_version": served.version, "worker": worker, "prediction": _plain(scored["predict"].iloc[0]),
                "probability": None if probability is None or pd.isna(probability) else float(probability)}
        return Response(json.dumps(body), mimetype="application/json")

    return app

