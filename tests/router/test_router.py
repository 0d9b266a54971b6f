"""The Flask A/B router in process (Flask's test client): routes, validation, split, admin, metrics,
OpenAPI, the request log. gunicorn on loopback is in test_router_gunicorn.py.

The registry holds prod v1 and staging v3 (two training runs on the toy stream) and fallback v4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from assets.ab.events import ingest_event_log
from lake.registry import ModelRegistry
from lake.tables import AB_EVENTS, AB_FEEDBACK
from router.app import create_app
from router.split import assign, bucket
from tests.support.pipeline import Pipeline

FAST = {"models": ["lr", "dt"], "folds": 2, "budget_time_minutes": 0.5, "tune_top": 0, "holdout_min_rows": 200,
        "metric": "AUC", "gate": {"min_score": 0.55, "tolerance": 0.2}}
TOKEN = "s3cret-token"
ROW = {"ts": "2024-01-20T10:00:00Z", "city": "Oslo", "plan": "pro", "temp": 21.5, "amount": 12.0, "visits": 3}


def two_model_lakehouse(folder: Path) -> Pipeline:
    """Three toy batches and two training runs: prod v1, staging v3, fallback v4."""
    pipe = Pipeline(folder, {"training": FAST})
    for _ in range(3):
        assert pipe.emit_and_run().success
    job = pipe.defs.resolve_job_def("retrain_job")
    assert job.execute_in_process(instance=pipe.instance).success
    assert job.execute_in_process(instance=pipe.instance).success
    assert ModelRegistry(pipe.lake, pipe.paths.artifacts).aliases() == {"prod": 1, "staging": 3, "fallback": 4}
    return pipe


@pytest.fixture(scope="module")
def lakehouse(two_model_template: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return two_model_template.copy_to(tmp_path_factory.mktemp("router"))


@pytest.fixture(scope="module")
def client(lakehouse: Pipeline) -> FlaskClient:
    mp = pytest.MonkeyPatch()
    mp.setenv("LAKEHOUSE_ADMIN_TOKEN", TOKEN)
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    mp.undo()
    yield app.test_client()
    app.extensions["lakehouse"].events.close()


def _predict(client: FlaskClient, features: dict | None = None, user: str | None = "u1", **kw):
    body = {"features": {**ROW, **(features or {})}}
    if user is not None:
        body["user_id"] = user
    return client.post("/predict", json=body, **kw)


def _fields(response) -> dict[str, str]:
    return {e["field"]: e["problem"] for e in response.get_json()["errors"]}


def test_health_readiness_and_model_info(client: FlaskClient) -> None:
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/health?ready=1").get_json()
    assert ready["ready"] is True and ready["models"] == {"prod": 1, "staging": 3, "fallback": 4}
    info = client.get("/model_info").get_json()
    assert (info["prod"]["version"], info["staging"]["version"], info["fallback"]["version"]) == (1, 3, 4)
    assert info["experiment"]["prod_version"] == 1 and info["experiment"]["staging_version"] == 3
    assert info["ab_split_b"] == 0.5
    fields = info["prod"]["input_schema"]["fields"]
    assert fields == {"ts": "time", "temp": "numeric", "amount": "numeric", "visits": "numeric",
                      "city": "categorical", "plan": "categorical", "row_id": "id"}
    assert sorted(info["prod"]["input_schema"]["categories"]["city"]) == ["Lima", "Oslo", "Rome"]
    assert "AUC" in info["prod"]["holdout_metrics"] and info["prod"]["classes"] == [0, 1]


def test_predict_is_sticky_and_names_the_variant_and_version(client: FlaskClient) -> None:
    first = _predict(client, user="alice").get_json()
    assert set(first) == {"request_id", "variant", "experiment_id", "model_version", "model_used",
                          "fallback_reason", "prediction", "probability", "latency_ms"}
    assert first["variant"] in ("A", "B") and first["model_version"] == {"A": 1, "B": 3}[first["variant"]]
    assert first["model_used"] == {"A": "prod", "B": "staging"}[first["variant"]]
    assert first["prediction"] in (0, 1) and 0.0 <= first["probability"] <= 1.0
    again = [_predict(client, user="alice").get_json() for _ in range(5)]
    assert {r["variant"] for r in again} == {first["variant"]}
    assert len({r["request_id"] for r in [first, *again]}) == 6
    variants = {_predict(client, user=f"user-{i}").get_json()["variant"] for i in range(40)}
    assert variants == {"A", "B"}


@settings(max_examples=25, deadline=None)
@given(split=st.floats(min_value=0.05, max_value=0.95), salt=st.text(min_size=1, max_size=8))
def test_split_converges_to_the_configured_share(split: float, salt: str) -> None:
    n = 4000
    share = sum(assign(f"exp-{salt}", f"user-{i}", split) == "B" for i in range(n)) / n
    low, high = stats.binom.interval(0.9999, n, split)
    assert low / n <= share <= high / n
    # sticky: the same user always gets the same variant; raising the split only moves A -> B
    for i in range(50):
        user = f"user-{i}"
        assert assign("e", user, split) == assign("e", user, split)
        if assign("e", user, split) == "B":
            assert assign("e", user, min(1.0, split + 0.1)) == "B"
    assert 0.0 <= bucket("e", "x") < 1.0 and assign(None, "u", 0.5) == "A" and assign("e", "u", 0.0) == "A"


@pytest.mark.parametrize(("features", "field", "words"), [
    ({"temp": "warm"}, "features.temp", "expected a number"),
    ({"temp": True}, "features.temp", "expected a number"),
    ({"city": 3}, "features.city", "expected a string"),
    ({"ts": None}, "features.ts", "must not be null"),
    ({"ts": "yesterday-ish"}, "features.ts", "not a time"),
    ({"colour": "red"}, "features.colour", "unknown field"),
])
def test_bad_features_get_422_naming_the_field(client: FlaskClient, features: dict, field: str, words: str) -> None:
    response = _predict(client, features)
    assert response.status_code == 422
    assert words in _fields(response)[field]


def test_missing_field_non_finite_and_envelope_errors(client: FlaskClient) -> None:
    body = {"user_id": "u", "features": {k: v for k, v in ROW.items() if k != "amount"}}
    missing = client.post("/predict", json=body)
    assert missing.status_code == 422 and "required" in _fields(missing)["features.amount"]
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = json.dumps({"user_id": "u", "features": {**ROW, "temp": 0}}).replace('"temp": 0', f'"temp": {token}')
        bad = client.post("/predict", data=raw, content_type="application/json")
        assert bad.status_code == 422 and "finite" in _fields(bad)["features.temp"], token
    # an integer past the float range is no number the model can take (float() of it overflows)
    huge = client.post("/predict", data=json.dumps({"user_id": "u", "features": {**ROW, "temp": 10**400}}),
                       content_type="application/json")
    assert huge.status_code == 422 and "finite" in _fields(huge)["features.temp"]
    extra = client.post("/predict", json={"features": ROW, "color": 1})
    assert extra.status_code == 422 and "color" in _fields(extra)
    no_features = client.post("/predict", json={"user_id": "u"})
    assert no_features.status_code == 422 and "features" in _fields(no_features)
    wrong_user = client.post("/predict", json={"user_id": 5, "features": ROW})
    assert wrong_user.status_code == 422 and "user_id" in _fields(wrong_user)


def test_transport_errors_are_json_4xx(client: FlaskClient) -> None:
    form = client.post("/predict", data="a=1", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and "application/json" in _fields(form)["body"]
    broken = client.post("/predict", data='{"features": {', content_type="application/json")
    assert broken.status_code == 400 and "not valid JSON" in _fields(broken)["body"]
    huge = client.post("/predict", data=b'{"features": {"x": "' + b"a" * (2 * 2**20) + b'"}}',
                       content_type="application/json")
    assert huge.status_code == 413 and "body" in _fields(huge)
    assert client.get("/nope").status_code == 404 and client.get("/nope").get_json()["error"] == "Not Found"
    not_allowed = client.delete("/predict")
    assert not_allowed.status_code == 405 and "POST" in not_allowed.headers["Allow"]
    assert "GET" in client.post("/health").headers["Allow"]
    deep = client.post("/predict", data="[" * 50_000, content_type="application/json")
    assert deep.status_code == 400 and "nested too deeply" in _fields(deep)["body"]


def test_times_outside_the_representable_range_are_422_naming_the_row(client: FlaskClient) -> None:
    for when in ("1500-01-01T00:00:00Z", "2262-04-12T00:00:00", "9999-12-31"):
        refused = _predict(client, {"ts": when})
        assert refused.status_code == 422 and "outside the times" in _fields(refused)["features.ts"]
    rows = [{"user_id": f"t{i}", "features": {**ROW, **({"ts": "1600-06-01"} if i == 2 else {})}} for i in range(4)]
    batch = client.post("/predict_batch", json={"rows": rows})
    assert batch.status_code == 422 and list(_fields(batch)) == ["rows.2.features.ts"]
    assert _predict(client, {"ts": "1677-09-22T00:00:00Z"}).status_code == 200


def test_batch_predicts_many_and_names_the_bad_row(client: FlaskClient) -> None:
    rows = [{"user_id": f"b{i}", "features": {**ROW, "temp": float(i)}} for i in range(20)]
    ok = client.post("/predict_batch", json={"rows": rows})
    results = ok.get_json()["results"]
    assert ok.status_code == 200 and len(results) == 20 and len({r["request_id"] for r in results}) == 20
    rows[3] = {"user_id": "b3", "features": {**ROW, "visits": "many"}}
    bad = client.post("/predict_batch", json={"rows": rows})
    assert bad.status_code == 422 and "rows.3.features.visits" in _fields(bad)
    too_many = client.post("/predict_batch", json={"rows": [rows[0]] * 1001})
    assert too_many.status_code == 413 and "at most 1000" in _fields(too_many)["rows"]


def test_a_batch_is_logged_in_one_write_or_not_answered(lakehouse: Pipeline, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """Every row's event of a /predict_batch goes to the kernel in one write before the answer; when
    that write fails, the request is a 503 and no row of it is in the log (nothing was answered)."""
    import router.event_log

    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    c = app.test_client()
    log = app.extensions["lakehouse"].events
    writes: list[bytes] = []
    real_write = router.event_log._write_all

    def counted(fd: int, data: bytes) -> None:
        writes.append(data)
        real_write(fd, data)

    monkeypatch.setattr(router.event_log, "_write_all", counted)
    rows = [{"user_id": f"one-write-{i}", "features": {**ROW, "temp": float(i)}} for i in range(12)]
    ok = c.post("/predict_batch", json={"rows": rows})
    assert ok.status_code == 200 and len(writes) == 1 and writes[0].count(b"\n") == 12
    ids = [json.loads(line)["request_id"] for line in writes[0].splitlines()]
    assert ids == [r["request_id"] for r in ok.get_json()["results"]]

    def failing(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(router.event_log, "_write_all", failing)
    before = log.events_written
    refused = c.post("/predict_batch", json={"rows": rows})
    assert refused.status_code == 503 and "could not be written" in _fields(refused)["log"]
    assert log.events_written == before
    log.close()


def test_loaded_models_are_frozen_out_of_the_collector(lakehouse: Pipeline) -> None:
    """After the pool loads its models, their objects sit in the collector's permanent generation:
    full collections during requests do not traverse them (router.model_pool.freeze_heap)."""
    import gc

    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False, freeze_heap=True)
    state = app.extensions["lakehouse"].pool.state
    assert gc.get_freeze_count() > 0
    tracked = {id(o) for o in gc.get_objects()}
    for served in (state.prod, state.staging, state.fallback):
        assert id(served.model) not in tracked and id(served) not in tracked
    app.extensions["lakehouse"].events.close()
    gc.unfreeze()  # the rest of the test process is not a server


def test_a_copied_data_root_serves_from_its_own_files(lakehouse: Pipeline, tmp_path: Path) -> None:
    """The registry's artifact paths are relative: a router on a copy of the data root loads the
    copy's models and compiled scorers, with the original's artifacts out of reach."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(lakehouse.paths.root, copy, ignore=shutil.ignore_patterns("prometheus"))
    original = lakehouse.paths.artifacts
    hidden = original.with_name("artifacts-hidden-while-the-copy-loads")
    original.rename(hidden)
    try:
        app = create_app(lakehouse.cfg, str(copy), poll=False)
        state = app.extensions["lakehouse"].pool.state
        assert state is not None and state.disabled == {} and state.prod_alias == "prod"
        assert {m.version for m in (state.prod, state.staging, state.fallback)} == {1, 3, 4}
        answer = _predict(app.test_client(), user="copied-root")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        app.extensions["lakehouse"].events.close()
        assert not original.exists()  # nothing recreated the original's folder
    finally:
        hidden.rename(original)


