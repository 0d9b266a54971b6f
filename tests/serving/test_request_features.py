"""The router's frame-free feature path gives exactly the arrays of the batch path.

``serving.request_features.columns_of_values`` (validated JSON values -> Columns) against
``columns_of(build_features(type_errors(frame)))`` (what training's features and the pipeline path
compute), on rows of every zoo dataset and of the default data, sent as a client sends them: the
time as an ISO string (with and without an offset), numbers as JSON numbers or null, categories
and texts as strings with stray whitespace, blanks and nulls among them. Every calendar feature
is asked for, read in a zone with daylight saving time, so each maker and the zone conversion
are compared.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.ingest.cleaning import clean_batch
from assets.ingest.contract import build_contract
from config import load_config
from features import CALENDAR_MAKERS, FeatureSpec, build_features, calendar_of, time_features
from serving.compiled import columns_of
from serving.parsing import parse_time
from serving.request_features import ValueUnreadable, columns_of_values
from serving.scoring import type_errors
from stream.sources import load_source
from zoo.catalog import ZOO

ROWS_PER_DATASET = 150


def _json_value(value, kind: str, i: int):
    """A cleaned value as a client would send it (through a real JSON round trip)."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind == "time":
        stamp = pd.Timestamp(value)
        # every third time with an explicit offset, the rest naive (read as UTC)
        if i % 3 == 0:
            return stamp.tz_convert("+05:30").isoformat()
        return stamp.tz_convert("UTC").tz_localize(None).isoformat()
    if kind == "numeric":
        return int(value) if i % 4 == 0 and float(value).is_integer() else float(value)
    text = str(value)
    return {0: f"  {text} ", 1: "   ", 2: ""}.get(i % 7, text)  # padded, blank, empty, as sent


def _requests(cleaned: pd.DataFrame, spec: FeatureSpec) -> list[dict]:
    kinds = {spec.time_column: "time", **{c: "numeric" for c in spec.numeric},
             **{c: "categorical" for c in spec.categorical}, **{c: "text" for c in spec.text}}
    cleaned = cleaned.assign(**{spec.time_column: parse_time(cleaned[spec.time_column])})  # as ingestion types it
    rows = [{name: _json_value(row[name], kind, i + j) for j, (name, kind) in enumerate(kinds.items())}
            for i, row in enumerate(cleaned.to_dict("records"))]
    return json.loads(json.dumps(rows))


def _cases() -> list[tuple[str, object]]:
    return [("default", None), *[(entry.name, entry) for entry in ZOO]]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pd.DataFrame, FeatureSpec]]:
    out = {}
    for name, entry in _cases():
        if entry is None:
            cfg = load_config()
            raw = load_source(cfg.dataset)
        else:
            folder = tmp_path_factory.mktemp(name)
            cfg = load_config(str(entry.build(folder / "config")))
            data_file = folder / "config" / f"{name}.{entry.file_format}"
            source = cfg.dataset.source.model_copy(update={"path": str(data_file)})
            raw = load_source(cfg.dataset.model_copy(update={"source": source}))
        sample = raw.sample(min(ROWS_PER_DATASET, len(raw)), random_state=0)
        contract = build_contract(raw, cfg)
        cleaned, _ = clean_batch(sample, contract, cfg)
        spec = dataclasses.replace(FeatureSpec.from_contract(contract, cfg),
                                   time_features=tuple(CALENDAR_MAKERS), timezone="Europe/Oslo")
        out[name] = (cleaned.reset_index(drop=True), spec)
    return out


@pytest.mark.parametrize("name", [name for name, _ in _cases()])
def test_frame_free_columns_equal_the_batch_path(name: str, sources) -> None:
    cleaned, spec = sources[name]
    rows = _requests(cleaned, spec)
    assert len(rows) >= 50
    fast = columns_of_values(rows, spec)
    typed, errors = type_errors(pd.DataFrame(rows), spec)
    assert (errors == "").all(), errors[errors != ""].head().tolist()
    batch = columns_of(build_features(typed, spec), spec)
    assert list(fast) == list(batch) == [*spec.time_features, *spec.numeric, *spec.categorical, *spec.text]
    for column in batch:
        assert fast[column].dtype == batch[column].dtype, column
        if batch[column].dtype == np.float64:
            np.testing.assert_array_equal(fast[column], batch[column], err_msg=column)
        else:
            assert fast[column].tolist() == batch[column].tolist(), column
    # and the features themselves equal training's (build_features of the cleaned batch)
    trained = columns_of(build_features(cleaned, spec), spec)
    for column in spec.time_features:
        np.testing.assert_array_equal(fast[column], trained[column], err_msg=column)


def test_calendar_of_one_time_is_time_features_of_it() -> None:
    """Across a daylight-saving change in Oslo (31 March 2024, 01:00 UTC) and a year boundary."""
    times = pd.Series(pd.to_datetime(["2024-03-31T00:59:59Z", "2024-03-31T01:00:00Z", "2023-12-31T23:30:00Z",
                                      "2024-02-29T12:00:00+05:30"], utc=True))
    names = tuple(CALENDAR_MAKERS)
    frame = time_features(times, names, "Europe/Oslo")
    assert [calendar_of(t, names, "Europe/Oslo") for t in times] == frame.to_numpy().tolist()
    assert frame["hour"].tolist() == [1, 3, 0, 7]
    assert frame["day_of_year"].tolist() == [91, 91, 1, 60]
    assert frame["is_weekend"].tolist() == [1, 1, 0, 0]


def test_an_unreadable_time_names_its_row() -> None:
    spec = FeatureSpec(task="regression", time_column="t", target="y", id_column=None, numeric=("x",),
                       categorical=(), text=(), time_features=("hour",))
    with pytest.raises(ValueUnreadable, match="row 1: t: missing or not a time"):
        columns_of_values([{"t": "2024-01-01T00:00:00", "x": 1}, {"t": "soon", "x": 2}], spec)
    with pytest.raises(TypeError, match="expected a validated number"):
        columns_of_values([{"t": "2024-01-01T00:00:00", "x": "1"}], spec)


def test_the_zoo_is_in_the_comparison() -> None:
    assert len(_cases()) == len(ZOO) + 1 >= 9
    assert Path(__file__).name == "test_request_features.py"
