"""Stream emulator: time order, batch cutting, atomic files, persistent position."""

import itertools

import pandas as pd

from config.schema import StreamConfig
from stream.emulator import StreamEmulator, order_by_time, plan_batches
from tests.conftest import make_source


def test_order_by_time_sorts_and_drops_untimed_rows() -> None:
    df = pd.DataFrame({"t": ["2024-01-03", "2024-01-01", None, "2024-01-02", "garbage"], "v": [3, 1, 9, 2, 8]})
    ordered = order_by_time(df, "t")
    assert ordered["v"].tolist() == [1, 2, 3]


def test_rows_batches_cover_the_source_in_order() -> None:
    ordered = order_by_time(make_source(1000), "ts")
    plan = plan_batches(ordered, StreamConfig(batch_by="rows", batch_rows=300))
    assert [(b.start, b.stop) for b in plan] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    assert [b.batch_id for b in plan] == ["batch_00001", "batch_00002", "batch_00003", "batch_00004"]
    assert all(a.time_max <= b.time_min for a, b in itertools.pairwise(plan))


def test_time_windows_follow_calendar_and_tick_offsets() -> None:
    times = pd.Series(pd.date_range("2024-01-30 12:00", "2024-03-02", freq="6h", tz="UTC"))
    ordered = order_by_time(pd.DataFrame({"t": times.astype(str)}), "t")
    monthly = plan_batches(ordered, StreamConfig(batch_by="time", batch_window="1MS"))
    assert [(b.time_min.month, b.time_max.month) for b in monthly] == [(1, 1), (2, 2), (3, 3)]
    assert monthly[0].time_max == pd.Timestamp("2024-01-31 18:00", tz="UTC")
    weekly = plan_batches(ordered, StreamConfig(batch_by="time", batch_window="7D"))
    assert weekly[0].time_min == pd.Timestamp("2024-01-30 12:00", tz="UTC")
    assert weekly[1].time_min == pd.Timestamp("2024-02-06 00:00", tz="UTC")  # 7 days from the first midnight
    assert sum(b.stop - b.start for b in weekly) == len(ordered)
    capped = plan_batches(ordered, StreamConfig(batch_by="time", batch_window="7D", max_batches=2))
    assert len(capped) == 2


def test_emit_writes_batches_one_by_one_and_remembers_position(toy_cfg, paths) -> None:
    emulator = StreamEmulator(toy_cfg, paths)
    first = emulator.emit_next()
    assert first is not None and first.name == "batch_00001.csv"
    assert first.location == f"{paths.root.resolve()}/inbox/batch_00001.csv"
    written = pd.read_csv(paths.inbox / first.name)
    assert len(written) == 300 and written["ts"].is_monotonic_increasing
    assert not [p for p in paths.inbox.iterdir() if p.name.startswith(".")]  # no temp file left
    assert not list(paths.root.glob(".emit.*"))
    # a new emulator (another process) continues where the last one stopped
    rest = StreamEmulator(toy_cfg, paths).emit_all()
    assert [b.batch_id for b in rest] == ["batch_00002", "batch_00003"]
    assert StreamEmulator(toy_cfg, paths).emit_next() is None
    emulator.reset()
    assert StreamEmulator(toy_cfg, paths).position() == 0


def test_default_dataset_streams_real_flights_in_monthly_batches() -> None:
    from config import load_config
    from stream.sources import load_source

    cfg = load_config()
    source = load_source(cfg.dataset)
    assert len(source) == 336_776
    assert source["is_delayed"].mean().round(3) == 0.259
    assert source["wind_gust"].isna().mean() > 0.5  # natural missing values from the weather join
    plan = plan_batches(order_by_time(source, cfg.dataset.time_column), cfg.stream)
    assert len(plan) == 13  # Jan..Dec 2013 plus a few UTC hours of 2014-01-01
    assert plan[0].stop - plan[0].start == 26_865
