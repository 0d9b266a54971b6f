"""Typing raw values the same way at ingestion and at serving: numbers, UTC times and text."""

from __future__ import annotations

import numpy as np
import pandas as pd


def parse_numeric(values: pd.Series) -> pd.Series:
    """Numbers from numbers, numeric strings or booleans; anything else becomes NaN."""
    if values.dtype == bool:
        return values.astype("float64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def parse_time(values: pd.Series) -> pd.Series:
    """UTC timestamps; naive values are taken as UTC, unparseable ones become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values
    else:
        out = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        if out.isna().sum() > values.isna().sum():  # not ISO: let pandas infer the format
            out = pd.to_datetime(values, errors="coerce", utc=True)
    if getattr(out.dt, "tz", None) is None:
        out = out.dt.tz_localize("UTC")
    return out.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def parse_time_value(value: str) -> pd.Timestamp | None:
    """One time string as a UTC timestamp (naive = UTC, as :func:`parse_time` reads a column), or
    None when it is not a time or lies outside pandas' nanosecond range. The router's validation
    and its frame-free feature path both read a row's time through this one function."""
    try:
        when = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if when is pd.NaT:
        return None
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def blank_as_missing(values: pd.Series) -> pd.Series:
    """Empty or whitespace-only strings -> None (a blank cell or field is a missing value, not a
    value of the wrong type); everything else unchanged."""
    if values.dtype != object and not pd.api.types.is_string_dtype(values):
        return values
    blank = values.map(lambda v: isinstance(v, str) and not v.strip())
    return values.astype(object).mask(blank.astype(bool), None) if blank.any() else values


def as_text(values: pd.Series) -> pd.Series:
    """Strings with missing values kept missing (1.0 stays '1.0', True becomes 'True')."""
    out = values.astype(object)
    mask = out.notna()
    out[mask] = out[mask].map(_to_str)
    out[~mask] = None
    return out


def _to_str(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def share(mask: pd.Series | np.ndarray) -> float:
    """Mean of a boolean mask, 0.0 for an empty one."""
    return float(np.mean(mask)) if len(mask) else 0.0
