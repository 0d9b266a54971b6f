"""``create_app(config)``: the Flask A/B router.

Views are thin: they parse the body with the pydantic models of :mod:`router.schemas`, check the
features with :mod:`router.validation`, pick the variant with :mod:`router.split`, score with
:mod:`serving.scoring` (the same path as batch inference), write the event to the request log and
only then answer. Bad input always gets a JSON 4xx naming the field; a 5xx means a fault of ours.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import swagger_ui_bundle
from flask import Flask, Response, abort, jsonify, request, send_from_directory
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from config import PipelineConfig, load_config
from lake.experiments import ExperimentStore
from lake.open import open_registry
from lake.paths import DataPaths, data_paths
from router import metrics
from router.event_log import EventLog
from router.model_pool import ModelPool, PoolState
from router.schemas import (
    FeedbackRequest,
    PredictBatchRequest,
    PredictRequest,
    SplitRequest,
    openapi_document,
)
from router.split import B, assign
from router.validation import Checked, Problem, RequestInvalid, check_features, expected_fields
from serving.model_io import class_labels
from serving.scoring import ServedModel, score_frame

log = logging.getLogger(__name__)


@dataclass
class RouterContext:
    cfg: PipelineConfig
    paths: DataPaths
    pool: ModelPool
    events: EventLog
    admin_token: str | None


def create_app(cfg: PipelineConfig | None = None, data_root: str | None = None, *, poll: bool = True) -> Flask:
    """The router bound to one configuration and data root (the lake, the registry, the event log)."""
    cfg = cfg or load_config()
    paths = data_paths(data_root).ensure()
    registry = open_registry(cfg, paths)
    pool = ModelPool(registry, cfg.router.default_split_b, actor=f"router:{os.getpid()}")
    pool.on_swap = _record_swap
    try:
        pool.reload()
    except Exception as exc:  # start anyway: /health?ready=1 says why, the poller retries
        pool.last_error = f"{type(exc).__name__}: {exc}"
        log.exception("could not load the models at start")
    if poll:
        pool.start_polling(cfg.router.reload_poll_seconds)
    ctx = RouterContext(cfg, paths, pool, EventLog(paths.events, cfg.router.event_log),
                        os.environ.get(cfg.router.admin_token_env) or None)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.router.max_body_bytes
    app.json.sort_keys = False
    app.extensions["lakehouse"] = ctx
    _routes(app, ctx)
    return app


def _record_swap(state: PoolState) -> None:
    metrics.SWAPS.inc()
    for alias, version in state.aliases.items():
        metrics.SERVED_VERSION.labels(alias).set(version)


# ---- helpers ---------------------------------------------------------------------------------
def _error(status: int, message: str, problems: list[Problem] | None = None) -> tuple[Response, int]:
    return jsonify({"error": message, "errors": [{"field": p.field, "problem": p.problem}
                                                 for p in problems or []]}), status


def _body(model: type[BaseModel]) -> Any:
    """Parse the JSON body into ``model``; RequestInvalid (415 / 400 / 422) otherwise."""
    if request.mimetype != "application/json":
        raise RequestInvalid([Problem("body", f"expected Content-Type application/json, got "
                                              f"{request.mimetype or 'none'!r}")], status=415)
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestInvalid([Problem("body", f"not valid JSON: {exc}")], status=400) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid([Problem(".".join(str(x) for x in err["loc"]) or "body", err["msg"])
                              for err in exc.errors()]) from exc


def _abort(status: int, message: str, field: str, problem: str, headers: dict | None = None) -> None:
    abort(Response(json.dumps({"error": message, "errors": [{"field": field, "problem": problem}]}), status,
                   mimetype="application/json", headers=headers))


def _require_admin(ctx: RouterContext) -> None:
    """Bearer token from the environment, compared in constant time; no token set: disabled."""
    if ctx.admin_token is None:
        _abort(403, "admin routes are disabled", "Authorization",
               f"set {ctx.cfg.router.admin_token_env} in the router's environment to enable them")
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        _abort(401, "missing bearer token", "Authorization", "expected 'Bearer <token>'",
               {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(header[len("Bearer "):].encode(), ctx.admin_token.encode()):
        _abort(403, "wrong bearer token", "Authorization", "the token does not match")


def _json_scalar(value: Any) -> Any:
    """numpy / pandas scalars -> plain JSON values."""
    if hasattr(value, "item"):
        value = value.item()
    return value


@dataclass
class Planned:
    row: PredictRequest
    checked: Checked
    variant: str
    served: ServedModel
    model_used: str
    fallback_reason: str | None
    error: str | None = None  # the assigned model raised (see _score)


def _plan(state: PoolState, rows: list[PredictRequest], ctx: RouterContext, prefix: str) -> list[Planned]:
    """Variant, validation and model choice of every row; RequestInvalid names all bad fields."""
    experiment = state.running
    planned, problems = [], []
    for i, row in enumerate(rows):
        variant = assign(experiment.experiment_id if experiment else None, row.user_id,
                         experiment.ab_split_b if experiment else 0.0)
        served = state.staging if variant == B and state.staging is not None else state.prod
        try:
            checked = check_features(row.features, served.schema, ctx.cfg.router,
                                     prefix=f"{prefix}{i}.features" if prefix else "features")
        except RequestInvalid as exc:
            problems += exc.problems
            continue
        reason = checked.fallback_reason(ctx.cfg.router, len(served.spec.numeric))
        used = "staging" if served is not state.prod else "prod"
        if reason and state.fallback is not None:
            served, used = state.fallback, "fallback"
        planned.append(Planned(row, checked, variant, served, used, reason if used == "fallback" else None))
    if problems:
        raise RequestInvalid(problems)
    return planned


def _score_group(served: ServedModel, rows: list[Planned]) -> list[tuple[Any, float | None]]:
    """Predictions of rows that one model serves, in one call."""
    frame = pd.DataFrame([{name: p.checked.values.get(name) for name in expected_fields(served.schema)}
                          for p in rows])
    scored = score_frame(frame, served)
    bad = scored["error"] != ""
    if bad.any():  # validation should have caught it: name the row and the reason
        raise RequestInvalid([Problem("features", str(e)) for e in scored.loc[bad, "error"]])
    proba = scored["probability"] if "probability" in scored else pd.Series([None] * len(scored))
    return [(_json_scalar(scored["predict"].iloc[j]), None if proba.iloc[j] is None or pd.isna(proba.iloc[j])
             else float(proba.iloc[j])) for j in range(len(rows))]


class ModelFailed(RuntimeError):
    """The assigned model raised and no other model could answer: the rows are logged as errors
    (they count in the variant's error rate) and the request gets a 500 naming the model."""


def _score(planned: list[Planned], fallback: ServedModel | None) -> list[tuple[Any, float | None]]:
    """Predictions of the planned rows, scored per served model in one call each.

    A model that raises (a bug in its pipeline, a dependency missing for a new artifact) is an
    *error of its variant*: its rows are answered by the fallback model when there is one (marked
    ``model_used=fallback``, ``error`` set), and otherwise fail the request with :class:`ModelFailed`.
    Either way the error is logged and lands in `ab_events`, where the A/B guardrail on B's error
    rate reads it.
    """
    out: list[tuple[Any, float | None]] = [(None, None)] * len(planned)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(planned):
        groups.setdefault(id(p.served), []).append(i)
    for idx in groups.values():
        served = planned[idx[0]].served
        rows = [planned[i] for i in idx]
        try:
            scores = _score_group(served, rows)
        except RequestInvalid:
            raise
        except Exception as exc:  # any model failure is counted, then rescued or re-raised
            error = f"{planned[idx[0]].model_used} v{served.version}: {type(exc).__name__}: {exc}"[:500]
            log.exception("model %s v%s failed on %d row(s)", planned[idx[0]].model_used, served.version, len(idx))
            for p in rows:
                metrics.MODEL_ERRORS.labels(p.variant, p.model_used).inc()
                p.error = error
            if fallback is None or served is fallback:
                raise ModelFailed(error) from exc
            try:
                scores = _score_group(fallback, rows)
            except Exception as again:  # both failed: the request fails, the rows are logged
                log.exception("fallback v%s failed too on %d row(s)", fallback.version, len(idx))
                raise ModelFailed(f"{error}; fallback v{fallback.version}: {type(again).__name__}: {again}") \
                    from again
            for p in rows:
                p.served, p.model_used, p.fallback_reason = fallback, "fallback", "model error"
        for j, i in enumerate(idx):
            out[i] = scores[j]
    return out


def _shadow(state: PoolState, planned: list[Planned], share: float) -> dict[int, dict]:
    """For a sampled ``share`` of the rows answered by prod or staging, the other variant's answer
    (logged for the paired tests, never returned)."""
    if share <= 0 or state.staging is None:
        return {}
    picked = [i for i, p in enumerate(planned)
              if p.model_used != "fallback" and secrets.randbelow(10**6) < share * 10**6]
    groups: dict[int, list[int]] = {}  # one model call per shadow model, as for the answers
    for i in picked:
        groups.setdefault(id(state.staging if planned[i].served is state.prod else state.prod), []).append(i)
    out: dict[int, dict] = {}
    for idx in groups.values():
        other = state.staging if planned[idx[0]].served is state.prod else state.prod
        shadows = [Planned(planned[i].row, planned[i].checked, planned[i].variant, other, "shadow", None)
                   for i in idx]
        try:
            scores = _score_group(other, shadows)
        except Exception:  # the shadow is never answered: count it, keep the request
            for i in idx:
                metrics.MODEL_ERRORS.labels(planned[i].variant, "shadow").inc()
            log.exception("shadow scoring by v%s failed; %d row(s) answered without a shadow", other.version,
                          len(idx))
            continue
        for i, (prediction, probability) in zip(idx, scores, strict=True):
            out[i] = {"model_version": other.version, "prediction": prediction, "probability": probability}
    return out


def _log_failed(ctx: RouterContext, state: PoolState, planned: list[Planned], started: float) -> None:
    """Log the rows of a request that failed on a model error (never answered, so no label will
    follow): they are the numerator of the variant's error rate."""
    experiment = state.running
    for p in (p for p in planned if p.error):
        event = {"type": "prediction", "request_id": uuid.uuid4().hex, "variant": p.variant,
                 "experiment_id": experiment.experiment_id if experiment else None,
                 "model_version": p.served.version, "model_used": "none", "fallback_reason": None,
                 "prediction": None, "probability": None,
                 "latency_ms": round(1000 * (time.perf_counter() - started), 3),
                 "time": datetime.now(UTC).isoformat(), "user_id": p.row.user_id, "features": p.row.features,
                 "worker": ctx.events.writer_id, "error": p.error}
        try:
            ctx.events.append(event)
        except (OSError, ValueError):
            metrics.LOG_FAILURES.labels("error").inc()
            log.exception("request log write failed for the error event of %s", event["request_id"])


def _predict(ctx: RouterContext, rows: list[PredictRequest], endpoint: str, prefix: str = "") -> list[dict]:
    state = ctx.pool.state
    if state is None:
        raise RequestInvalid([Problem("model", ctx.pool.last_error or "no model loaded yet")], status=503)
    started = time.perf_counter()
    planned = _plan(state, rows, ctx, prefix)
    try:
        scores = _score(planned, state.fallback)
    except ModelFailed as exc:
        _log_failed(ctx, state, planned, started)
        raise RequestInvalid([Problem("model", f"the model failed and no fallback could answer: {exc}")],
                             status=500) from exc
    experiment = state.running
    shadows = _shadow(state, planned, ctx.cfg.router.shadow_share) if experiment else {}
    results = []
    for i, (p, (prediction, probability)) in enumerate(zip(planned, scores, strict=True)):
        result = {"request_id": uuid.uuid4().hex, "variant": p.variant,
                  "experiment_id": experiment.experiment_id if experiment else None,
                  "model_version": p.served.version, "model_used": p.model_used,
                  "fallback_reason": p.fallback_reason, "prediction": prediction, "probability": probability,
                  "latency_ms": round(1000 * (time.perf_counter() - started), 3)}
        event = {"type": "prediction", **result, "time": datetime.now(UTC).isoformat(), "user_id": p.row.user_id,
                 "features": p.row.features, "worker": ctx.events.writer_id, "error": p.error}
        if i in shadows:
            event["shadow"] = shadows[i]
        try:
            ctx.events.append(event)  # in the OS before we answer: a killed worker loses nothing answered
        except (OSError, ValueError) as exc:
            metrics.LOG_FAILURES.labels("prediction").inc()
            log.exception("request log write failed; refusing to answer %s", result["request_id"])
            raise RequestInvalid([Problem("log", f"the request log could not be written ({exc}); nothing was "
                                                 "answered, retry")], status=503) from exc
        results.append(result)
        metrics.PREDICTIONS.labels(p.variant, p.model_used).observe(
            probability if probability is not None else float(prediction)
            if isinstance(prediction, int | float) and not isinstance(prediction, bool) else 0.0)
        if p.served.spec.task == "classification":
            metrics.PREDICTED_CLASS.labels(p.variant, str(prediction)).inc()
        if p.model_used == "fallback":
            metrics.FALLBACKS.labels(p.variant).inc()
    return results


def _label_problem(label: Any, state: PoolState) -> str | None:
    if state.prod.spec.task == "regression":
        if isinstance(label, bool) or not isinstance(label, int | float):
            return f"expected a number for a regression target, got {type(label).__name__}"
        return None
    if isinstance(label, float) and not float(label).is_integer():
        return f"expected a class label, got {label}"
    classes = [_json_scalar(c) for c in class_labels(state.prod.model)]
    if isinstance(label, bool) or str(int(label) if isinstance(label, float) else label) not in map(str, classes):
        return f"unknown class {label!r}: expected one of {classes} (the model's classes, see GET /model_info)"
    return None


# ---- routes ----------------------------------------------------------------------------------
def _routes(app: Flask, ctx: RouterContext) -> None:
    docs_dir = Path(swagger_ui_bundle.swagger_ui_path)

    @app.errorhandler(RequestInvalid)
    def invalid(exc: RequestInvalid):
        return _error(exc.status, str(exc) if exc.status != 422 else "invalid request", exc.problems)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc.response, Response):
            return exc.response
        field = "body" if exc.code == 413 else "path"
        message = (f"body larger than {ctx.cfg.router.max_body_bytes} bytes" if exc.code == 413
                   else exc.description or exc.name)
        return _error(exc.code or 500, exc.name, [Problem(field, message)])

    @app.errorhandler(Exception)
    def fault(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.after_request
    def count(response: Response) -> Response:
        if request.endpoint and request.endpoint not in ("metrics_view", "docs_static"):
            metrics.REQUESTS.labels(request.endpoint, getattr(request, "lakehouse_variant", "-"),
                                    str(response.status_code)).inc()
            started = getattr(request, "lakehouse_started", None)
            if started is not None:
                metrics.LATENCY.labels(request.endpoint, getattr(request, "lakehouse_variant", "-")).observe(
                    time.perf_counter() - started)
        return response

    @app.before_request
    def stamp() -> None:
        request.lakehouse_started = time.perf_counter()

    @app.get("/health")
    def health():
        state = ctx.pool.state
        if request.args.get("ready") is None:
            return jsonify({"status": "ok"})
        if state is None:
            return jsonify({"status": "not ready", "ready": False, "reason": ctx.pool.last_error}), 503
        return jsonify({"status": "ready", "ready": True, "models": state.aliases,
                        **({"warning": ctx.pool.last_error} if ctx.pool.last_error else {})})

    @app.get("/model_info")
    def model_info():
        state = ctx.pool.state
        if state is None:
            return _error(503, "not ready", [Problem("model", ctx.pool.last_error or "no model loaded yet")])
        running = state.running

        def describe(served: ServedModel | None) -> dict | None:
            if served is None:
                return None
            row = state.rows[served.version]
            schema = served.schema
            return {"version": served.version, "algorithm": row["algorithm"], "variant": row["variant"],
                    "task": served.spec.task, "metric": row["metric"],
                    "cv_metrics": json.loads(row["cv_metrics"]), "holdout_metrics": json.loads(row["holdout_metrics"]),
                    "created_at": str(row["created_at"]),
                    "classes": [_json_scalar(c) for c in class_labels(served.model)]
                    if served.spec.task == "classification" else None,
                    "input_schema": {"fields": expected_fields(schema), "categories": schema.get("categories", {}),
                                     "numeric_ranges": schema.get("numeric_ranges", {})}}

        return jsonify({"prod": describe(state.prod), "staging": describe(state.staging),
                        "fallback": describe(state.fallback), "aliases": state.aliases,
                        "experiment": {"experiment_id": running.experiment_id, "ab_split_b": running.ab_split_b,
                                       "prod_version": running.prod_version,
                                       "staging_version": running.staging_version} if running else None,
                        "ab_split_b": running.ab_split_b if running else 0.0,
                        "loaded_at": datetime.fromtimestamp(state.loaded_at, UTC).isoformat()})

    @app.get("/metrics")
    def metrics_view():
        text, content_type = metrics.exposition()
        return Response(text, mimetype=content_type.split(";")[0], headers={"Content-Type": content_type})

    @app.post("/predict")
    def predict():
        body = _body(PredictRequest)
        [result] = _predict(ctx, [body], "predict")
        request.lakehouse_variant = result["variant"]
        return jsonify(result)

    @app.post("/predict_batch")
    def predict_batch():
        body = _body(PredictBatchRequest)
        limit = ctx.cfg.router.max_batch_rows
        if len(body.rows) > limit:
            raise RequestInvalid([Problem("rows", f"{len(body.rows)} rows, at most {limit} per call")], status=413)
        return jsonify({"results": _predict(ctx, body.rows, "predict_batch", prefix="rows.")})

    @app.post("/feedback")
    def feedback():
        body = _body(FeedbackRequest)
        state = ctx.pool.state
        if state is None:
            raise RequestInvalid([Problem("model", ctx.pool.last_error or "no model loaded yet")], status=503)
        problem = _label_problem(body.label, state)
        if problem:
            raise RequestInvalid([Problem("label", problem)])
        feedback_id = uuid.uuid4().hex
        event = {"type": "feedback", "feedback_id": feedback_id, "request_id": body.request_id,
                 "time": datetime.now(UTC).isoformat(), "label": body.label, "worker": ctx.events.writer_id}
        try:
            ctx.events.append(event)
        except (OSError, ValueError) as exc:
            metrics.LOG_FAILURES.labels("feedback").inc()
            log.exception("request log write failed for feedback on %s", body.request_id)
            raise RequestInvalid([Problem("log", f"the request log could not be written ({exc}); retry")],
                                 status=503) from exc
        return jsonify({"feedback_id": feedback_id, "request_id": body.request_id, "accepted": True})

    @app.put("/admin/split")
    def admin_split():
        _require_admin(ctx)
        body = _body(SplitRequest)
        try:
            experiment = ExperimentStore(ctx.pool.registry.lake).set_split(
                body.ab_split_b, actor=f"router admin ({request.remote_addr})", reason=body.reason)
        except LookupError as exc:
            return _error(409, str(exc), [Problem("ab_split_b", "no running experiment")])
        ctx.pool.reload(force=True)
        return jsonify({"experiment_id": experiment.experiment_id, "prod_version": experiment.prod_version,
                        "staging_version": experiment.staging_version, "ab_split_b": experiment.ab_split_b,
                        "status": experiment.status})

    @app.post("/admin/reload")
    def admin_reload():
        _require_admin(ctx)
        state = ctx.pool.reload(force=True)
        if state is None:
            return _error(503, "not ready", [Problem("model", ctx.pool.last_error or "no prod model")])
        running = state.running
        return jsonify({"aliases": state.aliases, "experiment_id": running.experiment_id if running else None,
                        "ab_split_b": running.ab_split_b if running else 0.0})

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_document(f"{ctx.cfg.dataset.name} A/B router", "1.0"))

    @app.get("/docs")
    def docs():
        return Response(_DOCS_PAGE, mimetype="text/html")

    @app.get("/docs/<path:name>")
    def docs_static(name: str):
        return send_from_directory(docs_dir, name)


_DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>A/B router API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""
