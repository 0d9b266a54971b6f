"""The training window and the hold-out: batches in event-time order, the most recent held out."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from config.schema import PipelineConfig, TrainingConfig
from features import FeatureSpec, learnable_time_features
from lake.delta import Lake
from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN, FEATURES


@dataclass(frozen=True)
class TrainingData:
    """The training window and the hold-out, both in event-time order."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    train_batches: list[str]
    holdout_batches: list[str]


def time_ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in event-time order, ties broken by the rows' content: the same table gives the same
    order whatever order its files were read in (the time is hourly in the default data, so many
    rows tie, and the read order follows file names that change with every write). Training
    folds, the row cap and the drift reference sample depend on this order."""
    key = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    # as datetime64 (UTC): a tz-aware column would give an object array of Timestamps, 30x slower to sort
    times = frame[EVENT_TIME_COLUMN].to_numpy(dtype="datetime64[ns]")
    return frame.iloc[np.lexsort((key, times))]


def holdout_rows_needed(labelled_rows: int, t: TrainingConfig) -> int:
    """How many labelled rows the hold-out must hold: ``holdout_min_rows`` when set, else
    ``holdout_share`` of the ``labelled_rows`` available (rounded up, at least one)."""
    return t.holdout_min_rows or max(1, math.ceil(t.holdout_share * labelled_rows))


def judge_rows(lake: Lake, cfg: PipelineConfig) -> int:
    """Labelled rows a model trained now would be judged on: ``holdout_min_rows`` when set, else
    :func:`holdout_rows_needed` of the labelled rows of `features` (drift_sensor's default cool-down:
    a retraining is not requested again before that much new evidence arrived)."""
    if cfg.training.holdout_min_rows:
        return cfg.training.holdout_min_rows
    target = cfg.dataset.target
    labelled = lake.read(FEATURES, columns=[target], missing_ok=True)
    return holdout_rows_needed(int(labelled[target].notna().sum()) if len(labelled) else 0, cfg.training)


def hold_out_latest(order: list[str], sizes: pd.Series, needed: int, keep: int = 0) -> list[str]:
    """The most recent batches of ``order`` (oldest first) holding at least ``needed`` rows, taken
    off ``order``, leaving at least ``keep`` batches in it (so fewer rows when it must)."""
    held: list[str] = []
    while len(order) > keep and sizes[held].sum() < needed:
        held.insert(0, order.pop())
    return held


def select_training_data(features: pd.DataFrame, cfg: PipelineConfig) -> TrainingData:
    """Split the ``features`` table by batch in time order: hold-out = the most recent batches
    holding at least :func:`holdout_rows_needed` rows, at least one; training = the batches before
    (the last ``window_batches`` of them if set, at least one), capped to the most recent
    ``max_train_rows`` rows."""
    t = cfg.training
    labelled = features[features[cfg.dataset.target].notna()]
    order = labelled.groupby(BATCH_COLUMN)[EVENT_TIME_COLUMN].min().sort_values().index.tolist()
    sizes = labelled.groupby(BATCH_COLUMN).size()
    needed = holdout_rows_needed(int(sizes.sum()), t)
    if len(order) < 2:
        raise ValueError(f"not enough batches to train: {len(order)} batch(es) with labelled rows; a model "
                         "needs one to train on and a later one to be judged on")
    # a share never takes the last training batch; an explicit size is the user's and may
    holdout_batches = hold_out_latest(order, sizes, needed, keep=0 if t.holdout_min_rows else 1)
    if not order:  # only an explicit holdout_min_rows can ask for more than all but one batch
        raise ValueError(f"not enough batches to train: {len(holdout_batches)} batch(es) with "
                         f"{int(sizes.sum())} labelled rows are all needed for the hold-out "
                         f"(training.holdout_min_rows = {t.holdout_min_rows})")
    train_batches = order[-t.window_batches:] if t.window_batches else order
    train = time_ordered(labelled[labelled[BATCH_COLUMN].isin(train_batches)])
    if t.max_train_rows and len(train) > t.max_train_rows:
        train = train.iloc[-t.max_train_rows:]
        train_batches = [b for b in train_batches if b in set(train[BATCH_COLUMN])]
    holdout = time_ordered(labelled[labelled[BATCH_COLUMN].isin(holdout_batches)])
    return TrainingData(train.reset_index(drop=True), holdout.reset_index(drop=True), train_batches, holdout_batches)


def spec_for_window(spec: FeatureSpec, train: pd.DataFrame, min_cycles: float) -> tuple[FeatureSpec, dict[str, str]]:
    """``spec`` with only the calendar features the training window can teach
    (:func:`features.learnable_time_features` over the window's event-time span), and the ones
    left out with why. The model's registered spec is this one: serving and drift use the inputs
    the model was trained on."""
    times = pd.to_datetime(train[EVENT_TIME_COLUMN], utc=True)
    span = (times.max() - times.min()) if len(times) else pd.Timedelta(0)
    kept, dropped = learnable_time_features(spec.time_features, span, min_cycles)
    return (replace(spec, time_features=kept) if dropped else spec), dropped
