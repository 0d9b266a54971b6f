"""The router's HTTP views, in one blueprint: each parses its body with the pydantic models of
:mod:`router.schemas` and hands the work to Flask-free code (:mod:`router.plan` for predictions,
:mod:`lake.experiments` for the split, :mod:`router.model_pool` for reloads).

Bad input always gets a JSON 4xx naming the field; a 5xx means a fault of ours. Every answer is
counted in ``router_requests_total`` under the view's name (``predict``, ``feedback``, ...).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from flask import Blueprint, Response, abort, current_app, jsonify, request, send_from_directory
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from config import PipelineConfig
from lake.experiments import ExperimentStore
from lake.paths import DataPaths
from lake.report_files import REPORT_ASSETS, ReportFiles
from lake.request_log import feedback_event
from router import metrics
from router.event_log import EventLog
from router.log_shipper import LogShipper
from router.model_pool import ModelPool
from router.plan import json_scalar, label_problem, predict
from router.reports import REALM as REPORTS_REALM
from router.reports import index_page as reports_index_page
from router.reports import presented_secret
from router.schemas import (
    FeedbackBatchRequest,
    FeedbackRequest,
    PredictBatchRequest,
    PredictRequest,
    SplitRequest,
    openapi_document,
)
from router.ui import questionnaire_page
from router.validation import Problem, RequestInvalid, example_features, expected_fields
from serving.model_io import class_labels
from serving.scoring import ServedModel

log = logging.getLogger(__name__)

bp = Blueprint("router", __name__)
DOCS_DIR = Path(swagger_ui_bundle.swagger_ui_path)
UNCOUNTED = ("metrics_view", "docs_static")  # scrapes and static files are not traffic


@dataclass
class RouterContext:
    """What the views work with: the configuration, the data root, the models, the request log and
    the admin token (None: admin routes disabled) and the feedback token (None: feedback open).
    Kept in ``app.extensions["lakehouse"]``."""

    cfg: PipelineConfig
    paths: DataPaths
    pool: ModelPool
    events: EventLog
    admin_token: str | None
    feedback_token: str | None = None
    shipper: LogShipper | None = None  # storage.root_uri set: ships closed segments to the shared root
    reports: ReportFiles | None = None  # where the jobs publish the HTML reports (router.reports)
    reports_token: str | None = None  # None: /reports open


def _ctx() -> RouterContext:
    return current_app.extensions["lakehouse"]


def _view_name() -> str | None:
    """The view's own name, without the blueprint's prefix: the metrics' ``endpoint`` label."""
    return request.endpoint.rpartition(".")[2] if request.endpoint else None


# ---- helpers ---------------------------------------------------------------------------------
def _error(status: int, message: str, problems: list[Problem] | None = None) -> tuple[Response, int]:
    return jsonify({"error": message, "errors": [{"field": p.field, "problem": p.problem}
                                                 for p in problems or []]}), status


def _body(model: type[BaseModel]) -> Any:
    """Parse the JSON body into ``model``; RequestInvalid (415 / 400 / 422) otherwise."""
    if request.mimetype != "application/json":
        raise RequestInvalid([Problem("body", f"expected Content-Type application/json, got "
                                              f"{request.mimetype or 'none'!r}")], status=415)
    raw = request.get_data(cache=False)  # raises 413 when the Content-Length is past MAX_CONTENT_LENGTH
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # a chunked body has no length to check first: werkzeug stops reading it at the limit and hands
        # over the cut body (which then failed as invalid JSON, a 400); reaching the limit is too large
        raise RequestInvalid([Problem("body", f"chunked body of {limit} bytes or more (limit {limit})")],
                             status=413)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestInvalid([Problem("body", f"not valid JSON: {exc}")], status=400) from exc
    except RecursionError as exc:  # '[' x 50,000: deeper than the parser recurses; no body of ours nests > 3
        raise RequestInvalid([Problem("body", "JSON nested too deeply (a request body nests at most 3 levels)")],
                             status=400) from exc
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
    _require_bearer(ctx.admin_token)