def test_sparse_or_anomalous_rows_go_to_the_fallback(client: FlaskClient) -> None:
    sparse = _predict(client, {"temp": None, "amount": None, "visits": None, "city": None}).get_json()
    assert sparse["model_used"] == "fallback" and sparse["model_version"] == 4
    assert "missing" in sparse["fallback_reason"]
    odd = _predict(client, {"temp": 400.0}).get_json()  # one of three numeric values far outside training
    assert odd["model_used"] == "fallback" and "temp" in odd["fallback_reason"]
    normal = _predict(client).get_json()
    assert normal["model_used"] in ("prod", "staging") and normal["fallback_reason"] is None
    unseen = _predict(client, {"city": "Paris"}).get_json()  # accepted by default: the encoder handles it
    assert unseen["model_used"] in ("prod", "staging")


def test_feedback_is_validated_and_accepted(client: FlaskClient) -> None:
    rid = _predict(client).get_json()["request_id"]
    ok = client.post("/feedback", json={"request_id": rid, "label": 1})
    assert ok.status_code == 200 and ok.get_json()["request_id"] == rid and ok.get_json()["accepted"] is True
    bad_id = client.post("/feedback", json={"request_id": "not-an-id", "label": 1})
    assert bad_id.status_code == 422 and "request_id" in _fields(bad_id)
    bad_label = client.post("/feedback", json={"request_id": rid, "label": 0.5})
    assert bad_label.status_code == 422 and "class label" in _fields(bad_label)["label"]
    unknown = client.post("/feedback", json={"request_id": rid, "label": "maybe"})
    assert unknown.status_code == 422 and "expected one of [0, 1]" in _fields(unknown)["label"]
    assert client.post("/feedback", json={"request_id": rid, "label": 1.0}).status_code == 200
    no_label = client.post("/feedback", json={"request_id": rid})
    assert no_label.status_code == 422 and "label" in _fields(no_label)


