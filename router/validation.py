"""Checks of a request's ``features`` against the served model's input schema (from the registry),
and the rule that sends sparse or anomalous rows to the fallback model.

Plain functions: no Flask. Every problem is a :class:`Problem` naming the field, so the view can
answer 422 with all of them at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
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
    when: pd.Timestamp | None = None  # the row's time as validation parsed it (UTC), read once
    time_column: str | None = None    # the field ``when`` was read from

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


def example_features(schema: dict, now: datetime | None = None) -> dict[str, Any]:
    """A valid ``features`` object for a model's input schema, for the API documentation's
    "Try it out": the time now, each numeric field's training midpoint, each categorical field's
    most frequent training category, a short text, and no id (it is optional)."""
    ranges = schema.get("numeric_ranges", {})
    categories = schema.get("categories", {})
    example: dict[str, Any] = {}
    for name, kind in expected_fields(schema).items():
        if kind == "time":
            example[name] = (now or datetime.now(UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        elif kind == "numeric":
            low, high = ranges.get(name, (0.0, 0.0))
            middle = (low + high) / 2
            rounded = float(f"{middle:.4g}")  # readable, unless rounding leaves the range
            example[name] = rounded if low <= rounded <= high else middle
        elif kind == "categorical":
            known = categories.get(name) or []
            example[name] = known[0] if known else None
        elif kind == "text":
            example[name] = "example text"
    return example


@dataclass(frozen=True)
class _Rules:
    """What :func:`check_features` needs of one schema and router config, read once: the fields in
    order, the numeric ranges widened by the margin, the complete category vocabularies."""

    fields: tuple[tuple[str, str], ...]
    names: frozenset[str]
    bounds: dict[str, tuple[float, float]]
    vocabularies: dict[str, frozenset]     # only columns whose stored list is the whole vocabulary
    shown: dict[str, list]                 # the first known categories, for the error message
    counted: int                           # numeric + categorical + text fields (the missing share's base)
    time_column: str


# (id(schema), id(cfg)) -> (schema, cfg, rules): the served models' schemas live as long as their
# ServedModel; holding them here keeps the ids from being reused while the entry exists
_RULES: dict[tuple[int, int], tuple[dict, RouterConfig, _Rules]] = {}
_RULES_KEPT = 64


def _rules(schema: dict, cfg: RouterConfig) -> _Rules:
    key = (id(schema), id(cfg))
    hit = _RULES.get(key)
    if hit is not None and hit[0] is schema and hit[1] is cfg:
        return hit[2]
    fields = expected_fields(schema)
    bounds = {}
    for name, (low, high) in schema.get("numeric_ranges", {}).items():
        pad = cfg.range_margin * (high - low)
        bounds[name] = (low - pad, high + pad)
    known = {name: cats for name, cats in schema.get("categories", {}).items()
             if cats is not None and len(cats) < STORED_CATEGORIES}
    rules = _Rules(tuple(fields.items()), frozenset(fields), bounds,
                   {name: frozenset(cats) for name, cats in known.items()},
                   {name: list(cats[:20]) for name, cats in known.items()},
                   sum(1 for kind in fields.values() if kind in ("numeric", "categorical", "text")),
                   schema["spec"]["time_column"])
    if len(_RULES) >= _RULES_KEPT:
        _RULES.clear()
    _RULES[key] = (schema, cfg, rules)
    return rules


def check_features(features: dict[str, Any], schema: dict, cfg: RouterConfig, prefix: str = "features") -> Checked:
    """Validate one row's features; raise RequestInvalid naming every bad field."""
    rules = _rules(schema, cfg)
    problems: list[Problem] = []
    if cfg.unknown_fields == "reject" and not rules.names.issuperset(features):
        problems += [Problem(f"{prefix}.{name}", "unknown field: the model has no such input")
                     for name in sorted(set(features) - rules.names)]
    values: dict[str, Any] = {}
    missing = 0
    out_of_range: list[str] = []
    unseen: list[str] = []
    when = None
    for name, kind in rules.fields:
        if name not in features:
            if kind != "id":
                problems.append(Problem(f"{prefix}.{name}", f"required ({_expected(kind)}; send null if unknown)"))
            continue
        value = features[name]
        if value is None:
            if kind == "time":
                problems.append(Problem(f"{prefix}.{name}", "must not be null: the time features derive from it"))
            elif kind != "id":
                missing += 1
            values[name] = None
            continue
        if kind == "numeric":
            # the common case (a finite JSON float) without a call; ints, bools, NaN and the rest
            # go through _type_problem
            if not (type(value) is float and math.isfinite(value)):
                problem = _type_problem(kind, value)
                if problem:
                    problems.append(Problem(f"{prefix}.{name}", problem))
                    continue
            values[name] = value
            bounds = rules.bounds.get(name)
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                out_of_range.append(name)
            continue
        if kind == "time":
            when, problem = _time_problem(value)
            if problem:
                problems.append(Problem(f"{prefix}.{name}", problem))
                continue
        elif not isinstance(value, str):
            problems.append(Problem(f"{prefix}.{name}", _type_problem(kind, value)))
            continue
        values[name] = value
        if kind == "categorical":
            known = rules.vocabularies.get(name)
            if known is not None and value not in known:
                if cfg.unknown_categories == "reject":
                    problems.append(Problem(f"{prefix}.{name}",
                                            f"unknown category {value!r} (known: {rules.shown[name]})"))
                    continue
                unseen.append(name)
    if problems:
        raise RequestInvalid(problems)
    return Checked(values, missing / rules.counted if rules.counted else 0.0, out_of_range, unseen, when,
                   rules.time_column)


def _time_problem(value: Any) -> tuple[pd.Timestamp | None, str | None]:
    """The parsed time of a time field and None, or None and what is wrong with it."""
    if not isinstance(value, str):
        return None, f"expected an ISO-8601 time string, got {type(value).__name__}"
    when = parse_time_value(value)
    if when is None:
        return None, f"not a time: {value[:40]!r}"
    if not TIME_MIN <= when <= TIME_MAX:
        return None, (f"{value[:40]!r} is outside the times the pipeline can represent "
                      f"({TIME_MIN.isoformat()} .. {TIME_MAX.isoformat()}: nanosecond timestamps, as ingestion "
                      "types them)")
    return when, None


def _expected(kind: str) -> str:
    return {"time": "an ISO-8601 time string", "numeric": "a number", "categorical": "a string",
            "text": "a string", "id": "a string"}[kind]


def _type_problem(kind: str, value: Any) -> str | None:
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__} {str(value)[:40]!r}"
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an int past the float range: 1e309 as digits
            finite = False
        if not finite:
            return f"expected a finite number, got {str(value)[:40]}"
        return None
    if kind == "time":
        return _time_problem(value)[1]
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {str(value)[:40]!r}"
    return None
