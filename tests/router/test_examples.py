"""The API documentation's example request, built from a model's input schema, passes the router's
own validation (unit level; tests/router/test_router.py sends it to a served model)."""

from __future__ import annotations

from datetime import UTC, datetime

from config.schema import RouterConfig
from router.validation import check_features, example_features

SCHEMA = {"spec": {"time_column": "ts", "numeric": ["temp", "tiny"], "categorical": ["city", "empty"],
                   "text": ["note"], "id_column": "row_id"},
          "categories": {"city": ["Oslo", "Rome"], "empty": []},
          "numeric_ranges": {"temp": [-3.25, 31.0], "tiny": [1000.0001, 1000.0002]}}


def test_the_example_is_valid_for_its_schema() -> None:
    example = example_features(SCHEMA, now=datetime(2026, 12, 7, 14, 0, 0, 123456, tzinfo=UTC))
    assert example == {"ts": "2026-12-07T14:00:00Z", "temp": 13.88, "tiny": 1000.00015, "city": "Oslo",
                       "empty": None, "note": "example text"}  # tiny: rounding would leave its range
    check_features(example, SCHEMA, RouterConfig())  # raises RequestInvalid naming a bad field
