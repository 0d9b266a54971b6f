"""Request and response models of the router (pydantic) and the OpenAPI document built from them.

The envelope of every body is checked by these models; the ``features`` object is checked against
the served model's input schema from the registry (:mod:`router.validation`), which only exists
at run time, so ``/model_info`` publishes it and the OpenAPI document points there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from lake.report_files import REPORT_ASSETS

JsonScalar = str | int | float | bool


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PredictRequest(_Body):
    user_id: str | None = Field(default=None, min_length=1, max_length=200, description="Sticky A/B assignment "
                                "key; without it the request is assigned at random.")
    features: dict[str, Any] = Field(description="Raw input values by field name, as in the training data: "
                                     "see GET /model_info for the fields, their types and known categories.")


class PredictBatchRequest(_Body):
    rows: list[PredictRequest] = Field(min_length=1, description="Up to `router.max_batch_rows` rows.")


class FeedbackRequest(_Body):
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The request_id a prediction returned.")
    label: JsonScalar = Field(description="The true outcome, in the target's own labels.")


class FeedbackBatchRequest(_Body):
    items: list[FeedbackRequest] = Field(min_length=1, description="Up to `router.max_batch_rows` outcomes; "
                                         "all are logged, or none (any bad item: 422 naming it).")


class SplitRequest(_Body):
    # strict: JSON false is not the share 0.0, nor the string "0.5" a number
    ab_split_b: float = Field(ge=0.0, le=1.0, strict=True, description="Share of users sent to B (staging).")
    reason: str = Field(default="", max_length=500)


class PredictResponse(BaseModel):
    request_id: str
    variant: str = Field(description="A (prod) or B (staging).")
    experiment_id: str | None
    model_version: int
    model_used: str = Field(description="prod | staging | fallback; previous while prod's model cannot be "
                            "loaded and the last prod stands in for it")
    fallback_reason: str | None = None
    prediction: JsonScalar
    probability: float | None = Field(default=None, description="Classification: probability of the "
                                      "predicted class (of the positive class for two classes).")
    latency_ms: float


class PredictBatchResponse(BaseModel):
    results: list[PredictResponse]


class FeedbackResponse(BaseModel):
    feedback_id: str
    request_id: str
    accepted: bool


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. features.temp or rows.3.user_id.")
    problem: str


class FeedbackBatchResponse(BaseModel):
    results: list[FeedbackResponse]


class ErrorResponse(BaseModel):
    error: str
    errors: list[FieldError] = Field(default_factory=list)


class HealthResponse(BaseModel):
    status: str
    ready: bool | None = None
    models: dict[str, int] | None = None


class SplitResponse(BaseModel):
    experiment_id: str
    prod_version: int
    staging_version: int
    ab_split_b: float
    status: str


class ReloadResponse(BaseModel):
    aliases: dict[str, int]
    experiment_id: str | None
    ab_split_b: float


MODELS = [PredictRequest, PredictBatchRequest, FeedbackRequest, FeedbackBatchRequest, SplitRequest,
          PredictResponse, PredictBatchResponse, FeedbackResponse, FeedbackBatchResponse, ErrorResponse,
          HealthResponse, SplitResponse, ReloadResponse]

ROUTES: list[tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, bool]] = [
    # (method, path, summary, request model, response model, admin)
    ("get", "/health", "Liveness; `?ready=1` for readiness (models loaded)", None, HealthResponse, False),
    ("get", "/model_info", "Served versions, metrics, input schema, experiment and split", None, None, False),
    ("get", "/metrics", "Prometheus metrics (text format)", None, None, False),
    ("post", "/predict", "Predict one row (A/B assigned, logged before answering)", PredictRequest,
     PredictResponse, False),
    ("post", "/predict_batch", "Predict many rows in one call", PredictBatchRequest, PredictBatchResponse, False),
    ("post", "/feedback", "The late true outcome of a prediction", FeedbackRequest, FeedbackResponse, False),
    ("post", "/feedback_batch", "Many late outcomes in one call (all logged or none)", FeedbackBatchRequest,
     FeedbackBatchResponse, False),
    ("put", "/admin/split", "Set the share of users sent to staging", SplitRequest, SplitResponse, True),
    ("post", "/admin/reload", "Reload models and split from the lake now", None, ReloadResponse, True),
    ("get", "/openapi.json", "This document", None, None, False),
    ("get", "/docs", "Interactive documentation (Swagger UI)", None, None, False),
    ("get", "/ui", "A questionnaire for people: one input per field of the prod model, answered by /predict",
     None, None, False),
    ("get", "/reports", "The published HTML reports, with links (HTTP Basic when a reports token is set)", None,
     None, False),
    ("get", "/reports/{name}", f"One published report: {', '.join(REPORT_ASSETS)}", None, None, False),
    ("get", "/favicon.ico", "No icon (204): a browser's request for one is answered, not logged as a 404", None, None,
     False),
]


# what each client error means (the body of every one is an ErrorResponse naming the field)
CLIENT_ERRORS = {
    "400": "The body is not valid JSON, or not a JSON object",
    "413": "The body is larger than `router.max_body_bytes`, or holds more rows / items than "
           "`router.max_batch_rows` (`errors` names which)",
    "415": "The Content-Type is not application/json",
    "422": "A field is missing, has the wrong type or value, or is not an input of the served model: "
           "`errors` names each one (e.g. features.temp)",
}


def request_examples(features: dict[str, Any] | None) -> dict[str, Any]:
    """Request bodies for "Try it out", by path: built from the prod model's input schema
    (:func:`router.validation.example_features`), so each one is answered 200."""
    if features is None:
        return {}
    predict = {"user_id": "user-1", "features": features}
    return {"/predict": predict, "/predict_batch": {"rows": [predict, {**predict, "user_id": "user-2"}]},
            "/admin/split": {"ab_split_b": 0.5, "reason": "ramp up"}}


def openapi_document(title: str, version: str, example_features: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI 3.0 description of every route, with the pydantic models as components;
    ``example_features``: a valid features object of the served model, for the request examples."""
    _, defs = models_json_schema([(m, "validation") for m in MODELS],
                                 ref_template="#/components/schemas/{model}")
    components = _nullable(defs.get("$defs", {}))
    examples = request_examples(example_features)
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    error = {"description": "Error: the body names each field and its problem", "content": error_content}
    paths: dict[str, Any] = {}
    for method, path, summary, request, response, admin in ROUTES:
        op: dict[str, Any] = {"summary": summary, "operationId": f"{method}_{path.strip('/').replace('/', '_')}"}
        content_type = {"/metrics": "text/plain", "/docs": "text/html", "/ui": "text/html", "/reports": "text/html",
                        "/reports/{name}": "text/html"}.get(path, "application/json")
        schema = {"$ref": f"#/components/schemas/{response.__name__}"} if response else {"type": "object"}
        if content_type != "application/json":
            schema = {"type": "string"}
        op["responses"] = {"200": {"description": "OK", "content": {content_type: {"schema": schema}}}}
        if path == "/favicon.ico":
            op["responses"] = {"204": {"description": "No content"}}
        if request is not None:
            body: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{request.__name__}"}}
            if path in examples:
                body["example"] = examples[path]
            op["requestBody"] = {"required": True, "content": {"application/json": body}}
            op["responses"].update({code: {"description": text, "content": error_content}
                                    for code, text in CLIENT_ERRORS.items()})
        if path in ("/predict", "/predict_batch", "/feedback", "/feedback_batch"):
            op["responses"]["503"] = {**error, "description": "Not ready, or the request log could not be written"}
        if path in ("/predict", "/predict_batch"):
            op["responses"]["500"] = {**error, "description": "The assigned model raised and no fallback could "
                                                             "answer (`model` names the error; the rows are logged)"}
        if admin:
            op["security"] = [{"bearer": []}]
            op["responses"].update({"401": error, "403": error})
        elif path in ("/feedback", "/feedback_batch"):  # a token when router.feedback_token_env is set
            op["security"] = [{}, {"bearer": []}]
            op["responses"].update({"401": {**error, "description": "A feedback token is configured and none "
                                                                    "was sent"},
                                    "403": {**error, "description": "Wrong feedback token"}})
        if path.startswith("/reports"):
            op["security"] = [{}, {"basic": []}, {"bearer": []}]  # open, or the reports token
            op["responses"].update({"401": {**error, "description": "A reports token is configured and none was "
                                                                    "sent"},
                                    "403": {**error, "description": "Wrong reports token"}})
        if path == "/reports/{name}":
            op["parameters"] = [{"name": "name", "in": "path", "required": True,
                                 "schema": {"type": "string", "enum": list(REPORT_ASSETS)}}]
            op["responses"]["404"] = {**error, "description": "Not a report, or not published yet (`errors` "
                                                              "names the asset to materialize)"}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",  # Swagger UI 4 (the locally served /docs) renders 3.0; see _nullable
        "info": {"title": title, "version": version,
                 "description": "A/B router of the MLOps lakehouse. The fields of `features` are the served "
                                "model's inputs: GET /model_info lists them with types and known categories."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "basic": {"type": "http", "scheme": "basic"}}},
    }


def _nullable(node: Any) -> Any:
    """Pydantic writes JSON Schema 2020-12 (``anyOf: [X, {type: null}]``); OpenAPI 3.0 says
    ``nullable: true`` instead. Rewrite recursively."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1 and "$ref" not in rest[0]:
            node.update(rest[0])
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    return node
