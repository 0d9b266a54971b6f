"""``build_features(df, spec)``: the one feature function, called by training and by serving.

It only derives and types columns; imputation, encoding and scaling belong to the model
pipeline (fitted on training data), so the ``features`` table keeps missing values as missing.

Missing has one meaning in every role and on both paths (a training batch, a serving row): NaN,
None, ``pd.NA``, and for categorical and text columns also an empty or whitespace-only string
(:func:`normalize_strings`). The model reads a missing text as the empty document
(:func:`text_for_model`): PyCaret imputes numeric and categorical columns but hands text columns
straight to its TF-IDF vectorizer, which refuses NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lake.tables import BATCH_COLUMN, EVENT_TIME_COLUMN, TS
from serving.labels import canonical_target

# What a text column holds for the model when the value is missing: the empty document has no
# tokens, so TF-IDF gives it the zero vector -- "no words", the only reading that assumes nothing
# about the text. (An imputed "most frequent document" would invent words that were never sent.)
MISSING_TEXT = ""


@dataclass(frozen=True)
class FeatureSpec:
    """Everything ``build_features`` needs: roles of the columns and the task.

    Built from the configuration and the lake's schema contract (:meth:`from_contract`); the
    model registry stores it with each model so serving rebuilds exactly the training features.
    """

    task: str
    time_column: str
    target: str
    id_column: str | None
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    text: tuple[str, ...]
    time_features: tuple[str, ...]
    timezone: str = "UTC"

    @classmethod
    def from_contract(cls, contract, cfg) -> FeatureSpec:
        ids = contract.names("id")
        return cls(task=cfg.dataset.task, time_column=contract.time, target=contract.target,
                   id_column=ids[0] if ids else None, numeric=tuple(contract.names("numeric")),
                   categorical=tuple(contract.names("categorical")), text=tuple(contract.names("text")),
                   time_features=tuple(cfg.features.time_features), timezone=cfg.features.timezone)

    @property
    def feature_columns(self) -> list[str]:
        """Model inputs, in a fixed order: time features, numeric, categorical, text."""
        return [*self.time_features, *self.numeric, *self.categorical, *self.text]

    def arrow_schema(self, target_type: pa.DataType | None) -> pa.Schema:
        """Schema of the ``features`` table (target type as produced by :func:`encode_target`)."""
        fields = [pa.field(EVENT_TIME_COLUMN, TS)]
        fields += [pa.field(c, pa.int64()) for c in self.time_features]
        fields += [pa.field(c, pa.float64()) for c in self.numeric]
        fields += [pa.field(c, pa.string()) for c in (*self.categorical, *self.text)]
        if self.id_column:
            fields.append(pa.field(self.id_column, pa.string()))
        if target_type is not None:
            fields.append(pa.field(self.target, target_type))
        fields.append(pa.field(BATCH_COLUMN, pa.string()))
        return pa.schema(fields)


# The cycle of each calendar feature: a sample shorter than a few of these covers only some
# positions of the cycle, chosen by where it starts and ends (drift: where the batch was cut;
# training: which phases the window saw).
CALENDAR_PERIODS: dict[str, pd.Timedelta] = {
    "hour": pd.Timedelta(days=1),
    "day_of_week": pd.Timedelta(days=7),
    "is_weekend": pd.Timedelta(days=7),
    "day_of_month": pd.Timedelta(days=365.25 / 12),
    "month": pd.Timedelta(days=365.25),
    "day_of_year": pd.Timedelta(days=365.25),
}


def period_text(period: pd.Timedelta) -> str:
    """A calendar period in words: '7-day', 'month', 'year'."""
    days = period / pd.Timedelta(days=1)
    return f"{days:g}-day" if days < 28 else ("month" if days < 32 else "year")


def learnable_time_features(names: tuple[str, ...], span: pd.Timedelta, min_cycles: float
                            ) -> tuple[tuple[str, ...], dict[str, str]]:
    """The calendar features a model can learn from a training window spanning ``span`` of event
    time, and those left out with why: a feature whose period the window covers fewer than
    ``min_cycles`` times is not a season to the model but a clock. Under one cycle the later
    phases (the hold-out's, the future's) were never seen and a model extrapolates the last one
    seen; with one cycle each phase is seen once, so a one-off event (a month of a filtered feed)
    becomes that phase's rule. ``min_cycles`` 0 keeps every feature."""
    if min_cycles <= 0:
        return tuple(names), {}
    kept, dropped = [], {}
    for name in names:
        cycles = span / CALENDAR_PERIODS[name]
        if cycles < min_cycles:
            dropped[name] = (f"the training window spans {cycles:.2f} of its {period_text(CALENDAR_PERIODS[name])} "
                             f"period (< training.calendar_min_cycles {min_cycles:g})")
        else:
            kept.append(name)
    return tuple(kept), dropped


