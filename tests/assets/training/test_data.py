"""The training window and hold-out sizes, derived from the data (no row count sized for one dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from assets.training.data import holdout_rows_needed, select_training_data
from assets.training.refresh import refresh_data, refresh_rows_needed
from config import load_config
from config.schema import PipelineConfig
from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN
from tests.conftest import write_config


def _cfg(tmp_path: Path, training: dict | None = None) -> PipelineConfig:
    return load_config(str(write_config(tmp_path / "cfg", {"training": training or {}})))


def _features(sizes: list[int], target: str, unlabelled: int = 0) -> pd.DataFrame:
    """Batches of the given sizes, one day apart; the last ``unlabelled`` rows of each have no target."""
    parts = []
    for i, n in enumerate(sizes):
        labels = [1.0] * (n - unlabelled) + [None] * unlabelled
        parts.append(pd.DataFrame({BATCH_COLUMN: f"batch_{i + 1:05d}", target: labels,
                                   EVENT_TIME_COLUMN: pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=i)
                                   + pd.to_timedelta(range(n), unit="s"), "x": range(n)}))
    return pd.concat(parts, ignore_index=True)


def test_four_small_batches_train_on_three_and_hold_out_the_latest(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    data = select_training_data(_features([100] * 4, cfg.dataset.target), cfg)  # 1,000 rows were needed before
    assert data.holdout_batches == ["batch_00004"] and len(data.holdout) == 100
    assert data.train_batches == ["batch_00001", "batch_00002", "batch_00003"]


def test_the_share_counts_labelled_rows_and_grows_with_the_data(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert holdout_rows_needed(1000, cfg.training) == 200 and holdout_rows_needed(3, cfg.training) == 1
    data = select_training_data(_features([300] * 10, cfg.dataset.target, unlabelled=100), cfg)
    assert data.holdout_batches == ["batch_00009", "batch_00010"]  # 20% of 2,000 labelled = 400 rows
    assert len(data.holdout) == 400 and len(data.train) == 1600


def test_a_share_never_takes_the_last_training_batch(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    data = select_training_data(_features([1000, 10, 10], cfg.dataset.target), cfg)
    assert data.train_batches == ["batch_00001"] and data.holdout_batches == ["batch_00002", "batch_00003"]
    with pytest.raises(ValueError, match="needs one to train on and a later one"):
        select_training_data(_features([500], cfg.dataset.target), cfg)


def test_an_explicit_holdout_size_is_kept(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {"holdout_min_rows": 250})
    data = select_training_data(_features([100] * 5, cfg.dataset.target), cfg)
    assert data.holdout_batches == ["batch_00003", "batch_00004", "batch_00005"]
    with pytest.raises(ValueError, match="holdout_min_rows = 250"):
        select_training_data(_features([100, 100], cfg.dataset.target), cfg)


def test_a_refresh_waits_for_as_many_new_rows_as_prods_hold_out(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    prod = {"version": 1, "training_batches": json.dumps(["batch_00001", "batch_00002", "batch_00003"]),
            "holdout_batches": json.dumps(["batch_00004"])}
    sizes = pd.Series({f"batch_{i:05d}": 120 for i in range(1, 7)})
    assert refresh_rows_needed(prod, sizes, cfg) == 120
    assert refresh_data(_features([120] * 4, cfg.dataset.target), prod, cfg) is None  # nothing new
    data = refresh_data(_features([120] * 6, cfg.dataset.target), prod, cfg)
    assert data is not None
    assert data.train_batches == ["batch_00004", "batch_00005"] and data.holdout_batches == ["batch_00006"]
    fixed = _cfg(tmp_path / "fixed", {"refresh_min_rows": 500})
    assert refresh_rows_needed(prod, sizes, fixed) == 500
    assert refresh_data(_features([120] * 6, cfg.dataset.target), prod, fixed) is None


def test_a_calendar_feature_is_an_input_only_when_the_window_spans_two_of_its_cycles() -> None:
    """The zoo's churn: seven months of training (January-July, July a filtered feed with no churner)
    and a hold-out of August-October. With ``month`` an input every model learnt "month >= 7 never
    churns" and scored worse than the class shares on the hold-out (log loss 0.66 against 0.58;
    the fallback 1.09). Seven months are 0.58 of a year: month is a clock there, not a season."""
    from assets.training.data import spec_for_window
    from features import FeatureSpec, learnable_time_features

    spec = FeatureSpec(task="classification", time_column="t", target="y", id_column=None, numeric=("x",),
                       categorical=(), text=(), time_features=("hour", "day_of_week", "month"))
    times = pd.date_range("2023-01-01", "2023-07-31 23:00", freq="h", tz="UTC")
    train = pd.DataFrame({EVENT_TIME_COLUMN: times, "x": 0.0, "y": 0})
    narrowed, left_out = spec_for_window(spec, train, 2.0)
    assert narrowed.time_features == ("hour", "day_of_week") and narrowed.numeric == ("x",)
    assert list(left_out) == ["month"]
    assert left_out["month"] == ("the training window spans 0.58 of its year period "
                                 "(< training.calendar_min_cycles 2)")
    # two weeks less an hour: under 2 cycles of day_of_week; 0 keeps everything
    kept, dropped = learnable_time_features(("hour", "day_of_week"), pd.Timedelta(days=14) - pd.Timedelta(hours=1),
                                            2.0)
    assert kept == ("hour",) and list(dropped) == ["day_of_week"]
    assert learnable_time_features(("month",), pd.Timedelta(days=3), 0.0) == (("month",), {})
    # two years and a day keep month; an unchanged spec is the same object (nothing to say)
    long = pd.DataFrame({EVENT_TIME_COLUMN: pd.to_datetime(["2021-01-01", "2023-01-03"], utc=True), "x": 0.0, "y": 0})
    same, none = spec_for_window(spec, long, 2.0)
    assert same is spec and none == {}
