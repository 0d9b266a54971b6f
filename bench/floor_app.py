"""The physical floor of serving one model over HTTP: a minimal Flask app under gunicorn that runs
only the estimator on rows already transformed into its input matrix.

``POST /predict`` takes ``{"x": [[float, ...], ...]}`` (one or many rows of the model matrix, as
``CompiledScorer.matrix`` builds them) and answers the estimator's outputs through the compiled
scorer's kernel (LightGBM's booster, the trees' own predictor, a dot product): no validation, no
typing, no features, no preprocessing, no log, no metrics. What a Python WSGI server can do with
this model at all; bench/serving_peers.py measures the router and MLflow against it.

    LAKEHOUSE_CONFIG=... LAKEHOUSE_DATA=... gunicorn -k gthread -w 2 --threads 4 \
        -b 127.0.0.1:8002 'bench.floor_app:create_app()'
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from flask import Flask, Response, request

from config import load_config
from lake.open import open_registry
from lake.paths import data_paths
from serving.scoring import ServedModel


def load_kernel(data_root: str | None = None):
    """The prod model's compiled kernel (the estimator bound to its fast predictor)."""
    registry = open_registry(load_config(), data_paths(data_root))
    served = ServedModel.load(registry, registry.aliases()["prod"])
    if served.scorer is None:
        raise SystemExit(f"prod v{served.version} has no compiled scorer ({served.scoring}): no floor to measure")
    return served.scorer.kernel


def create_app(data_root: str | None = None) -> Flask:
    kernel = load_kernel(data_root or os.environ.get("LAKEHOUSE_DATA"))
    app = Flask(__name__)

    @app.get("/health")
    def health() -> Response:
        return Response("{}", mimetype="application/json")

    @app.post("/predict")
    def predict() -> Response:
        x = np.asarray(json.loads(request.get_data())["x"], dtype=np.float64)
        return Response(json.dumps({"outputs": kernel.outputs(x).tolist(), "worker": os.getpid()}),
                        mimetype="application/json")

    return app
