"""/feedback in the model's label domain (router.plan.label_problem over serving/labels.py): any
spelling of one of prod's classes is accepted, anything else refused with the classes named.

Unit tests on a stand-in pool state (no model is trained); the 422 naming the field through Flask
is in test_router.py's test_feedback_is_validated_and_accepted and in the slow test below."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from flask.testing import FlaskClient

from router.plan import label_problem
from tests.router.test_router import client, lakehouse  # noqa: F401  (the router tests' trained fixtures)


def _state(task: str, classes: list | None = None, staging: list | None = None) -> SimpleNamespace:
    """What label_problem reads of a PoolState: prod's task, prod's and staging's classes."""
    model = SimpleNamespace(classes_=np.asarray(classes)) if classes is not None else SimpleNamespace()
    served = None if staging is None else SimpleNamespace(model=SimpleNamespace(classes_=np.asarray(staging)))
    return SimpleNamespace(prod=SimpleNamespace(spec=SimpleNamespace(task=task), model=model), staging=served)


@pytest.mark.parametrize("label", [1, 1.0, "1", "1.0", " 1 ", True, "YES", "yes", "True", 0, "0.0", "no", False])
def test_a_yes_no_target_accepts_every_spelling_of_its_classes(label) -> None:
    assert label_problem(label, _state("classification", [0, 1])) is None


@pytest.mark.parametrize(("label", "words"), [
    (0.5, "expected a class label, got 0.5"), ("maybe", "unknown class 'maybe': expected one of [0, 1]"),
    (2, "unknown class 2"), ("", "the label is missing"),
])
def test_other_labels_are_refused_naming_the_models_classes(label, words) -> None:
    problem = label_problem(label, _state("classification", [0, 1]))
    assert problem is not None and words in problem and "GET /model_info" in problem


def test_multiclass_strings_match_regardless_of_case_and_blanks() -> None:
    state = _state("classification", ["bike", "bus", "car"])
    assert [label_problem(v, state) for v in ("bike", " BUS", "Car")] == [None, None, None]
    assert "unknown class 'boat': expected one of ['bike', 'bus', 'car']" in label_problem("boat", state)


def test_a_class_only_staging_knows_is_accepted() -> None:
    """A class that appeared after prod was trained: staging's labels of it are real outcomes."""
    state = _state("classification", ["no", "yes"], staging=["maybe", "no", "yes"])
    assert label_problem("Maybe", state) is None
    assert "expected one of ['no', 'yes', 'maybe']" in label_problem("never", state)
    assert label_problem("Maybe", _state("classification", ["no", "yes"])) is not None


def test_integer_coded_classes_accept_numbers_and_numeric_text() -> None:
    state = _state("classification", [1, 2, 3])
    assert [label_problem(v, state) for v in (2, 2.0, "3", " 1.0")] == [None, None, None, None]
    assert label_problem("yes", state) is not None  # yes/no words only map onto classes 0 / 1


def test_regression_accepts_numbers_in_any_spelling_and_refuses_the_rest() -> None:
    state = _state("regression")
    assert [label_problem(v, state) for v in (12.5, 3, "99.90", " 7 ")] == [None, None, None, None]
    assert label_problem(True, state) == "expected a number for a regression target, got bool"
    assert "got 'cheap'" in label_problem("cheap", state)
    assert "missing" in label_problem(None, state)


@pytest.mark.slow  # trains the router test's two models
def test_feedback_through_flask_names_the_field(client: FlaskClient) -> None:  # noqa: F811
    rid = client.post("/predict", json={"user_id": "u-labels", "features": {
        "ts": "2024-01-20T10:00:00Z", "city": "Oslo", "plan": "pro", "temp": 21.5, "amount": 12.0,
        "visits": 3}}).get_json()["request_id"]
    for spelling in ("YES", "0.0", True, " 1 "):
        assert client.post("/feedback", json={"request_id": rid, "label": spelling}).status_code == 200, spelling
    refused = client.post("/feedback", json={"request_id": rid, "label": "perhaps"})
    assert refused.status_code == 422
    errors = {e["field"]: e["problem"] for e in refused.get_json()["errors"]}
    assert "unknown class 'perhaps'" in errors["label"]