def _require_bearer(token: str) -> None:
    """401 without a bearer token, 403 with another one (compared in constant time)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        _abort(401, "missing bearer token", "Authorization", "expected 'Bearer <token>'",
               {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(header[len("Bearer "):].encode(), token.encode()):
        _abort(403, "wrong bearer token", "Authorization", "the token does not match")


def _require_feedback_token(ctx: RouterContext) -> None:
    """Labels decide promotions: with ``router.feedback_token_env`` set, only its holders send them."""
    if ctx.feedback_token is not None:
        _require_bearer(ctx.feedback_token)


def _not_ready(ctx: RouterContext) -> RequestInvalid:
    return RequestInvalid([Problem("model", ctx.pool.last_error or "no model loaded yet")], status=503)


# ---- errors and accounting -------------------------------------------------------------------
@bp.app_errorhandler(RequestInvalid)
def invalid(exc: RequestInvalid):
    return _error(exc.status, str(exc) if exc.status != 422 else "invalid request", exc.problems)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    if isinstance(exc.response, Response):
        return exc.response
    field = "body" if exc.code == 413 else "path"
    message = (f"body larger than {_ctx().cfg.router.max_body_bytes} bytes" if exc.code == 413
               else exc.description or exc.name)
    response, status = _error(exc.code or 500, exc.name, [Problem(field, message)])
    for name, value in exc.get_headers():  # e.g. a 405's Allow: the methods the path takes
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


@bp.app_errorhandler(Exception)
def fault(exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error(500, f"internal error: {type(exc).__name__}")


@bp.before_app_request
def stamp() -> None:
    request.lakehouse_started = time.perf_counter()


@bp.after_app_request
def count(response: Response) -> Response:
    name = _view_name()
    if name and name not in UNCOUNTED:
        variant = getattr(request, "lakehouse_variant", "-")
        metrics.REQUESTS.labels(name, variant, str(response.status_code)).inc()
        started = getattr(request, "lakehouse_started", None)
        if started is not None:
            metrics.LATENCY.labels(name, variant).observe(time.perf_counter() - started)
    return response


# ---- views -----------------------------------------------------------------------------------
@bp.get("/health")
def health():
    ctx = _ctx()
    state = ctx.pool.state
    if request.args.get("ready") is None:
        return jsonify({"status": "ok"})
    if state is None:
        return jsonify({"status": "not ready", "ready": False, "reason": ctx.pool.last_error}), 503
    warnings = [w for w in (ctx.pool.last_error, ctx.shipper and ctx.shipper.last_error) if w]
    return jsonify({"status": "ready", "ready": True, "models": state.aliases, "prod_alias": state.prod_alias,
                    "disabled": state.disabled, **({"warning": "; ".join(warnings)} if warnings else {})})


@bp.get("/model_info")
def model_info():
    ctx = _ctx()
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
                # compiled (verified equal to the pipeline at registration) or the pipeline, and why
                "scoring": served.scoring,
                "classes": [json_scalar(c) for c in class_labels(served.model)]
                if served.spec.task == "classification" else None,
                "input_schema": {"fields": expected_fields(schema), "categories": schema.get("categories", {}),
                                 "numeric_ranges": schema.get("numeric_ranges", {})}}

    return jsonify({"prod": describe(state.prod), "staging": describe(state.staging),
                    "fallback": describe(state.fallback), "aliases": state.aliases,
                    "experiment": {"experiment_id": running.experiment_id, "ab_split_b": running.ab_split_b,
                                   "prod_version": running.prod_version,
                                   "staging_version": running.staging_version} if running else None,
                    "ab_split_b": running.ab_split_b if running else 0.0,
                    "prod_alias": state.prod_alias, "disabled": state.disabled,
                    "feedback_auth": "bearer token" if ctx.feedback_token is not None else
                    f"open to any caller (set {ctx.cfg.router.feedback_token_env} to require a token)",
                    "loaded_at": datetime.fromtimestamp(state.loaded_at, UTC).isoformat()})


@bp.get("/metrics")
def metrics_view():
    text, content_type = metrics.exposition()
    return Response(text, mimetype=content_type.split(";")[0], headers={"Content-Type": content_type})


@bp.post("/predict", endpoint="predict")  # the metrics' label; `predict` itself is router.plan's
def predict_one():
    ctx = _ctx()
    body = _body(PredictRequest)
    later: list = []
    [answer] = predict(ctx.pool, [body], ctx.cfg.router, ctx.events, defer=later.append)
    request.lakehouse_variant = answer["variant"]
    return _after_sending(jsonify(answer), later)


def _after_sending(response: Response, jobs: list) -> Response:
    """Run ``jobs`` (shadow scoring) when the server closes the response, i.e. after the answer's
    bytes were written: the caller never waits for them (gunicorn, werkzeug and the test client
    all call ``close``)."""
    for job in jobs:
        response.call_on_close(job)
    return response


@bp.post("/predict_batch")
def predict_batch():
    ctx = _ctx()
    body = _body(PredictBatchRequest)
    limit = ctx.cfg.router.max_batch_rows
    if len(body.rows) > limit:
        raise RequestInvalid([Problem("rows", f"{len(body.rows)} rows, at most {limit} per call")], status=413)
    later: list = []
    answers = predict(ctx.pool, body.rows, ctx.cfg.router, ctx.events, prefix="rows.", defer=later.append)
    return _after_sending(jsonify({"results": answers}), later)


@bp.post("/feedback")
def feedback():
    ctx = _ctx()
    _require_feedback_token(ctx)
    [answer] = _log_feedback(ctx, [_body(FeedbackRequest)], prefix="")
    return jsonify(answer)


@bp.post("/feedback_batch")
def feedback_batch():
    ctx = _ctx()
    _require_feedback_token(ctx)
    body = _body(FeedbackBatchRequest)
    limit = ctx.cfg.router.max_batch_rows
    if len(body.items) > limit:
        raise RequestInvalid([Problem("items", f"{len(body.items)} items, at most {limit} per call")], status=413)
    return jsonify({"results": _log_feedback(ctx, body.items, prefix="items.")})


def _log_feedback(ctx: RouterContext, items: list[FeedbackRequest], prefix: str) -> list[dict[str, Any]]:
    """Check every label against the served models' classes (422 naming each bad one), then log all
    the feedback events in one write, before answering: all are accepted, or none (503)."""
    state = ctx.pool.state
    if state is None:
        raise _not_ready(ctx)
    problems = [Problem(f"{prefix}{i}.label" if prefix else "label", problem) for i, item in enumerate(items)
                if (problem := label_problem(item.label, state))]
    if problems:
        raise RequestInvalid(problems)
    events = [feedback_event(feedback_id=uuid.uuid4().hex, request_id=item.request_id, label=item.label,
                             worker=ctx.events.writer_id) for item in items]
    try:
        ctx.events.append_many(events)
    except (OSError, ValueError) as exc:
        metrics.LOG_FAILURES.labels("feedback").inc(len(events))
        log.exception("request log write failed for feedback on %s", [item.request_id for item in items][:5])
        raise RequestInvalid([Problem("log", f"the request log could not be written ({exc}); nothing was "
                                             "accepted, retry")], status=503) from exc
    return [{"feedback_id": e["feedback_id"], "request_id": e["request_id"], "accepted": True} for e in events]


@bp.put("/admin/split")
def admin_split():
    ctx = _ctx()
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


@bp.post("/admin/reload")
def admin_reload():
    ctx = _ctx()
    _require_admin(ctx)
    state = ctx.pool.reload(force=True)
    if state is None:
        return _error(503, "not ready", [Problem("model", ctx.pool.last_error or "no prod model")])
    running = state.running
    return jsonify({"aliases": state.aliases, "experiment_id": running.experiment_id if running else None,
                    "ab_split_b": running.ab_split_b if running else 0.0})


@bp.get("/ui")
def ui():
    ctx = _ctx()
    state = ctx.pool.state
    if state is None or state.prod is None:
        return _error(503, "not ready", [Problem("model", ctx.pool.last_error or "no prod model")])
    served = state.prod
    classes = [json_scalar(c) for c in class_labels(served.model)] if served.spec.task == "classification" else None
    page = questionnaire_page(f"{ctx.cfg.dataset.name}: ask the model", served.version, served.schema, classes)
    return Response(page, mimetype="text/html")


def _require_reports_token(ctx: RouterContext) -> None:
    """With a reports token: a browser is asked for it (HTTP Basic), a program sends it as a bearer."""
    if ctx.reports_token is None:
        return
    secret = presented_secret(request.headers.get("Authorization", ""))
    if secret is None:
        _abort(401, "the reports need the reports token", "Authorization",
               "expected Basic (the token as password) or 'Bearer <token>'",
               {"WWW-Authenticate": f'Basic realm="{REPORTS_REALM}", charset="UTF-8"'})
    if not hmac.compare_digest(secret.encode(), ctx.reports_token.encode()):
        _abort(403, "wrong reports token", "Authorization", "the token does not match")


@bp.get("/reports")
def reports_index():
    ctx = _ctx()
    _require_reports_token(ctx)
    return Response(reports_index_page(ctx.reports), mimetype="text/html")


@bp.get("/reports/<name>")
def report(name: str):
    """One published report; 404 naming the known reports, or the asset that publishes a missing one."""
    ctx = _ctx()
    _require_reports_token(ctx)
    if name not in REPORT_ASSETS:
        return _error(404, "no such report", [Problem("name", f"one of {sorted(REPORT_ASSETS)}")])
    try:
        body = ctx.reports.read(name)
    except FileNotFoundError:
        return _error(404, f"report {name} is not published yet",
                      [Problem("name", f"materialize {REPORT_ASSETS[name]} to publish it")])
    # every run rewrites a report: never a stale copy from a cache
    return Response(body, mimetype="text/html", headers={"Cache-Control": "no-cache",
                                                         "X-Content-Type-Options": "nosniff"})


@bp.get("/favicon.ico")
def favicon():
    """No icon: 204, so the browser a person opens /docs, /ui or a report in does not log a 404."""
    return Response(status=204)


@bp.get("/openapi.json")
def openapi():
    ctx = _ctx()
    state = ctx.pool.state
    # the examples follow the prod model now serving (none before a model is loaded)
    example = example_features(state.prod.schema) if state is not None and state.prod is not None else None
    return jsonify(openapi_document(f"{ctx.cfg.dataset.name} A/B router", "1.0", example))


@bp.get("/docs")
def docs():
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/<path:name>")
def docs_static(name: str):
    return send_from_directory(DOCS_DIR, name)


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>A/B router API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""
