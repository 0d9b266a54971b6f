"""Which features vote and which metric judges prod on a batch (issue 11, observation 5).

- the calendar features the batching sets (a two-day batch holds two days of the week) do not vote;
- on a batch with one class only AUC is undefined: prod is judged by log loss instead, and says so.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from assets.drift.compute import calendar_exclusions, drift_columns, feature_drifts, model_drift
from assets.drift.stats import calendar_not_voting, flag_features, persistent_for
from config import load_config
from config.loader import DEFAULT_CONFIG_PATH
from config.schema import DriftConfig
from features import CALENDAR_PERIODS, FeatureSpec, time_features
from lake.tables import EVENT_TIME_COLUMN

CALENDAR = ("hour", "day_of_week", "is_weekend", "day_of_month", "month", "day_of_year")
SPEC = FeatureSpec(task="classification", time_column="ts", target="y", id_column=None, numeric=("x",),
                   categorical=(), text=(), time_features=CALENDAR)


def hourly(start: str, hours: int, seed: int) -> pd.DataFrame:
    """Hourly rows with the calendar features and a numeric input that does not move."""
    times = pd.Series(pd.date_range(start, periods=hours, freq="h", tz="UTC"))
    frame = time_features(times, CALENDAR, "UTC")
    frame[EVENT_TIME_COLUMN] = times
    frame["x"] = np.random.default_rng(seed).normal(0, 1, hours)
    return frame


def test_every_calendar_feature_has_a_period() -> None:
    assert set(CALENDAR_PERIODS) == set(CALENDAR)  # features.time_features' makers
    with pytest.raises(KeyError, match="no period"):
        calendar_not_voting(["week_of_year"], pd.Timedelta(days=400), pd.Timedelta(days=400), 2)


def test_calendar_features_the_batching_sets_do_not_vote() -> None:
    """A 60-day reference and a 3-day batch (72 hourly rows x 4 = 288 rows, above min_current_rows):
    tested, day_of_week / is_weekend / day_of_month / day_of_year 'drift' although nothing in the data
    moved (the batch holds 3 days); by default only hour (3 whole days) votes, with x."""
    reference = hourly("2024-01-01", 60 * 24, seed=0)
    current = pd.concat([hourly("2024-03-04", 72, seed=s) for s in (1, 2, 3, 4)], ignore_index=True)
    cfg = DriftConfig()

    everything = flag_features(feature_drifts(reference, current, SPEC, cfg), alpha=cfg.alpha,
                               correction=cfg.correction, effect=cfg.effect, min_effect=cfg.effect_threshold,
                               min_rows=cfg.min_current_rows).set_index("feature")["drifted"]
    assert everything[["day_of_week", "day_of_month", "day_of_year"]].all()  # the batching, not the data
    assert not everything[["hour", "x"]].any()

    not_voting = calendar_exclusions(reference, current, SPEC, cfg)
    assert sorted(not_voting) == ["day_of_month", "day_of_week", "day_of_year", "is_weekend", "month"]
    assert not_voting["day_of_week"] == "the batch spans 0.42 of its 7-day period (< 2)"
    assert "reference spans" not in not_voting["month"]  # both are short; the batch is the shorter
    numeric, _, _ = drift_columns(SPEC, cfg, not_voting)
    assert numeric == ["hour", "x"]
    assert DriftConfig().exclude_columns == []  # month / day_of_year need no hard-coded entry any more

    # a batch of ten weeks and a reference of a year and a half: hour, day_of_week, day_of_month vote, month not
    long_ref, long_cur = hourly("2022-01-01", 550 * 24, seed=5), hourly("2023-07-10", 70 * 24, seed=6)
    assert sorted(calendar_exclusions(long_ref, long_cur, SPEC, cfg)) == ["day_of_year", "month"]
    assert calendar_exclusions(reference, current, SPEC, DriftConfig(calendar_min_cycles=0)) == {}


def test_model_drift_on_a_one_class_batch_uses_log_loss_and_says_so() -> None:
    """Prod calls 67% of a batch whose rows are all class 1 the wrong class: AUC is undefined on it
    (the old code then reported no model drift); log loss is defined and fires."""
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.sort_metric == "AUC"
    spec = FeatureSpec(task="classification", time_column="ts", target="y", id_column=None, numeric=("x",),
                       categorical=(), text=(), time_features=())
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 2000)})
    train["y"] = (train["x"] + rng.normal(0, 0.5, 2000) > 0).astype(int)
    model = LogisticRegression().fit(train[["x"]], train["y"])
    holdout_logloss = 0.30
    prod_row = {"holdout_metrics": json.dumps({"AUC": 0.93, "LogLoss": holdout_logloss, "Accuracy": 0.87})}

    batch = pd.DataFrame({"x": np.r_[rng.normal(-1.0, 0.3, 200), rng.normal(1.0, 0.3, 100)], "y": 1})
    proba = model.predict_proba(batch[["x"]])
    pred = np.asarray(model.classes_, dtype=object)[proba.argmax(axis=1)]
    assert (pred == 0).mean() == pytest.approx(2 / 3, abs=0.02)

    out = model_drift(model, prod_row, batch, spec, cfg, outputs=(pred, proba))
    assert out["model_metric"] == "LogLoss"
    assert out["model_metric_note"].startswith("AUC is undefined on these rows (one class only, or a constant "
                                               "target), so LogLoss decides; ")
    # a row without recorded hold-out errors (registered before they were): scaled from the batch, said so
    assert "not recorded for this version: scaled from the batch's to 300 hold-out rows" in out["model_metric_note"]
    assert out["model_p_value"] < 1e-6
    assert out["model_metric_reference"] == holdout_logloss
    assert out["model_metric_current"] > 1.0
    assert out["model_drop"] == pytest.approx(out["model_metric_current"] / holdout_logloss - 1)
    assert out["model_drifted"] is True

    # both classes present: the sort metric, no note on the metric; the hold-out's recorded error is used
    mixed = batch.assign(y=(batch["x"] > 0).astype(int))
    recorded = {**prod_row, "gate": json.dumps({"holdout_rows": 2000, "holdout_standard_errors": {"AUC": 0.006}})}
    both = model_drift(model, recorded, mixed, spec, cfg, outputs=(pred, proba))
    assert both["model_metric"] == "AUC" and both["model_metric_note"].startswith("worse by ")
    assert "AUC is undefined" not in both["model_metric_note"] and "not recorded" not in both["model_metric_note"]


def test_persistence_in_event_time_is_the_same_rule_for_hourly_and_daily_batches() -> None:
    """'drifted for 3 days': 72 hourly batches or 3 daily ones, where persistence_batches would need
    a different count for each cadence."""
    t0 = pd.Timestamp("2024-05-01", tz="UTC")
    three_days = pd.Timedelta("3D")
    hourly_run = [(True, t0 + pd.Timedelta(hours=h)) for h in range(72)]
    assert persistent_for(hourly_run, t0 + pd.Timedelta(hours=71, minutes=59), three_days) is False
    assert persistent_for([*hourly_run, (True, t0 + pd.Timedelta(hours=72))], t0 + pd.Timedelta(hours=72, minutes=59),
                          three_days) is True
    daily = [(True, t0), (True, t0 + pd.Timedelta("1D")), (True, t0 + pd.Timedelta("2D"))]
    assert persistent_for(daily, t0 + pd.Timedelta("3D"), three_days) is True
    broken = [(True, t0), (False, t0 + pd.Timedelta("1D")), (True, t0 + pd.Timedelta("2D"))]
    assert persistent_for(broken, t0 + pd.Timedelta("3D"), three_days) is False  # the run restarted on day 3
    assert persistent_for([*daily[:2], (False, t0 + pd.Timedelta("2D"))], t0 + pd.Timedelta("3D"), three_days) is False
    assert DriftConfig(persistence_event_time="3D").persistence_event_time == "3D"
    with pytest.raises(ValueError, match="persistence_event_time 'soon' is not a pandas Timedelta"):
        DriftConfig(persistence_event_time="soon")
