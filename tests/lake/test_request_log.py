"""The request log's line format: the one builder of each event, read back by the ingestion's parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from lake.request_log import (
    ANSWER_FIELDS,
    FEEDBACK,
    PREDICTION,
    BadLine,
    answer_of,
    feedback_event,
    parse_line,
    parse_segment,
    prediction_event,
    shadow_event,
)

T = "2026-12-02T06:30:00.250000+00:00"


def _prediction(**changes) -> dict:
    fields = dict(request_id="r1", variant="B", experiment_id="exp-1", model_version=7, model_used="staging",
                  fallback_reason=None, prediction=1, probability=0.8125, latency_ms=3.5, user_id="u9",
                  features={"temp": 21.5, "city": "Lyon"}, worker="host-12", time=T)
    return prediction_event(**{**fields, **changes})


def _line(event: dict) -> bytes:
    return json.dumps(event).encode()


def test_a_prediction_event_reads_back_as_its_ab_events_row() -> None:
    shadow = {"model_version": 6, "prediction": 0, "probability": 0.625, "model_ms": 0.25}
    kind, row = parse_line(_line(_prediction(shadow=shadow, model_ms=0.5)))
    assert kind == PREDICTION
    assert row == {"request_id": "r1", "event_time": datetime(2026, 12, 2, 6, 30, 0, 250000, tzinfo=UTC),
                   "user_id": "u9", "variant": "B", "experiment_id": "exp-1", "model_version": 7,
                   "model_used": "staging", "fallback_reason": None,
                   "features": '{"city": "Lyon", "temp": 21.5}', "prediction": "1", "prediction_value": 1.0,
                   "probability": 0.8125, "latency_ms": 3.5, "model_ms": 0.5, "shadow_version": 6,
                   "shadow_prediction": "0", "shadow_probability": 0.625, "shadow_model_ms": 0.25,
                   "worker": "host-12", "error": None}


def test_the_answer_is_the_events_answer_fields_and_nothing_logged_only() -> None:
    event = _prediction(error=None)
    answer = answer_of(event)
    assert list(answer) == list(ANSWER_FIELDS)
    assert answer["request_id"] == "r1" and answer["probability"] == 0.8125
    assert not {"features", "user_id", "worker", "time", "type", "shadow"} & set(answer)
    assert "shadow" not in event  # only a shadowed row carries one


def test_a_failed_row_is_logged_with_its_error_and_no_prediction() -> None:
    kind, row = parse_line(_line(_prediction(model_used="none", prediction=None, probability=None,
                                             error="staging v7: ValueError: boom")))
    assert kind == PREDICTION
    assert (row["model_used"], row["prediction"], row["prediction_value"], row["error"]) == \
        ("none", "null", None, "staging v7: ValueError: boom")


def test_a_feedback_event_reads_back_as_its_ab_feedback_row() -> None:
    kind, row = parse_line(_line(feedback_event(feedback_id="f1", request_id="r1", label="yes", worker="w",
                                                time=T)))
    assert kind == FEEDBACK
    assert row == {"feedback_id": "f1", "request_id": "r1",
                   "event_time": datetime(2026, 12, 2, 6, 30, 0, 250000, tzinfo=UTC), "label": '"yes"',
                   "label_value": None, "worker": "w"}


def test_events_get_the_time_of_writing_in_utc_by_default() -> None:
    before = datetime.now(UTC)
    _, row = parse_line(_line(feedback_event(feedback_id="f", request_id="r", label=2.5, worker="w")))
    assert before <= row["event_time"] <= datetime.now(UTC) and row["label_value"] == 2.5


@pytest.mark.parametrize(("line", "why"), [
    (b'{"type": "prediction", "request_id": "r"}', "missing 'prediction'"),
    (b'{"type": "click"}', "unknown event type 'click'"),
    (b'[1, 2]', "not a JSON object"),
])
def test_lines_that_are_not_events_are_refused_with_the_reason(line: bytes, why: str) -> None:
    with pytest.raises(BadLine, match=why):
        parse_line(line)


def test_a_segment_keeps_its_good_lines_and_counts_the_bad_ones() -> None:
    data = b"\n".join([_line(_prediction()), b"{broken", _line(feedback_event(
        feedback_id="f", request_id="r1", label=1, worker="w", time=T)), b'{"type": "prediction"'])
    events, feedback, shadows = [], [], []
    data = data.replace(b"{broken", b"{broken\n" + _line(shadow_event(
        request_id="r1", model_version=6, prediction="no", probability=0.25, model_ms=0.125, worker="w", time=T)))
    skipped = parse_segment("seg.jsonl", data, events, feedback, shadows)  # the last line lacks its newline
    assert skipped == 2
    assert [e["request_id"] for e in events] == ["r1"] and [f["feedback_id"] for f in feedback] == ["f"]
    assert events[0]["segment"] == feedback[0]["segment"] == "seg.jsonl"
    assert shadows == [{"request_id": "r1", "shadow_version": 6, "shadow_prediction": '"no"',
                        "shadow_probability": 0.25, "shadow_model_ms": 0.125}]