def test_feedback_batch_is_all_or_nothing(lakehouse: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    c = app.test_client()
    events = app.extensions["lakehouse"].events
    rids = [_predict(c, user=f"fbb-{i}").get_json()["request_id"] for i in range(3)]
    before = events.events_written
    # one bad label refuses the whole call, naming the item; nothing is logged
    bad = c.post("/feedback_batch", json={"items": [{"request_id": rids[0], "label": 1},
                                                    {"request_id": rids[1], "label": "maybe"},
                                                    {"request_id": "nope", "label": 0}]})
    assert bad.status_code == 422 and set(_fields(bad)) == {"items.2.request_id"}  # schema errors first
    bad = c.post("/feedback_batch", json={"items": [{"request_id": rids[0], "label": 1},
                                                    {"request_id": rids[1], "label": "maybe"}]})
    assert bad.status_code == 422 and list(_fields(bad)) == ["items.1.label"]
    assert c.post("/feedback_batch", json={"items": []}).status_code == 422
    too_many = [{"request_id": rids[0], "label": 1}] * (lakehouse.cfg.router.max_batch_rows + 1)
    assert c.post("/feedback_batch", json={"items": too_many}).status_code == 413
    assert events.events_written == before

    def disk_full(batch: list) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events, "append_many", disk_full)
    refused = c.post("/feedback_batch", json={"items": [{"request_id": r, "label": 0} for r in rids]})
    assert refused.status_code == 503 and "nothing was accepted" in _fields(refused)["log"]
    monkeypatch.undo()

    ok = c.post("/feedback_batch", json={"items": [{"request_id": r, "label": label}
                                                   for r, label in zip(rids, [1, "0", True], strict=True)]})
    assert ok.status_code == 200
    results = ok.get_json()["results"]
    assert [r["request_id"] for r in results] == rids and all(r["accepted"] for r in results)
    assert events.events_written == before + 3
    events.close()
    ingest_event_log(lakehouse.lake, lakehouse.paths.events, lakehouse.paths.events_ingested)
    stored = lakehouse.lake.read(AB_FEEDBACK).set_index("feedback_id")
    rows = stored.loc[[r["feedback_id"] for r in results]]
    # stored as sent (label_value only for a number); the A/B join maps each spelling to its class
    assert rows["request_id"].tolist() == rids and rows["label_value"].iloc[0] == 1.0