# One definition of each calendar feature, over anything with pandas' datetime attributes: a
# Series' ``.dt`` accessor (a training batch, :func:`time_features`) or one ``pd.Timestamp`` (a
# served row, :func:`calendar_of`), so both paths compute the same numbers by the same code.
CALENDAR_MAKERS: dict[str, Callable[[Any], Any]] = {
    "hour": lambda t: t.hour,
    "day_of_week": lambda t: t.dayofweek,
    "day_of_month": lambda t: t.day,
    "month": lambda t: t.month,
    "day_of_year": lambda t: t.dayofyear,
    "is_weekend": lambda t: (t.dayofweek >= 5) * 1,
}


def time_features(times: pd.Series, names: tuple[str, ...], timezone: str) -> pd.DataFrame:
    """Calendar features of event times, read in ``timezone``."""
    local = pd.to_datetime(times, utc=True).dt.tz_convert(timezone)
    return pd.DataFrame({n: CALENDAR_MAKERS[n](local.dt).astype("int64") for n in names}, index=times.index)


def calendar_of(when: pd.Timestamp, names: tuple[str, ...], timezone: str) -> list[int]:
    """The calendar features of one tz-aware event time, read in ``timezone``: what
    :func:`time_features` gives for it, one scalar per name (the router's frame-free path)."""
    local = when.tz_convert(timezone)
    return [int(CALENDAR_MAKERS[n](local)) for n in names]


def encode_target(values: pd.Series, task: str) -> pd.Series:
    """Regression: float. Classification: 0/1 for yes/no labels in any spelling, integers for
    integer labels in any spelling (``"1"``, ``1.0``), otherwise the labels as stripped strings
    (PyCaret encodes them). Missing, empty and whitespace-only labels stay missing: training and
    the hold-out read labelled rows only. The one definition of the label domain is
    :mod:`serving.labels` (the router's ``/feedback`` and the A/B analysis use it too)."""
    return canonical_target(values, task)


def target_arrow_type(task: str, encoded: pd.Series) -> pa.DataType:
    if task == "regression":
        return pa.float64()
    return pa.int64() if str(encoded.dtype) == "Int64" else pa.string()


def normalize_value(value: object) -> str | None:
    """One categorical / text value as :func:`normalize_strings` makes it (a stripped string, or
    None when missing): the definition both the batch and the row paths call."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float | np.floating)
                                                               and np.isnan(value)):
        return None
    return str(value).strip() or None


def normalize_strings(values: pd.Series) -> pd.Series:
    """Categorical / text values as the features table holds them: a string, or None when missing.

    Missing = NaN / None / ``pd.NA`` or a string that is empty or whitespace only (a CSV's empty
    cell, a form's blank field: no category and no token in it). Surrounding whitespace is cut, so
    ``" Oslo"`` at serving is the ``"Oslo"`` that ingestion's cleaning made of it in training (the
    serving path has no cleaning step); the inside of a text is kept as sent. Non-strings become
    their ``str`` (a number in a categorical column is a level like any other).
    """
    # one pass over plain Python values: about 4x faster than masked pandas assignments on the
    # router's one-row frames, where this runs once per column and request
    return pd.Series([normalize_value(v) for v in values], index=values.index, dtype=object)


def text_value_for_model(value: object) -> str:
    """One text as the model pipeline reads it: missing (None, NaN, blank) -> :data:`MISSING_TEXT`."""
    return normalize_value(value) or MISSING_TEXT


def text_for_model(values: pd.Series) -> pd.Series:
    """A text column as the model pipeline reads it (:func:`text_value_for_model` per value)."""
    return pd.Series([text_value_for_model(v) for v in values], index=values.index, dtype=object)


def build_features(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Model-ready rows: event time, time features, typed numeric / categorical / text columns,
    the id and the encoded target when present, and ``_batch_id`` when present.

    Works on a training batch (with target) and on a serving request (without one).
    """
    missing = [c for c in [spec.time_column, *spec.numeric, *spec.categorical, *spec.text] if c not in df.columns]
    if missing:
        raise KeyError(f"build_features: column(s) {missing} are missing")
    times = pd.to_datetime(df[spec.time_column], utc=True)
    out = pd.DataFrame({EVENT_TIME_COLUMN: times.astype("datetime64[us, UTC]")}, index=df.index)
    out = out.join(time_features(times, spec.time_features, spec.timezone))
    for col in spec.numeric:
        out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in (*spec.categorical, *spec.text):
        out[col] = normalize_strings(df[col])
    if spec.id_column and spec.id_column in df.columns:
        out[spec.id_column] = df[spec.id_column].astype(object).where(df[spec.id_column].notna(), None)
    if spec.target in df.columns:
        out[spec.target] = encode_target(df[spec.target], spec.task)
    if BATCH_COLUMN in df.columns:
        out[BATCH_COLUMN] = df[BATCH_COLUMN]
    return out.reset_index(drop=True)
