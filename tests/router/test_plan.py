"""router.plan on a /predict_batch with odd and poisoned rows, without Flask or PyCaret: one row the
staging model fails on is rescued by the fallback on its own, every other row stays on its assigned
model, and only that row counts in B's error rate; missing texts are scored like any row."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from config.schema import RouterConfig
from lake.experiments import RUNNING, Experiment
from lake.request_log import closed_segments, parse_line
from router.event_log import EventLog
from router.model_pool import PoolState
from router.plan import predict
from router.schemas import PredictRequest
from router.split import assign
from router.validation import RequestInvalid
from tests.support.fake_models import POISON, Poisoned, fit_mail_pipeline, served

EXPERIMENT = Experiment("exp-plan", 1, 3, 0.5, RUNNING)
ODD_TEXTS = [None, "", "   ", "free prize", "team notes"]


@pytest.fixture(scope="module")
def pipeline():
    return fit_mail_pipeline()


def _state(pipeline, staging_model, fallback: bool = True, fallback_model=None) -> PoolState:
    return PoolState(prod=served(pipeline, 1), staging=served(staging_model, 3),
                     fallback=served(fallback_model or pipeline, 4) if fallback else None,
                     experiment=EXPERIMENT, aliases={"prod": 1, "staging": 3, "fallback": 4})


def _rows(n: int = 40) -> tuple[list[PredictRequest], int]:
    """``n`` rows with missing / empty / blank texts among them; the first B user's subject is poisoned."""
    users = [f"user-{i}" for i in range(n)]
    poisoned = next(i for i, u in enumerate(users) if assign(EXPERIMENT.experiment_id, u, 0.5) == "B")
    rows = [PredictRequest(user_id=u, features={
        "ts": "2024-02-01T10:00:00Z", "subject": f"a {POISON} pill" if i == poisoned else ODD_TEXTS[i % 5],
        "body": ODD_TEXTS[(i + 2) % 5], "domain": "corp.example", "length": 10.0 + i, "msg_id": f"m{i}"})
        for i, u in enumerate(users)]
    return rows, poisoned


def _events(folder: Path, log: EventLog) -> list[dict]:
    log.close()
    return [parse_line(line)[1] for seg in closed_segments(folder) for line in seg.read_bytes().splitlines()]


def test_one_poisoned_row_leaves_the_others_on_their_assigned_model(pipeline, tmp_path: Path) -> None:
    cfg = RouterConfig()
    staging = Poisoned(pipeline)
    log = EventLog(tmp_path, cfg.event_log, writer_id="w1")
    rows, poisoned = _rows()
    answers = predict(SimpleNamespace(state=_state(pipeline, staging), last_error=None), rows, cfg, log,
                      prefix="rows.")
    assert len(answers) == len(rows)
    hit = answers[poisoned]
    assert (hit["variant"], hit["model_used"], hit["fallback_reason"], hit["model_version"]) == \
        ("B", "fallback", "model error", 4)
    others = [a for i, a in enumerate(answers) if i != poisoned]
    assert {a["variant"] for a in others} == {"A", "B"}
    assert all(a["model_used"] == {"A": "prod", "B": "staging"}[a["variant"]] for a in others)
    assert all(a["fallback_reason"] is None and a["prediction"] in (0, 1) for a in others)
    events = _events(tmp_path, log)
    assert len(events) == len(rows)
    errors = [e for e in events if e["error"]]
    assert [e["user_id"] for e in errors] == [rows[poisoned].user_id]
    assert errors[0]["error"] == "staging v3: ValueError: cannot take this value"
    b_events = [e for e in events if e["variant"] == "B"]
    # B's error rate is the share of its rows that truly failed, not 100% of the batch's B rows
    assert len(errors) / len(b_events) == pytest.approx(1 / sum(a["variant"] == "B" for a in answers))


def test_without_a_fallback_only_the_failing_row_is_logged_as_an_error(pipeline, tmp_path: Path) -> None:
    cfg = RouterConfig()
    log = EventLog(tmp_path, cfg.event_log, writer_id="w2")
    rows, poisoned = _rows()
    with pytest.raises(RequestInvalid) as failed:
        predict(SimpleNamespace(state=_state(pipeline, Poisoned(pipeline), fallback=False), last_error=None),
                rows, cfg, log, prefix="rows.")
    assert failed.value.status == 500 and failed.value.problems[0].field == "model"
    assert "staging v3: ValueError: cannot take this value (1 of " in failed.value.problems[0].problem
    events = _events(tmp_path, log)
    assert [(e["user_id"], e["model_used"]) for e in events] == [(rows[poisoned].user_id, "none")]


def test_a_fallback_failing_on_the_same_row_fails_the_request_naming_both(pipeline, tmp_path: Path) -> None:
    cfg = RouterConfig()
    log = EventLog(tmp_path, cfg.event_log, writer_id="w3")
    rows, poisoned = _rows()
    state = _state(pipeline, Poisoned(pipeline), fallback_model=Poisoned(pipeline))
    with pytest.raises(RequestInvalid) as failed:
        predict(SimpleNamespace(state=state, last_error=None), rows, cfg, log, prefix="rows.")
    problem = failed.value.problems[0].problem
    assert failed.value.status == 500 and "staging v3: ValueError" in problem and "fallback v4: ValueError" in problem
    events = _events(tmp_path, log)
    assert [e["user_id"] for e in events] == [rows[poisoned].user_id]
    assert json.dumps(events[0]["error"]).count("cannot take this value") == 1