def test_admin_needs_the_bearer_token_and_moves_the_split(client: FlaskClient, lakehouse: Pipeline) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/admin/reload", headers=auth).get_json()["aliases"]["staging"] == 3
    bad = client.put("/admin/split", json={"ab_split_b": 1.5}, headers=auth)
    assert bad.status_code == 422 and "ab_split_b" in _fields(bad)
    for not_a_share in (False, True, "0.5"):  # false is not 0.0: a typed admin field takes numbers only
        refused = client.put("/admin/split", json={"ab_split_b": not_a_share}, headers=auth)
        assert refused.status_code == 422 and "valid number" in _fields(refused)["ab_split_b"]
    assert client.get("/model_info").get_json()["ab_split_b"] == 0.5
    moved = client.put("/admin/split", json={"ab_split_b": 0.0, "reason": "test"}, headers=auth)
    assert moved.status_code == 200 and moved.get_json()["ab_split_b"] == 0.0
    assert {_predict(client, user=f"z{i}").get_json()["variant"] for i in range(30)} == {"A"}
    assert client.get("/model_info").get_json()["ab_split_b"] == 0.0
    assert client.put("/admin/split", json={"ab_split_b": 0.5}, headers=auth).status_code == 200


def test_admin_is_disabled_without_a_token(lakehouse: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKEHOUSE_ADMIN_TOKEN", raising=False)
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    response = app.test_client().post("/admin/reload", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403 and "disabled" in response.get_json()["error"]
    app.extensions["lakehouse"].events.close()


def test_feedback_needs_the_configured_token_and_is_open_without_one_saying_so(
        lakehouse: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels decide promotions: with the feedback token set, a label without it is a 401, with
    another one a 403, and nothing of either reaches the request log; unset, /model_info says that
    anyone can send labels."""
    monkeypatch.setenv("LAKEHOUSE_FEEDBACK_TOKEN", "labels-only")
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    c = app.test_client()
    events = app.extensions["lakehouse"].events
    rid = _predict(c, user="fb-auth").get_json()["request_id"]
    before = events.events_written
    missing = c.post("/feedback", json={"request_id": rid, "label": 1})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.get_json()["errors"][0]["field"] == "Authorization"
    wrong = c.post("/feedback_batch", json={"items": [{"request_id": rid, "label": 1}]},
                   headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403 and "token" in wrong.get_json()["error"]
    assert events.events_written == before  # refused labels are not logged
    ok = c.post("/feedback", json={"request_id": rid, "label": 1}, headers={"Authorization": "Bearer labels-only"})
    assert ok.status_code == 200 and ok.get_json()["request_id"] == rid
    assert c.get("/model_info").get_json()["feedback_auth"] == "bearer token"
    spec = c.get("/openapi.json").get_json()["paths"]["/feedback"]["post"]
    assert {"401", "403"} <= set(spec["responses"]) and {"bearer": []} in spec["security"]
    events.close()
    monkeypatch.delenv("LAKEHOUSE_FEEDBACK_TOKEN")
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    assert app.test_client().get("/model_info").get_json()["feedback_auth"].startswith("open to any caller")
    app.extensions["lakehouse"].events.close()


def test_metrics_parse_and_count_requests(client: FlaskClient) -> None:
    _predict(client, user="metrics-user")
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    requests = [s for s in families["router_requests"].samples
                if s.name == "router_requests_total" and s.labels["endpoint"] == "predict"]
    assert sum(s.value for s in requests if s.labels["status"] == "200") >= 1
    assert sum(s.value for s in requests if s.labels["status"] == "422") >= 1
    assert "router_request_latency_seconds" in families and "router_fallback" in families
    # the counters alerts divide by exist from the start (an absent series is not a 0 to Prometheus)
    present = {(s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples}
    assert {("router_fallback_total", (("variant", v),)) for v in ("A", "B")} <= present
    assert {("router_event_log_failures_total", (("kind", k),))
            for k in ("prediction", "feedback", "error", "shadow")} <= present
    assert "positive class" in families["router_prediction_value"].documentation


def test_openapi_is_valid_and_lists_every_route(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    routes = {(r.rule.replace("<", "{").replace(">", "}"), m.lower()) for r in client.application.url_map.iter_rules()
              for m in r.methods - {"HEAD", "OPTIONS"} if r.endpoint not in ("static", "router.docs_static")}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    page = client.get("/docs")
    assert page.status_code == 200 and b"/openapi.json" in page.data
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200  # served locally, no CDN


def test_the_documented_examples_are_answered_and_each_error_says_what_it_means(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    for path in ("/predict", "/predict_batch"):
        op = doc["paths"][path]["post"]
        example = op["requestBody"]["content"]["application/json"]["example"]
        answer = client.post(path, json=example)  # what "Try it out" sends as it stands
        assert answer.status_code == 200, answer.get_json()
        descriptions = {code: op["responses"][code]["description"] for code in ("400", "413", "415", "422")}
        assert len(set(descriptions.values())) == 4 and "Content-Type" in descriptions["415"]
        assert "router.max_body_bytes" in descriptions["413"] and "features.temp" in descriptions["422"]
    features = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]["features"]
    info = client.get("/model_info").get_json()["prod"]["input_schema"]
    assert set(features) == set(info["fields"]) - {f for f, kind in info["fields"].items() if kind == "id"}
    for name, (low, high) in info["numeric_ranges"].items():
        assert low <= features[name] <= high
    for name, known in info["categories"].items():
        assert features[name] == known[0]  # the most frequent training category


def test_every_answered_request_is_in_the_event_tables(lakehouse: Pipeline) -> None:
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    c = app.test_client()
    answered = [_predict(c, user=f"log-{i}").get_json()["request_id"] for i in range(25)]
    labelled = c.post("/feedback", json={"request_id": answered[0], "label": 1}).get_json()["feedback_id"]
    assert _predict(c, {"temp": "hot"}).status_code == 422  # refused requests are not logged
    app.extensions["lakehouse"].events.close()
    paths = lakehouse.paths
    ingest_event_log(lakehouse.lake, paths.events, paths.events_ingested)
    events = lakehouse.lake.read(AB_EVENTS)
    assert set(answered) <= set(events["request_id"]) and events["request_id"].is_unique
    row = events.set_index("request_id").loc[answered[0]]
    assert row["user_id"] == "log-0" and json.loads(row["features"])["city"] == "Oslo"
    assert row["model_version"] in (1, 3, 4) and not math.isnan(row["latency_ms"])
    # the model's own scoring time is part of the request's, and logged for every answered row
    answered_rows = events.set_index("request_id").loc[answered]
    assert answered_rows["model_ms"].notna().all() and (answered_rows["model_ms"] > 0).all()
    assert (answered_rows["model_ms"] <= answered_rows["latency_ms"]).all()
    feedback = lakehouse.lake.read(AB_FEEDBACK).set_index("feedback_id")
    assert feedback.loc[labelled, "request_id"] == answered[0] and feedback.loc[labelled, "label_value"] == 1.0


def test_shadow_scoring_runs_after_the_answer_and_lands_on_its_request(lakehouse: Pipeline) -> None:
    """With every request shadowed, the answers are logged before the response exists and the
    shadows only when the server closes it (after sending): the caller never waits for the other
    model. Ingestion sets each shadow on its own request's row, with the shadow model's time."""
    router = lakehouse.cfg.router.model_copy(update={"shadow_share": 1.0})
    app = create_app(lakehouse.cfg.model_copy(update={"router": router}), str(lakehouse.paths.root), poll=False)
    c = app.test_client()
    log = app.extensions["lakehouse"].events
    assert app.extensions["lakehouse"].pool.state.running is not None  # an experiment: A and B both serve
    before = log.events_written
    # 32 users: the experiment's id is random, so all of them landing in one variant has odds 2**-31
    n = 32
    r = c.post("/predict_batch", json={"rows": [{"user_id": f"shadow-{i}", "features": ROW} for i in range(n)]})
    assert r.status_code == 200
    answers = r.get_json()["results"]
    assert log.events_written == before + n  # the answers only: nothing of the shadow yet
    r.close()
    assert log.events_written == before + 2 * n  # one shadow line per answered row
    log.close()
    ingest_event_log(lakehouse.lake, lakehouse.paths.events, lakehouse.paths.events_ingested)
    rows = lakehouse.lake.read(AB_EVENTS).set_index("request_id").loc[[a["request_id"] for a in answers]]
    assert {a["variant"] for a in answers} == {"A", "B"}
    assert (rows["shadow_version"] != rows["model_version"]).all() and rows["shadow_prediction"].notna().all()
    assert (rows["shadow_model_ms"] > 0).all() and (rows["model_ms"] > 0).all()
    state = app.extensions["lakehouse"].pool.state
    for a, (_, row) in zip(answers, rows.iterrows(), strict=True):  # each shadow is the other variant's
        assert row["shadow_version"] == (state.staging.version if a["variant"] == "A" else state.prod.version)


def test_alias_change_is_picked_up_by_reload(lakehouse: Pipeline) -> None:
    from lake.registry import AliasChange

    registry = ModelRegistry(lakehouse.lake, lakehouse.paths.artifacts)
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    pool = app.extensions["lakehouse"].pool
    registry.set_aliases([AliasChange("staging", None)], actor="test", reason="no experiment")
    try:
        pool.reload()
        c = app.test_client()
        assert {_predict(c, user=f"s{i}").get_json()["model_version"] for i in range(20)} == {1}
        assert c.get("/model_info").get_json()["experiment"] is None
    finally:
        registry.set_aliases([AliasChange("staging", 3)], actor="test", reason="restore")
        app.extensions["lakehouse"].events.close()
    pool.reload()
    assert pool.state.staging.version == 3


def test_a_change_landing_during_a_reload_is_not_missed(lakehouse: Pipeline) -> None:
    """The poller compares Delta versions; a flip committed while a reload runs must still be seen."""
    from lake.registry import AliasChange

    registry = ModelRegistry(lakehouse.lake, lakehouse.paths.artifacts)
    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    pool = app.extensions["lakehouse"].pool
    ensure = pool.experiments.ensure

    def ensure_then_flip(*args, **kwargs):
        experiment = ensure(*args, **kwargs)
        registry.set_aliases([AliasChange("staging", None)], actor="test", reason="lands mid-reload")
        return experiment

    pool.experiments.ensure = ensure_then_flip
    try:
        assert pool.reload(force=True).staging.version == 3  # read before the flip landed
        pool.experiments.ensure = ensure
        assert pool.reload().staging is None  # the next poll sees it
        versions_before = pool.source_versions()
        assert pool.reload() is pool.state and pool.source_versions() == versions_before  # idle: no commit
    finally:
        registry.set_aliases([AliasChange("staging", 3)], actor="test", reason="restore")
        app.extensions["lakehouse"].events.close()


class _Broken:
    """A model whose pipeline raises, as a bad artifact or a missing dependency would."""

    def __init__(self, model) -> None:
        self.model = model
        self.classes_ = getattr(model, "classes_", None)

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def predict_proba(self, x):
        raise RuntimeError("broken pipeline")

    def predict(self, x):  # the compiled scorer's entry point (and a regression pipeline's)
        raise RuntimeError("broken pipeline")


def test_a_failing_model_is_an_error_of_its_variant(lakehouse: Pipeline) -> None:
    """Staging raises: its users are answered by the fallback, and every such row is logged with
    the error (B's error rate, the A/B guardrail); without a fallback the request fails with a 500
    naming the model, and the failed rows are still logged."""
    from dataclasses import replace

    from assets.ab.analysis import analyse, labelled_events
    from lake.experiments import ExperimentStore

    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    ctx = app.extensions["lakehouse"]
    state = ctx.pool.reload(force=True)
    assert state.running is not None and state.staging is not None
    assert state.staging.scoring["path"] == "compiled"  # the registered models are compiled: break both paths
    broken = replace(state.staging, model=_Broken(state.staging.model), scorer=_Broken(state.staging.scorer))
    ctx.pool._state = replace(state, staging=broken)
    c = app.test_client()
    answers = [_predict(c, user=f"err-{i}") for i in range(40)]
    assert all(r.status_code == 200 for r in answers)
    by_variant = {}
    for r in answers:
        body = r.get_json()
        by_variant.setdefault(body["variant"], []).append(body)
    assert by_variant["B"] and by_variant["A"]
    assert all(b["model_used"] == "fallback" and b["fallback_reason"] == "model error" for b in by_variant["B"])
    assert all(b["model_used"] == "prod" for b in by_variant["A"])

    ctx.pool._state = replace(state, staging=broken, fallback=None)
    b_ids = [f"err-{i}" for i, r in enumerate(answers) if r.get_json()["variant"] == "B"]
    failed = _predict(c, user=b_ids[0])
    assert failed.status_code == 500 and "broken pipeline" in _fields(failed)["model"]
    ctx.events.close()

    paths = lakehouse.paths
    ingest_event_log(lakehouse.lake, paths.events, paths.events_ingested)
    experiment = ExperimentStore(lakehouse.lake).running()
    events = labelled_events(lakehouse.lake, experiment.experiment_id)
    mine = events[events["user_id"].str.startswith("err-", na=False)]
    errors = mine[mine["error"].notna()]
    assert set(errors["variant"]) == {"B"} and (errors["error"].str.contains("RuntimeError: broken pipeline")).all()
    assert len(errors) == len(b_ids) + 1 and (errors["model_used"] == "none").sum() == 1
    analysis = analyse(mine, experiment, "classification", lakehouse.cfg.ab)
    assert analysis.variants["B"].error_rate == 1.0 and analysis.variants["A"].error_rate == 0.0
    assert analysis.decision.action == "rollback" and "error rate 100.00%" in analysis.decision.reason


def test_compiled_models_score_requests_without_a_frame(lakehouse: Pipeline, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """With compiled scorers the request path builds no DataFrame (the frame path is made to
    raise), and its answers equal the pipeline path's: same classes, probabilities within 1e-9."""
    from dataclasses import replace

    import router.plan

    app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    ctx = app.extensions["lakehouse"]
    state = ctx.pool.reload(force=True)
    assert state.prod.scorer is not None and state.staging.scorer is not None
    c = app.test_client()
    cities = [None, "Oslo", "  Bergen "]
    rows = [{"user_id": f"frame-{i}", "features": {**ROW, "temp": float(i - 10), "city": cities[i % 3]}}
            for i in range(30)]

    def no_frames(*args, **kwargs):
        raise AssertionError("the frame path was used")

    with monkeypatch.context() as mp:
        mp.setattr(router.plan, "score_rows", no_frames)
        fast = c.post("/predict_batch", json={"rows": rows})
        one = _predict(c, user="frame-1", features=rows[1]["features"])
    assert fast.status_code == 200 and one.status_code == 200, (fast.get_json(), one.get_json())
    ctx.pool._state = replace(state, prod=replace(state.prod, scorer=None), staging=replace(state.staging, scorer=None))
    slow = c.post("/predict_batch", json={"rows": rows})
    ctx.events.close()
    got, want = fast.get_json()["results"], slow.get_json()["results"]
    assert [r["variant"] for r in got] == [r["variant"] for r in want] and {r["variant"] for r in got} == {"A", "B"}
    assert [r["prediction"] for r in got] == [r["prediction"] for r in want]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(got, want, strict=True)) <= 1e-9
    assert one.get_json()["prediction"] == got[1]["prediction"]


def _corrupted(lakehouse: Pipeline, version: int):
    """A context in which model ``version``'s artifact is garbage (restored afterwards)."""
    import contextlib

    @contextlib.contextmanager
    def corrupt():
        registry = ModelRegistry(lakehouse.lake, lakehouse.paths.artifacts)
        path = registry.artifact_file(registry.get(version))
        saved = path.read_bytes()
        path.write_bytes(b"not a pickle" + saved[:100])
        try:
            yield
        finally:
            path.write_bytes(saved)
    return corrupt()


def _leaks(body: str, lakehouse: Pipeline) -> list[str]:
    """What a client must never read: paths of the data root, sha256 digests."""
    import re

    return [hit for hit in (str(lakehouse.paths.root), "artifacts/", ".joblib") if hit in body] + \
        re.findall(r"\b[0-9a-f]{64}\b", body)


def test_a_broken_fallback_disables_the_fallback_only(lakehouse: Pipeline) -> None:
    with _corrupted(lakehouse, 4):
        app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    try:
        c = app.test_client()
        ready = c.get("/health?ready=1")
        assert ready.status_code == 200 and ready.get_json()["ready"] is True
        assert list(ready.get_json()["disabled"]) == ["fallback"]
        assert "does not match the sha256" in ready.get_json()["disabled"]["fallback"]
        assert _leaks(ready.get_data(as_text=True), lakehouse) == []
        info = c.get("/model_info").get_json()
        assert info["fallback"] is None and info["prod"]["version"] == 1 and info["experiment"] is not None
        answers = [_predict(c, user=f"bf{i}") for i in range(20)]
        assert {a.status_code for a in answers} == {200}
        assert {a.get_json()["model_version"] for a in answers} == {1, 3}
        scraped = c.get("/metrics").get_data(as_text=True)
        assert 'router_model_disabled{alias="fallback"} 1.0' in scraped
        assert 'router_model_disabled{alias="prod"} 0.0' in scraped
    finally:
        app.extensions["lakehouse"].events.close()


def test_a_broken_prod_is_answered_by_the_fallback_and_says_so(lakehouse: Pipeline) -> None:
    with _corrupted(lakehouse, 1):
        app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    try:
        c = app.test_client()
        ready = c.get("/health?ready=1").get_json()
        assert ready["prod_alias"] == "fallback" and list(ready["disabled"]) == ["prod"]
        info = c.get("/model_info").get_json()
        # no experiment while prod is a stand-in: B would be compared with the wrong model
        assert info["prod"]["version"] == 4 and info["experiment"] is None and info["prod_alias"] == "fallback"
        answer = _predict(c)
        assert answer.status_code == 200 and answer.get_json()["model_version"] == 4
        assert answer.get_json()["model_used"] == "fallback"  # the stand-in is named on the answer
        assert _leaks(c.get("/health?ready=1").get_data(as_text=True), lakehouse) == []
    finally:
        app.extensions["lakehouse"].events.close()


def test_no_loadable_model_is_a_503_without_paths_or_hashes(lakehouse: Pipeline) -> None:
    with _corrupted(lakehouse, 1), _corrupted(lakehouse, 4):
        app = create_app(lakehouse.cfg, str(lakehouse.paths.root), poll=False)
    try:
        c = app.test_client()
        ready = c.get("/health?ready=1")
        assert ready.status_code == 503 and "no model can be served" in ready.get_json()["reason"]
        refused = _predict(c)
        assert refused.status_code == 503
        for body in (ready.get_data(as_text=True), refused.get_data(as_text=True)):
            assert _leaks(body, lakehouse) == []
    finally:
        app.extensions["lakehouse"].events.close()


def test_the_questionnaire_has_one_input_per_field_and_escapes_the_data(client: FlaskClient) -> None:
    import html.parser

    page = client.get("/ui")
    assert page.status_code == 200 and page.mimetype == "text/html"
    info = client.get("/model_info").get_json()["prod"]
    fields = {name: kind for name, kind in info["input_schema"]["fields"].items() if kind != "id"}

    class Inputs(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.controls: dict[str, tuple[str, str | None]] = {}
            self.options: dict[str, list[str]] = {}
            self._select: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if "data-kind" in a:
                self.controls[a["name"]] = (tag, a.get("type"))
                self._select = a["name"] if tag == "select" else None
            elif tag == "option" and self._select:
                self.options.setdefault(self._select, []).append(a["value"])

    parsed = Inputs()
    parsed.feed(page.get_data(as_text=True))
    assert set(parsed.controls) == set(fields)
    for name, kind in fields.items():
        expected = {"time": ("input", "datetime-local"), "numeric": ("input", "number"),
                    "categorical": ("select", None), "text": ("textarea", None)}[kind]
        assert parsed.controls[name] == expected, name
    for name, known in info["input_schema"]["categories"].items():
        assert parsed.options[name] == ["", *known]  # "(unknown)" first, then the training values
    low, high = info["input_schema"]["numeric_ranges"]["temp"]
    assert f"in training {low:.6g} to {high:.6g}" in page.get_data(as_text=True)


def test_the_questionnaire_escapes_names_and_categories() -> None:
    from router.ui import questionnaire_page

    schema = {"spec": {"time_column": "ts", "numeric": [], "categorical": ["c<b>"], "text": [], "id_column": None},
              "categories": {"c<b>": ['</script><script>alert(1)</script>', 'a"b']}, "numeric_ranges": {}}
    page = questionnaire_page("t", 1, schema, [0, 1])
    assert "<script>alert(1)" not in page and "c<b>" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page and 'value="a&quot;b"' in page
    assert page.count("</script>") == 1  # the page's own script only
