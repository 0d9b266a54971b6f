"""Checks of a request's ``features`` against the served model's input schema (from the registry),
and the rule that sends sparse or anomalous rows to the fallback model.

Plain functions: no Flask. Every problem is a :class:`Problem` naming the field, so the view can
answer 422 with all of them at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from config.schema import RouterConfig
from serving.parsing import parse_time_value

# input_schema stores at most this many categories per column (assets.training.registration.input_schema):
# a shorter list is the whole vocabulary seen in training, a full one may not be.
STORED_CATEGORIES = 200
# the event times ingestion and scoring can hold: pandas' nanosecond timestamps (serving.parsing.parse_time)
TIME_MIN = pd.Timestamp.min.tz_localize("UTC")
TIME_MAX = pd.Timestamp.max.tz_localize("UTC")


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str


class RequestInvalid(ValueError):
    """The request cannot be answered as sent; ``problems`` name each field."""

    def __init__(self, problems: list[Problem], status: int = 422) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems
        self.status = status


@dataclass(frozen=True)
class Checked:
    """A row that passed validation, with what the fallback rule needs to know about it."""

    values: dict[str, Any]          # the model's raw input fields (unknown ones dropped if allowed)
    missing_share: float
    out_of_range: list[str]
    unseen: list[str]               # categorical fields with a category never seen in training

    def fallback_reason(self, cfg: RouterConfig, numeric_count: int) -> str | None:
        """Why this row goes to the fallback model, or None."""
        reasons = []
        if self.missing_share > cfg.fallback_max_missing_share:
            reasons.append(f"{self.missing_share:.0%} of the features missing "
                           f"(limit {cfg.fallback_max_missing_share:.0%})")
        share = len(self.out_of_range) / numeric_count if numeric_count else 0.0
        if share > cfg.fallback_max_out_of_range_share:
            reasons.append(f"outside the training range: {', '.join(self.out_of_range)}")
        if self.unseen and cfg.unknown_categories == "fallback":
            reasons.append(f"unseen categories: {', '.join(self.unseen)}")
        return "; ".join(reasons) or None


def expected_fields(schema: dict) -> dict[str, str]:
    """Field name -> kind (time | numeric | categorical | text | id) of a model's input schema."""
    spec = schema["spec"]
    fields = {spec["time_column"]: "time"}
    fields.update({c: "numeric" for c in spec["numeric"]})
    fields.update({c: "categorical" for c in spec["categorical"]})
    fields.update({c: "text" for c in spec["text"]})
    if spec.get("id_column"):
        fields[spec["id_column"]] = "id"
    return fields


def check_features(features: dict[str, Any], schema: dict, cfg: RouterConfig, prefix: str = "features") -> Checked:
    """Validate one row's features; raise RequestInvalid naming every bad field."""
    fields = expected_fields(schema)
    problems: list[Problem] = []
    unknown = sorted(set(features) - set(fields))
    if unknown and cfg.unknown_fields == "reject":
        problems += [Problem(f"{prefix}.{name}", "unknown field: the model has no such input") for name in unknown]
    values: dict[str, Any] = {}
    missing = 0
    out_of_range: list[str] = []
    unseen: list[str] = []
    ranges = schema.get("numeric_ranges", {})
    categories = schema.get("categories", {})
    for name, kind in fields.items():
        where = f"{prefix}.{name}"
        if name not in features:
            if kind != "id":
                problems.append(Problem(where, f"required ({_expected(kind)}; send null if unknown)"))
            continue
        value = features[name]
        if value is None:
            if kind == "time":
                problems.append(Problem(where, "must not be null: the time features derive from it"))
            elif kind != "id":
                missing += 1
            values[name] = None
            continue
        problem = _type_problem(kind, value)
        if problem:
            problems.append(Problem(where, problem))
            continue
        values[name] = value
        if kind == "numeric" and name in ranges and _outside(float(value), ranges[name], cfg.range_margin):
            out_of_range.append(name)
        if kind == "categorical":
            known = categories.get(name)
            if known is not None and len(known) < STORED_CATEGORIES and value not in known:
                if cfg.unknown_categories == "reject":
                    problems.append(Problem(where, f"unknown category {value!r} (known: {known[:20]})"))
                    continue
                unseen.append(name)
    if problems:
        raise RequestInvalid(problems)
    counted = sum(1 for kind in fields.values() if kind in ("numeric", "categorical", "text"))
    return Checked(values, missing / counted if counted else 0.0, out_of_range, unseen)


def _expected(kind: str) -> str:
    return {"time": "an ISO-8601 time string", "numeric": "a number", "categorical": "a string",
            "text": "a string", "id": "a string"}[kind]


def _type_problem(kind: str, value: Any) -> str | None:
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__} {str(value)[:40]!r}"
        if not math.isfinite(float(value)):
            return f"expected a finite number, got {value}"
        return None
    if kind == "time":
        if not isinstance(value, str):
            return f"expected an ISO-8601 time string, got {type(value).__name__}"
        when = parse_time_value(value)
        if when is None:
            return f"not a time: {value[:40]!r}"
        if not TIME_MIN <= when <= TIME_MAX:
            return (f"{value[:40]!r} is outside the times the pipeline can represent "
                    f"({TIME_MIN.isoformat()} .. {TIME_MAX.isoformat()}: nanosecond timestamps, as ingestion "
                    "types them)")
        return None
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {str(value)[:40]!r}"
    return None


def _outside(value: float, bounds: list[float], margin: float) -> bool:
    low, high = bounds
    pad = margin * (high - low)
    return value < low - pad or value > high + pad
