"""The frame-free feature path of served rows: validated JSON values -> the compiled scorer's
:data:`~serving.compiled.Columns`, without building a DataFrame.

For a handful of rows, pandas' column-by-column typing (``serving.scoring.type_errors``) and
``features.build_features`` cost more than the model (about 6 ms for one row against 0.02–0.5 ms
for the compiled scorer). The values the router hands over were validated against the model's
input schema (``router.validation.check_features``): the time is an ISO string, numbers are
finite ints / floats, categories and texts are strings, any of them may be None. This module
turns them into the same arrays ``columns_of(build_features(type_errors(frame)))`` gives, through
the same per-value definitions the batch path uses:

- the time: :func:`serving.parsing.parse_time_value` (the router's validation reads it so too)
  and the calendar features by :data:`features.CALENDAR_MAKERS` (:func:`features.calendar_of`);
- categories: :func:`features.normalize_value` (stripped string, None when blank or missing);
- texts: :func:`features.text_value_for_model` (the empty document when missing);
- numbers: float, NaN when missing (``pd.to_numeric`` of a validated number is that float).

``tests/serving/test_request_features.py`` checks that both paths give identical arrays on every
zoo dataset and the default data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features import FeatureSpec, calendar_of, normalize_value, text_value_for_model
from serving.compiled import Columns
from serving.parsing import parse_time_value


class ValueUnreadable(ValueError):
    """A value the batch path would have refused too (a time that is not one); names the row."""


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        # validation lets only numbers through; a string here would be typed differently by
        # the batch path (parse_numeric), so refuse rather than guess
        raise TypeError(f"expected a validated number, got {type(value).__name__}")
    return float(value)


def columns_of_values(rows: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> Columns:
    """:data:`~serving.compiled.Columns` of validated request rows (field -> value), equal to
    ``columns_of(build_features(type_errors(frame)))`` of the same rows as a frame."""
    n = len(rows)
    cols: Columns = {}
    if spec.time_features:
        calendar = np.empty((n, len(spec.time_features)), dtype=np.float64)
        for i, row in enumerate(rows):
            raw = row.get(spec.time_column)
            when = parse_time_value(raw) if isinstance(raw, str) else None
            if when is None:
                raise ValueUnreadable(f"row {i}: {spec.time_column}: missing or not a time")
            calendar[i] = calendar_of(when, spec.time_features, spec.timezone)
        for j, name in enumerate(spec.time_features):
            cols[name] = calendar[:, j]
    for name in spec.numeric:
        cols[name] = np.fromiter((_number(row.get(name)) for row in rows), dtype=np.float64, count=n)
    for name in spec.categorical:
        values = np.empty(n, dtype=object)
        values[:] = [normalize_value(row.get(name)) for row in rows]
        cols[name] = values
    for name in spec.text:
        values = np.empty(n, dtype=object)
        values[:] = [text_value_for_model(row.get(name)) for row in rows]
        cols[name] = values
    return cols
