"""drift_sensor's cool-down measured on the stream (issue 11, observation 5): in batches (by default
until the newer batches can judge the requested model), in event time, or in wall-clock minutes.

A replay delivers a year of batches within minutes: with a wall-clock cool-down every drifted batch
after the first fell inside it, so one retraining happened per replay, whatever the data did."""

from __future__ import annotations

import pytest

from config.schema import DriftConfig
from sensors.drift import CoolDown, DriftCursor, DriftEvent, plan_drift_requests

DAY = 86_400.0
NOW = 1_700_000_000.0  # one wall-clock instant: the whole replay happens "now"
JUDGE_ROWS = 1000      # assets.training.data.judge_rows: a new model's hold-out


def event(i: int, *, drifted: bool = True, rows: int = 400, end_day: float | None = None,
          batch: str | None = None) -> DriftEvent:
    """Batch i of a stream of daily batches with ``rows`` labelled rows each."""
    return DriftEvent(storage_id=i, batch_id=batch or f"b{i}", timestamp=NOW, compared=True, drifted=drifted,
                      retrain_requested=drifted, prod_version=1, drifted_share=0.5 if drifted else 0.0,
                      batch_end=(i if end_day is None else end_day) * DAY, labelled_rows=rows)


def plan(events: list[DriftEvent], cfg: DriftConfig, cursor: DriftCursor | None = None, now: float = NOW):
    return plan_drift_requests(events, cursor or DriftCursor(), cfg, now, JUDGE_ROWS)


def test_default_cooldown_lasts_until_the_newer_batches_can_judge_the_model() -> None:
    """Ten drifted batches of 400 labelled rows in one wall-clock instant: a retraining at b1, then
    again once 1000 labelled rows arrived after it (b4: 3 x 400), then b7, b10. The old 60-minute
    wall-clock cool-down allowed only b1."""
    cfg = DriftConfig()
    assert (cfg.cooldown_unit, cfg.cooldown_batches) == ("batches", None)
    planned, cursor, skipped = plan([event(i) for i in range(1, 11)], cfg)
    assert [p.run_key for p in planned] == ["drift-1-b1", "drift-1-b4", "drift-1-b7", "drift-1-b10"]
    assert all(p.mode == "full" for p in planned)
    assert len(skipped) == 6
    assert "2 newer batch(es) with 800 labelled rows since b1" in skipped[1]
    assert "1000 labelled rows (a new model's hold-out)" in skipped[1]
    assert cursor.last_full.batch_id == "b10" and cursor.last_full.batch_end == 10 * DAY


def test_cooldown_state_survives_ticks_and_counts_unlabelled_batches_as_no_evidence() -> None:
    cfg = DriftConfig()
    first, cursor, _ = plan([event(1)], cfg)
    assert [p.run_key for p in first] == ["drift-1-b1"]
    # one batch per tick, as the daemon sees them; unlabelled batches bring nothing to judge on
    for i in (2, 3):
        planned, cursor, _ = plan([event(i, rows=0)], cfg, DriftCursor.parse(cursor.dump()))
        assert planned == []
    planned, cursor, _ = plan([event(4, rows=600)], cfg, DriftCursor.parse(cursor.dump()))
    assert planned == []  # 600 < 1000
    planned, _, _ = plan([event(5, rows=600)], cfg, DriftCursor.parse(cursor.dump()))
    assert [p.run_key for p in planned] == ["drift-1-b5"]


def test_a_recheck_of_the_same_or_an_older_batch_does_not_shorten_the_cooldown() -> None:
    cfg = DriftConfig(cooldown_batches=1)
    _, cursor, _ = plan([event(5)], cfg)
    rechecks = [event(6, batch="b5", end_day=5), event(7, batch="b3", end_day=3)]
    planned, cursor, _ = plan(rechecks, cfg, cursor)
    assert planned == [] and cursor.last_full.newer == {}
    planned, cursor, _ = plan([event(8, end_day=6, batch="b6")], cfg, cursor)
    assert planned == []  # the first newer batch is inside a 1-batch cool-down
    planned, _, _ = plan([event(9, end_day=7, batch="b7")], cfg, cursor)
    assert [p.run_key for p in planned] == ["drift-1-b7"]


def test_cooldown_in_event_time_uses_the_streams_clock() -> None:
    cfg = DriftConfig(cooldown_unit="event_time", cooldown_event_time="7D")
    planned, _, skipped = plan([event(i) for i in range(1, 17)], cfg)  # daily batches, one wall instant
    assert [r.event.batch_id for r in planned] == ["b1", "b8", "b15"]
    assert "6 days" in skipped[5] and "event-time cool-down 7D" in skipped[5]


def test_wall_clock_is_an_option_for_live_deployments() -> None:
    cfg = DriftConfig(cooldown_unit="wall_clock", cooldown_minutes=30)
    planned, cursor, skipped = plan([event(i) for i in range(1, 6)], cfg)
    assert [p.run_key for p in planned] == ["drift-1-b1"]
    assert "wall-clock cool-down 30 min" in skipped[0]
    assert plan([event(6)], cfg, cursor, now=NOW + 29 * 60)[0] == []
    assert [p.run_key for p in plan([event(7)], cfg, cursor, now=NOW + 31 * 60)[0]] == ["drift-1-b7"]


def test_a_refresh_waits_for_the_cooldown_of_any_request() -> None:
    cfg = DriftConfig(cooldown_batches=1)
    planned, _, skipped = plan([event(1), event(2, drifted=False), event(3, drifted=False)], cfg)
    assert [(r.mode, r.event.batch_id) for r in planned] == [("full", "b1"), ("refresh", "b3")]
    assert "refresh waits for the cool-down" in skipped[0]


def test_event_time_cooldown_needs_its_length() -> None:
    with pytest.raises(ValueError, match="cooldown_event_time"):
        DriftConfig(cooldown_unit="event_time")
    with pytest.raises(ValueError, match="not a pandas Timedelta"):
        DriftConfig(cooldown_unit="event_time", cooldown_event_time="a fortnight")


def test_cursor_round_trip_and_a_cursor_from_before_stream_cooldowns() -> None:
    cursor = DriftCursor(42, CoolDown(1.5, "b1", 86_400.0, {"b2": 300}), CoolDown(2.5, "b2", 2 * 86_400.0))
    assert DriftCursor.parse(cursor.dump()) == cursor
    assert DriftCursor.parse(None) == DriftCursor()
    old = DriftCursor.parse('{"after_storage_id": 7, "last_full_at": 10.0, "last_request_at": 12.0}')
    assert old == DriftCursor(7, CoolDown(10.0), CoolDown(12.0))
    # such a request has no event time: the wall-clock rule holds it, and the note says why
    held, _, skipped = plan([event(8)], DriftConfig(), old, now=10.0 + 30 * 60)
    assert held == [] and "wall-clock cool-down 60 min, as the request was recorded without event time" in skipped[0]
    assert [p.run_key for p in plan([event(9)], DriftConfig(), old, now=10.0 + 61 * 60)[0]] == ["drift-1-b9"]
